"""
Tests for L{echogate.entities.hosts}.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate.entities.hosts import parse_host
from tests.tables import raises_for


class ParseHostTests(SynchronousTestCase):
    """
    L{parse_host}.
    """

    def test_valid(self) -> None:
        """
        Names, IPv4 and IPv6 addresses, with or without ports.
        """
        for address, parsed in [
            ("example.com", ("name", "example.com", None)),
            ("example.com:8000", ("name", "example.com", 8000)),
            ("a_b-c.d.", ("name", "a_b-c.d.", None)),
            ("10.0.0.1", ("ipv4", "10.0.0.1", None)),
            ("10.0.0.1:80", ("ipv4", "10.0.0.1", 80)),
            ("::1", ("ipv6", "::1", None)),
            ("[::1]:80", ("ipv6", "::1", 80)),
            ("[::1]", ("ipv6", "::1", None)),
            ("1:2:3:4:5:6:7:8", ("ipv6", "1:2:3:4:5:6:7:8", None)),
        ]:
            self.assertEqual(parse_host(address), parsed, address)

    def test_invalid(self) -> None:
        """
        Kong's messages for what is not a host.
        """
        for address, message in [
            ("a b", "invalid hostname: a b"),
            ("a-.b", "invalid hostname: a-.b"),
            ("a..b", "invalid hostname: a..b"),
            ("a:b", "invalid hostname: a:b"),
            ("h:65536", "invalid port number"),
            ("1.2.3.256", "invalid ipv4 address: 1.2.3.256"),
            ("1.2.3", "invalid ipv4 address: 1.2.3"),
            ("1.2.3.4:", "invalid ipv4 address: 1.2.3.4:"),
            ("1.2.3.4:65536", "invalid port number"),
            ("1::2::3", "invalid ipv6 address: 1::2::3"),
            ("1:2:3:4:5:6:7:8:9", "invalid ipv6 address: 1:2:3:4:5:6:7:8:9"),
            ("g::1", "invalid ipv6 address: g::1"),
            ("[::1]:x", "invalid ipv6 address"),
            ("[::1]:65536", "invalid port number"),
        ]:
            exc = raises_for(self, address, ValueError, parse_host, address)
            self.assertEqual(str(exc), message, address)
