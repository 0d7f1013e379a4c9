"""
Tests for L{echogate.upstream.h1parse}: whether a response keeps its connection,
and the HTTP version it reports.
"""
from __future__ import annotations

from tests.h1cases import VALID, _ParserTestCase


class KeepAliveTests(_ParserTestCase):
    """
    L{ResponseParser.should_keep_alive} and L{ResponseParser.get_http_version}.
    """

    def keep_alive(self, data: bytes) -> bool:
        """
        @return: The keep-alive decision reported at the end of C{data}'s head.
        """
        events = self.assertParses(data)
        return [e for e in events if e[0] == "head"][-1][3]

    def test_http11(self) -> None:
        """
        An HTTP/1.1 connection is kept by default.
        """
        self.assertTrue(self.keep_alive(VALID["content-length"]))

    def test_http11_close(self) -> None:
        """
        A C{close} token (any case, anywhere in the list, in any Connection
        header) closes an HTTP/1.1 connection.
        """
        self.assertFalse(self.keep_alive(VALID["connection-close"]))
        self.assertFalse(self.keep_alive(VALID["connection-list"]))
        self.assertFalse(self.keep_alive(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: x, close\r\nContent-Length: 0\r\n\r\n"))

    def test_not_close_token(self) -> None:
        """
        Only the C{close} token closes, not a word containing it.
        """
        self.assertTrue(self.keep_alive(VALID["connection-not-close"]))

    def test_http10(self) -> None:
        """
        An HTTP/1.0 connection is closed by default, and kept with a
        C{keep-alive} token.
        """
        events = self.assertParses(VALID["http10"])
        self.assertEqual(events[-3], ("head", 200, "1.0", False))
        self.assertTrue(self.keep_alive(VALID["http10-keep-alive"]))
        self.assertTrue(self.keep_alive(
            b"HTTP/1.0 200 OK\r\nConnection: foo,  keep-alive \r\nContent-Length: 0\r\n\r\n"))
        self.assertFalse(self.keep_alive(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alivex\r\nContent-Length: 0\r\n\r\n"))

    def test_until_close(self) -> None:
        """
        A body delimited by the connection's close does not keep it, whatever
        the Connection header says.
        """
        self.assertFalse(self.keep_alive(VALID["until-close-keep-alive"]))
        self.assertFalse(self.keep_alive(VALID["chunked-not-last"]))
        self.assertFalse(self.keep_alive(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nabc"))

    def test_no_body(self) -> None:
        """
        Responses without a body keep the connection.
        """
        self.assertTrue(self.keep_alive(VALID["no-content"]))
        self.assertTrue(self.keep_alive(VALID["not-modified"]))
        self.assertTrue(self.keep_alive(b"HTTP/1.1 204 No Content\r\n\r\n"))

    def test_chunked(self) -> None:
        """
        A chunked body keeps the connection (HTTP/1.1).
        """
        self.assertTrue(self.keep_alive(VALID["chunked"]))
        self.assertFalse(self.keep_alive(VALID["http10-chunked"]))

    def test_each_response(self) -> None:
        """
        Each response of a connection has its own decision.
        """
        events = self.assertParses(VALID["http10-keep-alive"] + VALID["http10"] + VALID["content-length"])
        self.assertEqual([e[3] for e in events if e[0] == "head"], [True, False, True])
