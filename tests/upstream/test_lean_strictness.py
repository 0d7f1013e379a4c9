"""
Unit tests of the lean upstream client: malformed responses are a 502 or
fail the body, with httptools and with echogate's own parser.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed

from echogate.errors import ProxyError
from tests.upstream.test_lean import Collector, Harness, _PureParser, answered, lose


class StrictnessTests(SynchronousTestCase):
    def assertBadGateway(self, raw: bytes) -> None:
        h, d, p, t = answered(raw)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertTrue(t.disconnected or t.disconnecting)

    def assertBodyFails(self, raw: bytes) -> None:
        h, d, p, t = answered(raw)
        c = Collector()
        self.successResultOf(d).deliverBody(c)
        self.assertTrue(c.reason.check(ResponseFailed))
        self.assertTrue(t.disconnected or t.disconnecting)
        lose(p, t)  # the abort's report changes nothing
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_contentLengthAndChunked(self) -> None:
        """
        Content-Length together with Transfer-Encoding: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"3\r\nabc\r\n0\r\n\r\n")

    def test_conflictingContentLengths(self) -> None:
        """
        Two different Content-Lengths: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")

    def test_badContentLength(self) -> None:
        """
        A Content-Length that is not a number: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc")

    def test_badStatusLine(self) -> None:
        """
        A status line that is not HTTP: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 abc OK\r\n\r\n")
        self.assertBadGateway(b"SMTP ready\r\n\r\n")

    def test_badHeaderLine(self) -> None:
        """
        A header line without a colon: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")

    def test_switchingProtocols(self) -> None:
        """
        101 Switching Protocols (never asked for): 502.
        """
        self.assertBadGateway(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")

    def test_headTooLarge(self) -> None:
        """
        A head beyond 64 KiB: 502, even before it is complete.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000)

    def test_tooManyHeaders(self) -> None:
        """
        More than 100 header lines: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n")

    def test_badChunkSize(self) -> None:
        """
        A chunk size that is not hexadecimal fails the body.
        """
        self.assertBodyFails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")

    def test_chunkWithoutCRLF(self) -> None:
        """
        A chunk not followed by CRLF fails the body.
        """
        self.assertBodyFails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n")

    def test_truncatedBody(self) -> None:
        """
        A connection closed before Content-Length bytes fails the body.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        c = Collector()
        self.successResultOf(d).deliverBody(c)
        lose(p, t)
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_closedBeforeHead(self) -> None:
        """
        A fresh connection closed before any answer: 502, not retried.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)

    def test_unsolicitedBytes(self) -> None:
        """
        An idle connection that sends bytes is dropped.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        p.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(t.disconnected or t.disconnecting)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_bytesAfterResponse(self) -> None:
        """
        Bytes following a response in the same read make its connection unusable.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)


class PureStrictnessTests(_PureParser, StrictnessTests):
    """
    L{StrictnessTests} with echogate's own parser.
    """
