"""
L{echogate.polling.GatewayReactor}, the node's reactor: Twisted's own
reactor tests for TCP run against it (each test builds, runs and stops a
reactor instance of its own, beside trial's), and ours for what it does
differently: a descriptor only readable (or writable) is read (written)
without a log context, an exception from it is still logged under the
connection's label and drops the connection, and every other event goes
through Twisted's own handling under the log context.
"""
from __future__ import annotations

import select
import socket
import subprocess
import sys
from typing import Any

from twisted.internet import protocol
from twisted.internet.test import test_tcp
from twisted.internet.test.connectionmixins import ConnectableProtocol, runProtocolsWithReactor
from twisted.internet.test.reactormixins import ReactorBuilder
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.python.log import ILogContext
from twisted.trial import unittest

from echogate.settings import ConfigError, install_reactor

_OURS = ["echogate.polling.GatewayReactor"]


class _TCPClients(test_tcp.TCP4ClientTestsBuilder):
    _reactors = _OURS

    def test_logPrefix(self) -> None:
        """
        (In place of Twisted's, which checks that the legacy log context
        names the connection while its protocol reads: this reactor pushes
        no context for a plain read, the cost it saves.) The transports
        still answer C{logPrefix} with their protocol's, and a read sees
        no connection's label.
        """

        class Prefixed(ConnectableProtocol):
            def __init__(self, prefix: str) -> None:
                self._prefix = prefix
                self.system: str | None = None

            def connectionMade(self) -> None:
                self.transport.write(b"a")

            def logPrefix(self) -> str:
                return self._prefix

            def dataReceived(self, data: bytes) -> None:
                self.system = context.get(ILogContext)["system"]
                self.prefix = self.transport.logPrefix()
                self.transport.write(b"b")
                if b"b" in data:
                    self.transport.loseConnection()

        client, server = Prefixed("Custom Client"), Prefixed("Custom Server")
        runProtocolsWithReactor(self, server, client, self.endpoints)
        self.assertEqual((client.system, server.system), ("-", "-"))
        self.assertIn("Custom Client", client.prefix)
        self.assertIn("Custom Server", server.prefix)


class _TCPConnections(test_tcp.TCPConnectionTestsBuilder):
    _reactors = _OURS


class _TCPPorts(test_tcp.TCPPortTestsBuilder):
    _reactors = _OURS


class _Aborting(test_tcp.AbortConnectionTests):
    _reactors = _OURS


for _builder in (_TCPClients, _TCPConnections, _TCPPorts, _Aborting):
    globals().update(_builder.makeTestCaseClasses())


class _Recorder(protocol.Protocol):
    """
    A server protocol that records what it reads and how its connection
    ended, and raises from C{dataReceived} when told to.
    """

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.received = b""
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.fail:
            raise ZeroDivisionError("a bug in a protocol")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.reason = reason
        self.factory.lost(self)


class _Factory(protocol.ServerFactory):
    def __init__(self, reactor: Any, fail: bool) -> None:
        self.reactor = reactor
        self.fail = fail
        self.protocols: list[_Recorder] = []

    def buildProtocol(self, addr: Any) -> _Recorder:
        p = _Recorder(self.fail)
        p.factory = self
        self.protocols.append(p)
        return p

    def lost(self, p: _Recorder) -> None:
        if self.reactor.running:
            self.reactor.stop()


