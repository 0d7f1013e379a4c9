"""
Unit tests of the lean upstream client's connections: the pool of kept-alive
connections, https delegated to an L{UpstreamClient}, and retries on a
stale kept-alive connection, with httptools and with echogate's own parser.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import ProxyError
from echogate.proxy.streaming import RequestBody
from echogate.upstream.agent import UpstreamClient
from tests.upstream.test_lean import OK, SERVICE, Collector, Harness, _PureParser, answered, lose


class PoolTests(SynchronousTestCase):
    def test_reused(self) -> None:
        """
        A kept-alive connection serves the next request: no new connection.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d).deliverBody(Collector())
        t.clear()
        d2 = h.request(target=b"/y")
        self.assertEqual(h.pending(), 0)
        self.assertTrue(t.value().startswith(b"GET /y HTTP/1.1\r\n"))
        p.dataReceived(OK)
        self.assertEqual(self.successResultOf(d2).code, 200)

    def test_notReusedBeforeBodyRead(self) -> None:
        """
        A connection whose body is still arriving is not lent to another request.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        h.request()
        self.assertEqual(h.pending(), 1)

    def test_connectionClose(self) -> None:
        """
        Connection: close in the response: the connection is closed, not kept.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_idleBound(self) -> None:
        """
        At most max_idle_per_host idle connections are kept; others are closed.
        """
        h = Harness(max_idle_per_host=1)
        h.request(), h.request()
        p1, t1 = h.connect()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        p2.dataReceived(OK)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        self.assertFalse(t1.disconnecting)
        self.assertTrue(t2.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        An idle connection is closed after idle_timeout seconds.
        """
        h = Harness(idle_timeout=5)
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        h.reactor.advance(4)
        self.assertFalse(t.disconnecting)
        h.reactor.advance(1)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_idleTimeoutEach(self) -> None:
        """
        Each idle connection gets its own idle_timeout from when it was
        released, whatever the others do; one taken again is not closed.
        """
        h = Harness(idle_timeout=5)
        first, second = h.request(), h.request()
        p1, t1 = h.connect()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        h.reactor.advance(1.5)
        p2.dataReceived(OK)
        self.successResultOf(first), self.successResultOf(second)
        h.reactor.advance(3.5)  # t=5: the first one is 5 s idle, the second 3.5 s
        self.assertTrue(t1.disconnecting)
        self.assertFalse(t2.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        h.reactor.advance(1)
        d = h.request()  # t=6: takes the second one again
        h.reactor.advance(1.5)
        self.assertFalse(t2.disconnecting)
        p2.dataReceived(OK)  # released again at t=7.5
        self.successResultOf(d)
        h.reactor.advance(4.9)
        self.assertFalse(t2.disconnecting)
        h.reactor.advance(0.1)
        self.assertTrue(t2.disconnecting)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_idleClosedByPeer(self) -> None:
        """
        An idle connection the upstream closes leaves the pool.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        h.assert_no_timers(self)

    def test_close(self) -> None:
        """
        close() closes every idle connection and fires once they are closed.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        d = h.client.close()
        self.assertTrue(t.disconnecting)
        self.assertNoResult(d)
        lose(p, t)
        self.successResultOf(d)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_ipv6(self) -> None:
        """
        An IPv6 service is connected to by address.
        """
        h = Harness()
        h.request(service=dict(SERVICE, host="::1"))
        self.assertEqual(h.reactor.tcpClients[0][:2], ("::1", 8080))


class HttpsTests(SynchronousTestCase):
    def test_delegated(self) -> None:
        """
        https services go through an L{UpstreamClient} (Agent with TLS).
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, protocol="https", port=8443))
        self.assertIsInstance(h.client._tls, UpstreamClient)
        self.assertEqual(h.reactor.tcpClients[0][:2], ("127.0.0.1", 8443))
        d.cancel()
        self.failureResultOf(d)


class StaleConnectionTests(SynchronousTestCase):
    def kept(self) -> tuple[Harness, Any, StringTransport]:
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        return h, p, t

    def test_idempotentRetried(self) -> None:
        """
        A GET on a reused connection closed before answering is sent again
        on a fresh connection.
        """
        h, p, t = self.kept()
        d = h.request()
        lose(p, t)
        self.assertNoResult(d)
        p2, t2 = h.connect()
        self.assertTrue(t2.value().startswith(b"GET /x"))
        p2.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_retriedOnce(self) -> None:
        """
        The stale retry happens once: a fresh connection closing is a 502.
        """
        h, p, t = self.kept()
        d = h.request()
        lose(p, t)
        p2, t2 = h.connect()
        lose(p2, t2)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)

    def test_postNotRetried(self) -> None:
        """
        A POST on a stale connection is not replayed: 502.
        """
        h, p, t = self.kept()
        d = h.request(b"POST", body=RequestBody(data=b"x"))
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)

    def test_staleRetryIsNotAConnectRetry(self) -> None:
        """
        The stale retry does not use up the service's connection retries.
        """
        h, p, t = self.kept()
        d = h.request(service=dict(SERVICE, retries=1))
        lose(p, t)
        h.refuse()
        self.assertNoResult(d)
        p2, t2 = h.connect()
        p2.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_notRetriedAfterBytes(self) -> None:
        """
        A reused connection that sent part of an answer is not retried.
        """
        h, p, t = self.kept()
        d = h.request()
        p.dataReceived(b"HTTP/1.1 200")
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)


class PurePoolTests(_PureParser, PoolTests):
    """
    L{PoolTests} with echogate's own parser.
    """


class PureStaleConnectionTests(_PureParser, StaleConnectionTests):
    """
    L{StaleConnectionTests} with echogate's own parser.
    """
