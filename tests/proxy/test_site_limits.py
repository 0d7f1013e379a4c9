"""
The proxy listener's connection caps (C{max_connections},
C{max_connections_per_ip}) over real sockets on 127.0.0.1, the warning
about refused connections, and the collapsing of Twisted's log lines when
C{accept()} fails for lack of file descriptors. Draining the listener is in
L{tests.proxy.test_site_drain}.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server
from twisted.web.resource import Resource

from echogate.proxy.limits import AcceptErrorLog, AddressCounts, throttle_accept_errors
from echogate.proxy.site import Counters, GatewaySite
from tests import waiting

#: What a slow-loris client sends and then drips forever: a request line
#: and a header, never the blank line that ends the head.
DRIP = b"GET / HTTP/1.1\r\nHost: gateway.example\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: gateway.example\r\n\r\n"


class Hello(Resource):
    """
    Answers C{hello} at once; or, for C{/held}, nothing until the test
    finishes the request (kept in L{held}).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        if request.path == b"/held":
            self.held.append(request)
            return server.NOT_DONE_YET
        return b"hello"


class RawClient(Protocol):
    """
    A client that sends raw bytes and keeps everything it receives.

    @ivar closed: fires with what was received once the connection closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        waiting, self._waiting = self._waiting, []
        for marker, d in waiting:
            if marker in self.received:
                d.callback(self.received)
            else:
                self._waiting.append((marker, d))

    def connectionLost(self, reason: Failure) -> None:
        waiting, self._waiting = self._waiting, []
        for _, d in waiting:
            d.callback(self.received)
        self.closed.callback(self.received)

    def wait_for(self, marker: bytes) -> Deferred[bytes]:
        """
        Fires with everything received once C{marker} was (or the
        connection closed).
        """
        d: Deferred[bytes] = Deferred()
        if marker in self.received or self.closed.called:
            d.callback(self.received)
        else:
            self._waiting.append((marker, d))
        return d


async def until(condition: Callable[[], bool]) -> None:
    """
    Let the reactor run until C{condition()} holds (failing, rather than
    hanging, if it never does).
    """
    await waiting.until(condition, interval=0.001)


class ListenerTestCase(TestCase):
    """
    A L{GatewaySite} with C{site_options} listening on 127.0.0.1, and
    clients that are closed at the end of each test.
    """

    timeout = 30
    site_options: ClassVar[dict[str, Any]] = {}

    def setUp(self) -> None:
        self.resource = Hello()
        self.site = GatewaySite(self.resource, reactor=reactor, timeout=None, **self.site_options)
        self.site.noisy = False
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port = port.getHost().port
        self.clients: list[RawClient] = []
        self.addCleanup(self._close)
        self.addCleanup(port.stopListening)

    async def _close(self) -> None:
        for client in self.clients:
            if client.transport is not None and client.transport.connected:
                client.transport.abortConnection()
        await until(lambda: self.site.connections_open == 0)

    async def connect(self, source: str = "127.0.0.1", send: bytes = b"") -> RawClient:
        """
        A connection from C{source} that sent C{send}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        client = await connectProtocol(endpoint, RawClient())
        self.clients.append(client)
        if send:
            client.transport.write(send)
        return client

    async def attackers(self, count: int, source: str = "127.0.0.1") -> list[RawClient]:
        """
        C{count} slow-loris connections from C{source}, each holding the
        site open with a head it never finishes.
        """
        before = self.site.connections_open
        dripping = [await self.connect(source, DRIP) for _ in range(count)]
        await until(lambda: self.site.connections_open == before + count)
        return dripping

    async def served(self, source: str = "127.0.0.1") -> bytes:
        """
        What a new connection from C{source} gets for a whole request.
        """
        client = await self.connect(source, REQUEST)
        return await client.wait_for(b"hello")