class _Behaviour(ReactorBuilder):
    """
    What L{echogate.polling.GatewayReactor} does that Twisted's epoll reactor does
    differently, or must do the same.
    """

    _reactors = _OURS

    def _serve(self, fail: bool, send: bytes, close: bool) -> tuple[_Factory, list[tuple[Any, ...]]]:
        """
        Run a reactor with a server of L{_Recorder}s; a blocking client
        socket sends C{send} (then closes its side when C{close}) and the
        reactor stops when the server's connection is lost. Return the
        factory and every call of C{log.callWithLogger} made meanwhile.
        """
        reactor = self.buildReactor()
        factory = _Factory(reactor, fail)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        calls: list[tuple[Any, ...]] = []
        real = log.callWithLogger

        def counting(logger: Any, func: Any, *args: Any, **kw: Any) -> Any:
            calls.append((logger, func))
            return real(logger, func, *args, **kw)

        self.patch(log, "callWithLogger", counting)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)

        def talk() -> None:
            client.sendall(send)
            if close:
                client.shutdown(socket.SHUT_WR)

        reactor.callWhenRunning(talk)
        self.runReactor(reactor, timeout=10)
        return factory, calls

    def test_readWithoutLogContext(self) -> None:
        """
        Bytes on a connection only readable are read without
        C{log.callWithLogger} (the cost it saves); they reach the
        protocol whole.
        """
        reactor = self.buildReactor()
        factory = _Factory(reactor, fail=False)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        calls: list[Any] = []
        real = log.callWithLogger

        def counting(logger: Any, func: Any, *args: Any, **kw: Any) -> Any:
            calls.append(logger)
            return real(logger, func, *args, **kw)

        self.patch(log, "callWithLogger", counting)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)

        def check() -> None:
            if factory.protocols and factory.protocols[0].received == b"hello":
                reactor.stop()
            else:
                reactor.callLater(0.01, check)

        reactor.callWhenRunning(client.sendall, b"hello")
        reactor.callWhenRunning(check)
        self.runReactor(reactor, timeout=10)
        self.assertEqual(factory.protocols[0].received, b"hello")
        connection = factory.protocols[0].transport
        self.assertNotIn(connection, calls)

    def test_exceptionLoggedUnderTheConnection(self) -> None:
        """
        An exception from a read is logged as Twisted logs it, labelled
        with the connection's C{logPrefix} (C{system}), and the connection
        is dropped with it as the reason.
        """
        events: list[dict[str, Any]] = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        factory, calls = self._serve(fail=True, send=b"boom", close=False)
        recorder = factory.protocols[0]
        self.assertEqual(recorder.received, b"boom")
        assert recorder.reason is not None
        self.assertIsInstance(recorder.reason.value, ZeroDivisionError)
        errors = [e for e in events if e.get("isError") and e.get("failure") is not None]
        self.assertEqual([e["failure"].type for e in errors], [ZeroDivisionError])
        self.assertEqual(errors[0]["system"], recorder.transport.logPrefix())
        self.flushLoggedErrors(ZeroDivisionError)

    def test_otherEventsUnderTheLogContext(self) -> None:
        """
        A connection whose peer closed (epoll reports a hang-up with, or
        after, its last bytes) ends through Twisted's own handling, under
        the log context: the last bytes are read and the connection ends
        cleanly.
        """
        factory, calls = self._serve(fail=False, send=b"last words", close=True)
        recorder = factory.protocols[0]
        self.assertEqual(recorder.received, b"last words")
        assert recorder.reason is not None
        recorder.reason.trap(Exception)
        self.assertEqual(recorder.reason.type.__name__, "ConnectionDone")

    def test_closedDescriptorGoesToTwisted(self) -> None:
        """
        A ready descriptor whose C{fileno()} says C{-1} (closed under the
        reactor's feet) is handed to Twisted's own handling, which drops
        it, instead of being read.
        """
        reactor = self.buildReactor()
        handled: list[tuple[Any, int, int]] = []

        class Gone:
            def fileno(self) -> int:
                return -1

            def logPrefix(self) -> str:
                return "gone"

            def doRead(self) -> None:
                raise AssertionError("read")

        gone = Gone()
        reactor._selectables[12345] = gone
        self.patch(reactor, "_doReadOrWrite", lambda s, fd, event: handled.append((s, fd, event)))
        class Poller:
            def poll(self, timeout: float, most: int) -> list[tuple[int, int]]:
                return [(12345, select.EPOLLIN)]

        self.patch(reactor, "_poller", Poller())
        reactor.doPoll(0)
        del reactor._selectables[12345]
        self.assertEqual(handled, [(gone, 12345, select.EPOLLIN)])


globals().update(_Behaviour.makeTestCaseClasses())


class InstallTests(unittest.TestCase):
    """
    L{install_reactor}, which the node's options call before anything
    imports the reactor.
    """

    def _fresh(self, code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.strip()

    def test_installsTheGatewayReactor(self) -> None:
        """
        C{echogate}, in a process with no reactor yet: a
        L{echogate.polling.GatewayReactor} is C{twisted.internet.reactor}.
        """
        out = self._fresh("from echogate.settings import install_reactor as i; print(i('echogate'));"
                          "from twisted.internet import reactor; print(type(reactor).__name__)")
        self.assertEqual(out.splitlines(), ["echogate.polling.GatewayReactor", "GatewayReactor"])

    def test_twistedLeavesTheChoice(self) -> None:
        """
        C{twisted} installs nothing: Twisted's default comes on first use.
        """
        out = self._fresh("from echogate.settings import install_reactor as i; print(repr(i('twisted')));"
                          "from twisted.internet import reactor; print(type(reactor).__name__)")
        self.assertEqual(out.splitlines(), ["''", "EPollReactor"])

    def test_optionsInstallIt(self) -> None:
        """
        The node's options (what C{twistd echogate} parses) install it
        before their listeners are read, which imports the reactor;
        C{--reactor twisted} does not.
        """
        code = ("from echogate.settings import Options as O; o = O(); o.environ = {}; o.parseOptions(ARGS);"
                "from twisted.internet import reactor; print(type(reactor).__name__, o.settings.reactor)")
        self.assertEqual(self._fresh(code.replace("ARGS", "[]")), "GatewayReactor echogate")
        self.assertEqual(self._fresh(code.replace("ARGS", "['--reactor', 'twisted']")), "EPollReactor twisted")

    def test_installedAlready(self) -> None:
        """
        With a reactor installed already (as here, under trial, or after
        C{twistd --reactor}), it installs nothing.
        """
        from twisted.internet import reactor  # noqa: F401

        self.assertEqual(install_reactor("echogate"), "")

    def test_badValue(self) -> None:
        """
        Anything but C{echogate} and C{twisted} is refused with the
        setting's name.
        """
        with self.assertRaises(ConfigError) as e:
            install_reactor("select")
        self.assertEqual(str(e.exception), "reactor: expected 'echogate' or 'twisted', got 'select'")
