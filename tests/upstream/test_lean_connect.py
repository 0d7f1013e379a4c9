"""
Unit tests of how the lean upstream client connects: an IP address with
the reactor's C{connectTCP} and the connection itself as the protocol
(no endpoint's wrapper protocol on every read), its failures, timeouts
and cancellation answered as before; names through a
L{HostnameEndpoint}. Over a L{MemoryReactorClock}, and over the real
reactor on 127.0.0.1.
"""
from __future__ import annotations

import gc
import socket
from typing import Any

from twisted.internet import error as ierror
from twisted.internet import reactor
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from echogate.errors import ProxyError
from echogate.upstream.connection import HTTP11Connection
from echogate.upstream.failures import describe
from echogate.upstream.lean import LeanUpstreamClient, _Exchange
from tests.upstream.test_lean import OK, SERVICE, Collector, Harness, lose
from tests.upstream_server import start_upstream


def failed(case: SynchronousTestCase, d: Any, status: int) -> BaseException | None:
    """
    The cause of the L{ProxyError} C{d} failed with, which has C{status}.
    """
    error = case.failureResultOf(d, ProxyError).value
    case.assertEqual(error.status, status)
    return error.__cause__


class DirectConnectTests(SynchronousTestCase):
    """
    A service named by an IP address is connected to with C{connectTCP};
    what the client answers is what it answered through an endpoint.
    """

    def test_connectionIsTheProtocol(self) -> None:
        """
        The protocol the reactor builds for the attempt is the connection
        itself, and the request goes out once it is made.
        """
        h = Harness()
        d = h.request()
        host, port, factory, timeout, _ = h.reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8080, 1.0))
        protocol = factory.buildProtocol(None)
        self.assertIsInstance(protocol, HTTP11Connection)
        transport = StringTransport()
        self.assertEqual(transport.value(), b"")
        protocol.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"GET /x HTTP/1.1\r\n"))
        protocol.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_bracketedIPv6(self) -> None:
        """
        A bracketed IPv6 address is connected to by address, without the
        brackets.
        """
        h = Harness()
        h.request(service=dict(SERVICE, host="[::1]"))
        self.assertEqual(h.reactor.tcpClients[0][:2], ("::1", 8080))
        self.assertIsInstance(h.reactor.tcpClients[0][2].buildProtocol(None), HTTP11Connection)

    def test_refused(self) -> None:
        """
        A refused connection, the retries spent: 502, caused by the
        refusal, which the error log words as before.
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, retries=1))
        h.refuse()
        self.assertNoResult(d)
        h.refuse()
        cause = failed(self, d, 502)
        self.assertIsInstance(cause, ierror.ConnectionRefusedError)
        self.assertEqual(describe(cause), "connection refused")
        self.assertEqual(h.pending(), 0)
        h.assert_no_timers(self)

    def test_connectTimeout(self) -> None:
        """
        The reactor's connect timeout is retried as a refusal is; once the
        retries are spent, 504, "timed out".
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, retries=1))
        h.refuse(ierror.TimeoutError())
        self.assertNoResult(d)
        self.assertEqual(h.pending(), 1)
        h.refuse(ierror.TimeoutError())
        cause = failed(self, d, 504)
        self.assertIsInstance(cause, ierror.TimeoutError)
        self.assertEqual(describe(cause), "timed out")

    def test_deadlineWhileConnecting(self) -> None:
        """
        The request's deadline passing while it connects stops the
        attempt and is retried as a connection failure; with no retry
        left: 504, a cancelled connection attempt. The reactor's later
        report of the stopped attempt changes nothing.
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, retries=1))
        h.reactor.advance(2)
        [first] = h.reactor.connectors[:1]
        self.assertTrue(first.stoppedConnecting)
        self.assertEqual(len(h.reactor.tcpClients), 2)
        self.assertNoResult(d)
        h.reactor.advance(2)
        cause = failed(self, d, 504)
        self.assertIsInstance(cause, ierror.ConnectingCancelledError)
        self.assertEqual(cause.address, first.getDestination())
        self.assertEqual(describe(cause), "timed out")
        for _, _, factory, _, _ in h.reactor.tcpClients:
            factory.clientConnectionFailed(None, Failure(ierror.UserError()))
        self.assertEqual(len(h.reactor.tcpClients), 2)
        h.assert_no_timers(self)

    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling while connecting stops the attempt; neither callback is
        called, then or when the reactor reports the stopped attempt.
        """
        h = Harness()
        seen: list[Any] = []
        sent = h.client.send(SERVICE, b"GET", b"/x", [(b"Host", b"up")], None, seen.append, seen.append)
        sent.cancel()
        [connector] = h.reactor.connectors
        self.assertTrue(connector.stoppedConnecting)
        h.reactor.tcpClients[0][2].clientConnectionFailed(connector, Failure(ierror.UserError()))
        self.assertEqual(seen, [])
        self.assertFalse(sent.called)
        self.assertEqual(h.pending(), 1)
        h.assert_no_timers(self)

    def test_madeAfterCancel(self) -> None:
        """
        A connection made after its request was given up is aborted,
        without a request written on it.
        """
        h = Harness()
        d = h.request()
        d.cancel()
        self.failureResultOf(d)
        p, t = h.connect()
        self.assertEqual(t.value(), b"")
        self.assertTrue(t.disconnected)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_attemptLetsGo(self) -> None:
        """
        Once the connection is made, its attempt (which the reactor's
        connector keeps for the connection's life) no longer holds the
        request: an answered request is freed while its connection stays
        in the pool.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d).deliverBody(Collector())
        del d
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, _Exchange) and o._client is h.client]
        self.assertEqual(kept, [])
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_namesThroughHostnameEndpoint(self) -> None:
        """
        A service named by a host name goes through a L{HostnameEndpoint}
        (its name resolved, its addresses tried), as before.
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, host="upstream.test"))
        self.assertIsInstance(h.client._endpoints[("upstream.test", 8080, 1.0)], HostnameEndpoint)
        host, port, factory, _, _ = h.reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 8080))  # (the memory reactor's resolver)
        protocol = factory.buildProtocol(None)
        self.assertNotIsInstance(protocol, HTTP11Connection)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"GET /x HTTP/1.1\r\n"))
        protocol.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)