class MaxConnectionsTests(ListenerTestCase):
    """
    C{max_connections}: connections beyond it are closed as soon as they
    are accepted.
    """

    site_options: ClassVar[dict[str, Any]] = {"max_connections": 2}

    async def test_beyondTheLimitClosedAtOnce(self) -> None:
        """
        With two dripping connections open, a third is closed without a
        byte, though its request is whole.
        """
        await self.attackers(2)
        refused = await self.connect(send=REQUEST)
        self.assertEqual(await refused.closed, b"")
        self.assertEqual((self.site.connections_open, self.site.connections_refused), (2, 1))

    async def test_roomAfterAClose(self) -> None:
        """
        Once one of them closes, a new connection is served.
        """
        first, _ = await self.attackers(2)
        first.transport.loseConnection()
        await until(lambda: self.site.connections_open == 1)
        self.assertIn(b"200 OK", await self.served())

    async def test_statusCounters(self) -> None:
        """
        C{GET /status} counts open connections as active, and refused ones
        as accepted but not handled.
        """
        await self.attackers(2)
        await (await self.connect()).closed
        counters = Counters().as_dict([self.site])
        self.assertEqual(
            {key: value for key, value in counters.items() if key.startswith("connections_")},
            {"connections_active": 2, "connections_accepted": 3, "connections_handled": 2,
             "connections_refused": 1})


class MaxConnectionsPerIPTests(ListenerTestCase):
    """
    C{max_connections_per_ip}: connections from one client address beyond
    it are closed as soon as they are accepted; other addresses are served.
    """

    site_options: ClassVar[dict[str, Any]] = {"max_connections_per_ip": 2}

    async def test_beyondTheLimitClosedAtOnce(self) -> None:
        """
        With two dripping connections from 127.0.0.1, a third from there is
        closed without a byte.
        """
        await self.attackers(2)
        refused = await self.connect(send=REQUEST)
        self.assertEqual(await refused.closed, b"")
        self.assertEqual(self.site.connections_refused, 1)

    async def test_otherAddressesServed(self) -> None:
        """
        Another client address is served while 127.0.0.1 is at its limit.
        """
        await self.attackers(2)
        self.assertIn(b"200 OK", await self.served("127.0.0.2"))

    async def test_roomAfterAClose(self) -> None:
        """
        Once one of its connections closes, the address is served again.
        """
        first, _ = await self.attackers(2)
        first.transport.loseConnection()
        await until(lambda: self.site.connections_open == 1)
        self.assertIn(b"200 OK", await self.served())


def open_channel(site: GatewaySite, host: str) -> Any:
    """
    A connection to C{site} from C{host} (in memory), or C{None} when the
    site refuses it.
    """
    address = IPv4Address("TCP", host, 40000)
    channel = site.buildProtocol(address)
    if channel is not None:
        channel.makeConnection(StringTransport(peerAddress=address))
    return channel


class PerAddressMemoryTests(SynchronousTestCase):
    """
    The per-address counts do not grow with the number of distinct clients.
    """

    def test_closedAddressesForgotten(self) -> None:
        """
        After connections from 1,000 addresses have come and gone, no
        address is kept.
        """
        site = GatewaySite(Resource(), reactor=Clock(), max_connections_per_ip=1)
        for n in range(1000):
            channel = open_channel(site, f"10.0.{n // 256}.{n % 256}")
            channel.connectionLost(Failure(ConnectionError()))
        self.assertEqual((len(site._per_ip), site.connections_open), (0, 0))

    def test_countsDown(self) -> None:
        """
        An address's count goes down one per closed connection and the
        address is forgotten at zero.
        """
        counts = AddressCounts()
        counts.add("192.0.2.1")
        counts.add("192.0.2.1")
        counts.remove("192.0.2.1")
        self.assertEqual((counts["192.0.2.1"], len(counts)), (1, 1))
        counts.remove("192.0.2.1")
        self.assertEqual((counts["192.0.2.1"], len(counts)), (0, 0))


