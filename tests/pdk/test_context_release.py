"""
Tests that a finished request's context is freed by reference counting,
not left in cycles for the garbage collector.
"""
from __future__ import annotations

import platform
from typing import Any, Callable
from unittest import skipIf

from twisted.trial.unittest import SynchronousTestCase

from tests.proxy.test_plugin_contract import make_plugin


def _contexts_left_by(one: Callable[[], object]) -> list:
    """
    The request contexts that the cyclic collector finds after C{one()}
    has run twice (with the collector off meanwhile).
    """
    import gc

    from echogate.pdk.context import RequestContext

    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.disable()
        for _ in range(2):
            one()
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, RequestContext)]
    finally:
        gc.set_debug(flags)
        del gc.garbage[:]
        gc.enable()


class ReleaseTests(SynchronousTestCase):
    """
    A finished request's context is freed by reference counting, not left
    in cycles for the garbage collector.
    """

    @skipIf(platform.python_implementation() != "CPython", "reference counting is CPython's")
    def test_noCyclesLeft(self) -> None:
        """
        After a request (with a plugin view, a logger and a streamed body),
        the cyclic collector finds no request context to free.
        """
        from echogate.bundled.header_echo import HeaderEcho
        from echogate.testing import GatewayHarness

        def logging_access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.log.debug("seen")

        harness = GatewayHarness([HeaderEcho(), make_plugin("logs", access=logging_access)],
                                 configs=[("header-echo", {}), ("logs", {})])
        # The harness keeps its latest request; the first one must go.
        self.assertEqual(_contexts_left_by(
            lambda: self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "v"}))), [])

    @skipIf(platform.python_implementation() != "CPython", "reference counting is CPython's")
    def test_noCyclesOnTheLeanClient(self) -> None:
        """
        A request proxied through echogate's own upstream client (its
        callbacks, not a Deferred, carry the response to the gateway)
        leaves no request context for the cyclic collector either.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        from echogate.bundled.header_echo import HeaderEcho
        from echogate.proxy.gateway import Gateway, GatewayResource
        from echogate.proxy.site import GatewaySite
        from echogate.proxy.snapshot import Snapshot
        from echogate.store.data import ConfigurationData
        from echogate.upstream.connection import HTTP11Connection
        from echogate.upstream.lean import LeanUpstreamClient

        service = {"id": "s", "name": "s", "protocol": "http", "host": "127.0.0.1", "port": 9000, "path": None,
                   "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
                   "enabled": True}
        route = {"id": "r", "name": "r", "protocols": ["http"], "methods": None, "hosts": None, "paths": ["/"],
                 "headers": None, "strip_path": False, "preserve_host": False, "regex_priority": 0,
                 "service": {"id": "s"}, "path_handling": "v0"}
        echo = HeaderEcho()
        plugin = {"id": "p", "name": echo.name, "config": echo.config_schema.validate({}), "enabled": True,
                  "route": {"id": "r"}, "service": None, "consumer": None}
        snapshot = Snapshot.build(ConfigurationData(version=1, services=(service,), routes=(route,),
                                                    plugins=(plugin,)), {echo.name: echo})
        clock = Clock()
        client = LeanUpstreamClient(clock)
        client.request = lambda *a: self.fail("the gateway used the Deferred interface")  # type: ignore
        site = GatewaySite(GatewayResource(Gateway(clock=clock, snapshot=lambda: snapshot, upstream=client)),
                           reactor=clock)
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(peer)
        down = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        channel.makeConnection(down)
        conn = HTTP11Connection(client, ("127.0.0.1", 9000))
        conn.makeConnection(StringTransport())
        client._release(conn)

        def one() -> None:
            channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Echo: v\r\n\r\n")
            conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        one()
        self.assertIn(b"X-Response-Echo: v", down.value())
        self.assertEqual(_contexts_left_by(one), [])
        self.assertEqual(down.value().count(b"HTTP/1.1 200 OK"), 3)
