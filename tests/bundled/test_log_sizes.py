"""
Tests for the response's size in the log records and prometheus
(L{echogate.bundled.log_record.response_size}): its header lines summed
inline for wire pairs, as L{echogate.pdk.rawheaders.lines_size} sums them.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from echogate.bundled.log_record import response_size
from echogate.pdk.rawheaders import headers_of, lines_size
from tests.pdk.test_context import context

PAIRS = [(b"Server", b"nginx"), (b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"X-A", b"22"),
         (b"Content-Length", b"100")]


class ResponseSizeTests(SynchronousTestCase):
    """
    L{response_size}: the status line, each header line, the CRLFs and
    the body bytes sent.
    """

    def size(self, headers: Headers | list[tuple[bytes, bytes]], sent: int) -> int:
        ctx = context()
        ctx.response.replace_headers(headers)
        ctx._request.sentLength = sent
        return response_size(ctx.view("p"))

    def test_pairs(self) -> None:
        """
        Wire pairs: each line's name, value, C{": "} and CRLF.
        """
        self.assertEqual(self.size(list(PAIRS), 100), len("HTTP/1.1 200 OK") + 2 + lines_size(PAIRS) + 2 + 100)

    def test_headers(self) -> None:
        """
        A L{Headers}: the same count as for its pairs.
        """
        self.assertEqual(self.size(headers_of(PAIRS), 7), self.size(list(PAIRS), 7))

    def test_empty(self) -> None:
        """
        No header lines, nothing sent: the status line and two CRLFs.
        """
        self.assertEqual(self.size([], 0), len("HTTP/1.1 200 OK") + 4)
