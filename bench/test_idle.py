"""
Tests for the idle connections benchmark's own logic (L{bench.idle}); they
start no process.
"""
from __future__ import annotations

import resource

from twisted.trial import unittest

from bench.idle import (
    MAX_CONNECTIONS,
    SPARE_DESCRIPTORS,
    Footprint,
    descriptors_needed,
    parse_arguments,
    raise_descriptor_limit,
    response_complete,
)


class ResponseCompleteTests(unittest.TestCase):
    def test_contentLength(self) -> None:
        """A response is whole once its body has its Content-Length."""
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        self.assertEqual((response_complete(head + b"abcd"), response_complete(head + b"abcde")), (False, True))

    def test_head(self) -> None:
        """Without the end of its head, a response is not whole."""
        self.assertFalse(response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"))

    def test_chunked(self) -> None:
        """A chunked response is whole at its last chunk."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.assertEqual((response_complete(head + b"3\r\nabc\r\n"),
                          response_complete(head + b"3\r\nabc\r\n0\r\n\r\n")), (False, True))


class FootprintTests(unittest.TestCase):
    def test_perConnection(self) -> None:
        """Bytes per connection over all of them, and over the second half."""
        found = Footprint(connections=1000, before_kb=70_000, half_kb=75_000, all_kb=79_000)
        self.assertEqual((found.per_connection, found.per_connection_slope), (9000 * 1024 / 1000, 4000 * 1024 / 500))


class DescriptorTests(unittest.TestCase):
    def test_needed(self) -> None:
        """Each side needs a descriptor per connection and some to spare."""
        self.assertEqual(descriptors_needed(10_000), 10_000 + SPARE_DESCRIPTORS)

    def test_withinHard(self) -> None:
        """The soft limit is raised at most to the hard one, never lowered."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        lowered = min(soft, 256) if soft != resource.RLIM_INFINITY else 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        wanted = lowered + 100 if hard == resource.RLIM_INFINITY else hard + 1000
        now = raise_descriptor_limit(wanted)
        self.assertEqual(now, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.assertEqual(now, wanted if hard == resource.RLIM_INFINITY else hard)
        self.assertEqual(raise_descriptor_limit(1), now)


class ArgumentsTests(unittest.TestCase):
    def test_defaults(self) -> None:
        """10,000 connections, 500 at once, by default."""
        arguments = parse_arguments([])
        self.assertEqual((arguments.connections, arguments.batch), (10_000, 500))

    def test_bounded(self) -> None:
        """More than L{MAX_CONNECTIONS} connections is refused."""
        self.assertRaises(SystemExit, parse_arguments, ["--connections", str(MAX_CONNECTIONS + 1)])