class RefusalWarningTests(SynchronousTestCase):
    """
    Refused connections are warned about at most once a second, with how
    many were refused since the previous warning.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.site = GatewaySite(Resource(), reactor=self.clock, max_connections=1, max_connections_per_ip=1)
        self.assertIsNotNone(open_channel(self.site, "192.0.2.1"))

    def warnings(self, hosts: list[str]) -> list[dict]:
        with capturedLogs() as events:
            for host in hosts:
                self.assertIsNone(open_channel(self.site, host))
        return [e for e in events if e["log_level"] == LogLevel.warn]

    def test_oncePerSecond(self) -> None:
        """
        A flood of refusals in one second makes one warning.
        """
        [warning] = self.warnings(["192.0.2.2"] * 50)
        self.assertEqual(formatEvent(warning), "refused 1 new client connection(s) since the last such line: "
                                               "max_connections (1) reached: 1")

    def test_countSinceTheLastLine(self) -> None:
        """
        The next warning, a second later, counts every refusal since the
        previous one, by limit.
        """
        self.warnings(["192.0.2.2"] * 50)
        self.clock.advance(0.5)
        self.assertEqual(self.warnings(["192.0.2.2"] * 10), [])
        self.site.max_connections = 0
        self.clock.advance(0.5)
        [warning] = self.warnings(["192.0.2.1"])
        self.assertEqual(formatEvent(warning), "refused 60 new client connection(s) since the last such line: "
                                               "max_connections (1) reached: 59, "
                                               "max_connections_per_ip (1) reached: 1")


def _accept_failed(error: str = "EMFILE") -> dict:
    return {"log_format": "Could not accept new connection ({acceptError})", "acceptError": error,
            "log_level": LogLevel.info, "log_namespace": "twisted.internet.tcp.Port"}


class AcceptErrorLogTests(SynchronousTestCase):
    """
    Twisted's log lines about failed C{accept()} calls are collapsed into
    at most one warning a second.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict] = []
        self.observer = AcceptErrorLog(self.events.append, self.clock)

    def test_floodCollapsed(self) -> None:
        """
        A thousand EMFILE failures in one second make one warning.
        """
        for _ in range(1000):
            self.observer(_accept_failed())
        [warning] = self.events
        self.assertEqual(warning["log_level"], LogLevel.warn)
        self.assertEqual(formatEvent(warning), "could not accept 1 new client connection(s) since the last such "
                                               "line (EMFILE: 1): out of file descriptors or memory; "
                                               "see max_connections")

    def test_countSinceTheLastLine(self) -> None:
        """
        The next warning, a second later, counts every failure since the
        previous one, by error, including the connections Twisted's reserved
        descriptor took only to close them; its other recovery lines are
        not logged.
        """
        self.observer(_accept_failed())
        for _ in range(3):
            self.observer({"log_format": "EMFILE encountered; releasing reserved file descriptor."})
            self.observer({"log_format": "EMFILE recovery: Closed socket from {address}", "address": ("a", 1)})
            self.observer({"log_format": "Re-reserving EMFILE recovery file descriptor."})
            self.observer(_accept_failed("ENFILE"))
        self.clock.advance(1)
        self.observer(_accept_failed())
        self.assertEqual(len(self.events), 2)
        self.assertEqual(self.events[1]["failures"], {"EMFILE": 4, "ENFILE": 3})

    def test_othersPassed(self) -> None:
        """
        Other events go to the observer unchanged.
        """
        event = {"log_format": "Starting factory {f}", "f": "x", "log_level": LogLevel.info}
        self.observer(event)
        self.assertEqual(self.events, [event])


class _NoDescriptors:
    """
    A listening socket whose C{accept()} fails with C{EMFILE}, as when the
    process has used all its file descriptors; everything else is the real
    socket's.
    """

    def __init__(self, real: Any):
        self._real = real

    def accept(self) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class ThrottledPortTests(TestCase):
    """
    L{throttle_accept_errors} puts an L{AcceptErrorLog} in front of what a
    real listening port logs.
    """

    def failing_port(self, throttled: bool) -> list[dict]:
        """
        The events a listening port out of descriptors logs when the
        reactor tries to accept on it 20 times.
        """
        port = reactor.listenTCP(0, GatewaySite(Resource(), reactor=reactor), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        if throttled:
            self.assertIs(throttle_accept_errors(port, Clock()), port)
        real = port.socket
        port.socket = _NoDescriptors(real)
        self.addCleanup(setattr, port, "socket", real)
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        try:
            for _ in range(20):
                port.doRead()
        finally:
            globalLogPublisher.removeObserver(events.append)
        return [e for e in events if "accept" in (e.get("log_format") or "") or "EMFILE" in (e.get("log_format") or "")]

    def test_unthrottledFloods(self) -> None:
        """
        Without it, Twisted logs every failed try (what the test below
        relies on).
        """
        self.assertGreaterEqual(len(self.failing_port(throttled=False)), 20)

    def test_oneWarning(self) -> None:
        """
        With it, 20 failed tries within a second make one warning.
        """
        [warning] = self.failing_port(throttled=True)
        self.assertEqual(warning["log_namespace"], "echogate.proxy")
        self.assertEqual(warning["failures"], {"EMFILE": 1})

    def test_notAPort(self) -> None:
        """
        Something without Twisted's per-port logger is left as it is.
        """
        thing = object()
        self.assertIs(throttle_accept_errors(thing, Clock()), thing)
