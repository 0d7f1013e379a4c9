"""
Unit tests of the lean upstream client's exchanges: connect retries and
timeouts, the response deadline (one reactor call shared by every waiting
request), and cancellation.
"""
from __future__ import annotations

import gc

from twisted.internet import error as ierror
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import ProxyError
from echogate.proxy.streaming import RequestBody
from echogate.upstream.lean import _Exchange
from tests.upstream.test_lean import OK, SERVICE, Harness, lose


class ExchangeTests(SynchronousTestCase):
    def test_refusedRetriedThen502(self) -> None:
        """
        Refused connections are retried up to retries times, then 502.
        """
        h = Harness()
        d = h.request()
        h.refuse()
        h.refuse()
        self.assertNoResult(d)
        h.refuse()
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        h.assert_no_timers(self)

    def test_refusedThenConnected(self) -> None:
        """
        A retry that connects gives the response.
        """
        h = Harness()
        d = h.request()
        h.refuse()
        p, t = h.connect()
        p.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_connectTimeout(self) -> None:
        """
        Connect timeouts (after the retries): 504; the endpoint has the
        service's connect timeout.
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, retries=0))
        self.assertEqual(h.reactor.tcpClients[0][3], 1.0)
        h.refuse(ierror.TimeoutError())
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_deadline(self) -> None:
        """
        No response head within read_timeout: 504, connection aborted.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        h.reactor.advance(1.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)
        self.assertTrue(t.disconnected)
        lose(p, t)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_deadlineWithBody(self) -> None:
        """
        With a body, the deadline is read_timeout + write_timeout.
        """
        h = Harness()
        d = h.request(b"POST", body=RequestBody(data=b"x"))
        h.connect()
        h.reactor.advance(4.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_headStopsDeadline(self) -> None:
        """
        Once the head arrived, the deadline no longer applies.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.successResultOf(d)
        h.assert_no_timers(self)

    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling while connecting stops the attempt; no retry.
        """
        h = Harness()
        d = h.request()
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(h.pending(), 1)
        h.assert_no_timers(self)
        self.assertEqual(len(h.reactor.tcpClients), 1)

    def test_cancelWhileWaiting(self) -> None:
        """
        Cancelling after the request was sent aborts its connection.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(t.disconnected)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        h.assert_no_timers(self)


class DeadlineTests(SynchronousTestCase):
    """
    The requests' deadlines share one reactor call and each still expires
    at its own time.
    """

    def test_oneCallForMany(self) -> None:
        """
        Requests waiting at once have one reactor call between them.
        """
        h = Harness()
        for _ in range(3):
            h.request()
            h.reactor.advance(0.5)
        self.assertEqual(len(h.reactor.getDelayedCalls()), 1)

    def test_eachOnItsOwnTime(self) -> None:
        """
        A request sent after one that was answered times out read_timeout
        after it was sent, not with the first one's deadline.
        """
        h = Harness()
        first = h.request()
        p1, _ = h.connect()
        h.reactor.advance(1)
        second = h.request()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        self.successResultOf(first)
        h.reactor.advance(1)
        self.assertNoResult(second)
        h.reactor.advance(0.9)
        self.assertNoResult(second)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(second, ProxyError).value.status, 504)
        self.assertTrue(t2.disconnected)

    def test_waitingOnesTimeOutInOrder(self) -> None:
        """
        Requests left waiting time out one by one, each at its deadline.
        """
        h = Harness()
        first = h.request()
        h.connect()
        h.reactor.advance(1)
        second = h.request()
        h.connect()
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(first, ProxyError).value.status, 504)
        self.assertNoResult(second)
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(second, ProxyError).value.status, 504)

    def test_shorterTimeoutFirst(self) -> None:
        """
        A request to a service with a shorter read_timeout, sent later,
        times out first, at its own deadline.
        """
        h = Harness()
        slow = h.request()
        h.connect()
        h.reactor.advance(0.5)
        quick = h.request(service=dict(SERVICE, read_timeout=500))
        h.connect()
        h.reactor.advance(0.4)
        self.assertNoResult(quick)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(quick, ProxyError).value.status, 504)
        self.assertNoResult(slow)
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(slow, ProxyError).value.status, 504)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_staleRetryNewDeadline(self) -> None:
        """
        The retry of a request whose kept-alive connection was stale gets
        a whole read_timeout from when it is sent again.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        d = h.request()
        h.reactor.advance(1.5)
        lose(p, t)
        h.connect()
        h.reactor.advance(1.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_answeredNotKept(self) -> None:
        """
        An answered request's deadline, left queued behind a waiting one,
        does not keep the request alive.
        """
        h = Harness()
        h.request()
        h.connect()
        d = h.request()
        p, _ = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d)
        del d
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, _Exchange) and o._client is h.client]
        self.assertEqual(len(kept), 1)

    def test_closeStopsDeadlines(self) -> None:
        """
        close() leaves no reactor call behind, even with a request waiting.
        """
        h = Harness()
        h.request()
        h.connect()
        self.successResultOf(h.client.close())
        self.assertEqual(h.reactor.getDelayedCalls(), [])