def closed_port() -> int:
    """
    A 127.0.0.1 port nothing listens on.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class RealReactorTests(TestCase):
    """
    The same over the real reactor, on 127.0.0.1.
    """

    def setUp(self) -> None:
        self.client = LeanUpstreamClient(reactor)
        self.addCleanup(self.client.close)

    def service(self, port: int, **settings: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": port, "protocol": "http", "connect_timeout": 5000,
                "read_timeout": 5000, "write_timeout": 5000, "retries": 0, **settings}

    async def test_transportReadsIntoTheConnection(self) -> None:
        """
        The TCP transport's protocol is the connection itself; requests
        are answered over it, and the second reuses it.
        """
        upstream, port = start_upstream(self)
        made: list[HTTP11Connection] = []
        original = HTTP11Connection.makeConnection

        def record(conn: HTTP11Connection, transport: Any) -> None:
            made.append(conn)
            original(conn, transport)

        self.patch(HTTP11Connection, "makeConnection", record)
        for path in (b"/one", b"/two"):
            response = await self.client.request(self.service(port), b"GET", path, [(b"Host", b"upstream")])
            self.assertEqual(response.code, 200)
            self.assertIsNotNone(response.whole_body())
        [conn] = made
        self.assertIs(conn.transport._transport.protocol, conn)

    async def test_refused(self) -> None:
        """
        A refused connection: 502, "connection refused".
        """
        try:
            await self.client.request(self.service(closed_port(), retries=1), b"GET", b"/", [(b"Host", b"x")])
        except ProxyError as error:
            self.assertEqual(error.status, 502)
            self.assertIsInstance(error.__cause__, ierror.ConnectionRefusedError)
            self.assertEqual(describe(error.__cause__), "connection refused")
        else:
            self.fail("answered")
