"""
Unit tests of the lean upstream client: back-pressure between a response
body's reader and its connection.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import error as ierror
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed

from tests.upstream.test_lean import Collector, Harness, lose


class BackPressureTests(SynchronousTestCase):
    def streaming(self) -> tuple[Any, StringTransport, Any]:
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        return p, t, self.successResultOf(d)

    def test_pauseResume(self) -> None:
        """
        The body protocol's transport pauses and resumes the connection.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.pauseProducing()
        self.assertEqual(t.producerState, "paused")
        c.transport.resumeProducing()
        self.assertEqual(t.producerState, "producing")

    def test_stopProducing(self) -> None:
        """
        stopProducing aborts the connection; the body fails, nothing is pooled.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.stopProducing()
        self.assertTrue(t.disconnected)
        lose(p, t, ierror.ConnectionAborted())
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_bufferedUntilDelivered(self) -> None:
        """
        Body bytes before deliverBody are held (the connection paused past
        64 KiB) and delivered at once.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"a" * 65537)
        r = self.successResultOf(d)
        self.assertEqual(t.producerState, "paused")
        c = Collector()
        r.deliverBody(c)
        self.assertEqual(t.producerState, "producing")
        self.assertEqual(len(b"".join(c.chunks)), 65537)
        p.dataReceived(b"a" * 4463)
        self.assertTrue(c.reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_pausedConnectionResumedWhenPooled(self) -> None:
        """
        A connection paused by its body's reader is resumed when it goes
        back to the pool.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.pauseProducing()
        p.dataReceived(b"0123456789")
        self.assertEqual(t.producerState, "producing")
        c.transport.pauseProducing()  # after the end: no effect on the pooled connection
        self.assertEqual(t.producerState, "producing")
