"""
The gateway service as a whole: plugins' init phase at start-up, the node
id, and what GET / shows.
"""
from __future__ import annotations

import gc
import json
from typing import Any
from unittest import skipIf

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from echogate.bundled.header_echo import HeaderEcho
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.schema.fields import Integer
from echogate.service import GatewayService, node_id
from echogate.settings import ConfigError, resolve
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin, fresh_database
from tests.upstream_server import start_upstream

_init_calls: list[list[dict]] = []


class Counting(GatewayPlugin):
    name = "counting"
    version = "1.2.3"
    priority = 5
    config_schema = Record({"n": Integer(default=1)})

    def init(self, configs: Any) -> None:
        _init_calls.append([dict(c) for c in configs])


class InitPhaseTests(unittest.TestCase, PostgresMixin):
    timeout = 60

    async def test_initGetsEveryStoredConfig(self) -> None:
        """
        At start-up each plugin's init runs once with every stored config.
        """
        dsn = self.database()
        plugins = {"counting": Counting(), "header-echo": HeaderEcho()}
        first = await start_gateway(self, database=dsn, plugin_objects=plugins)
        answer = await first.admin("POST", "/plugins", json={"name": "counting", "config": {"n": 7}})
        self.assertEqual(answer.code, 201, answer.body)
        del _init_calls[:]
        await start_gateway(self, database=dsn, plugin_objects=plugins)
        self.assertEqual(_init_calls, [[{"n": 7}]])


class NodeTests(unittest.TestCase):
    timeout = 60

    def test_nodeIdKept(self) -> None:
        """
        The node id is made once and kept in the data directory.
        """
        directory = self.mktemp()
        first = node_id(directory)
        self.assertEqual(node_id(directory), first)
        self.assertNotEqual(node_id(self.mktemp()), first)

    async def test_rootShowsNodeAndNoSecrets(self) -> None:
        """
        GET / names the node, the enabled plugins with version and
        priority, and the settings without the database password.
        """
        dsn = (await fresh_database()).replace("postgres@", "postgres:hunter2@")
        gateway = await start_gateway(self, database=dsn)
        info = (await gateway.admin("GET", "/")).json()
        self.assertEqual(info["node_id"], gateway.service.node_id)
        self.assertEqual(info["plugins"]["available_on_server"]["header-echo"],
                         {"version": "1.0.0", "priority": 1000})
        self.assertEqual(info["configuration"]["proxy_listen"], ["tcp:0:interface=127.0.0.1"])
        self.assertNotIn("hunter2", repr(info))
        self.assertIn(":***@", info["configuration"]["pg_dsn"])

    async def test_enabledInCluster(self) -> None:
        """
        enabled_in_cluster lists the plugins that stored configs use.
        """
        gateway = await start_gateway(self)
        await gateway.admin("POST", "/plugins", json={"name": "header-echo"})
        info = (await gateway.admin("GET", "/")).json()
        self.assertEqual(info["plugins"]["enabled_in_cluster"], ["header-echo"])


    async def test_writeCatchesUp(self) -> None:
        """
        An Admin API write waits for the node's snapshot to catch up with
        the store (L{LiveConfiguration.catch_up}), and then serves it.
        """
        gateway = await start_gateway(self)
        live = gateway.service.live
        calls: list[int] = []
        catch_up = live.catch_up

        def recording() -> Any:
            calls.append(live.current.version)
            return catch_up()

        self.patch(live, "catch_up", recording)
        await gateway.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:1"})
        self.assertEqual(len(calls), 1)
        self.assertEqual(live.current.version, await gateway.service.store.version())


class HeapTests(unittest.TestCase):
    timeout = 60

    def test_withoutFreeze(self) -> None:
        """
        Where the collector cannot freeze (PyPy), settling does nothing.
        """
        from echogate import heap

        class Collector:
            def collect(self) -> None:
                raise AssertionError("nothing to collect for")

        self.patch(heap, "gc", Collector())
        heap.settle_heap()

    @skipIf(not hasattr(gc, "freeze"), "this collector cannot freeze (PyPy)")
    def test_frozen(self) -> None:
        """
        Settling moves what the process holds out of the cyclic
        collector's way (frozen), whatever the configuration's size.
        """
        from echogate.heap import settle_heap

        self.addCleanup(gc.unfreeze)
        gc.unfreeze()
        settle_heap()
        self.assertGreater(gc.get_freeze_count(), 0)

    async def test_nodeSettles(self) -> None:
        """
        A node settles the heap once its configuration is loaded (unless
        told otherwise, as the other tests' nodes are).
        """
        from echogate.heap import settle_heap

        gateway = await start_gateway(self, settle=settle_heap)
        self.assertEqual(gateway.service.live._settle, gateway.service._settle_heap)
        self.assertIs(
            GatewayService(None, gateway.service.settings, {})._settle, settle_heap)

    @skipIf(not hasattr(gc, "set_threshold"), "this collector has no generations (PyPy)")
    def test_youngThreshold(self) -> None:
        """
        A node's settling runs C{settle} and then sets the collector's
        young threshold from C{gc_young_threshold}, keeping the older
        generations' thresholds; 0 leaves the thresholds alone.
        """
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        settled = []
        settings = attrs.evolve(resolve({"proxy_listen": "tcp:0"}, {}, None), gc_young_threshold=12345)
        service = GatewayService(None, settings, {}, settle=lambda: settled.append(True))
        service._settle_heap()
        self.assertEqual(settled, [True])
        self.assertEqual(gc.get_threshold(), (12345, *before[1:]))
        gc.set_threshold(*before)
        GatewayService(None, attrs.evolve(settings, gc_young_threshold=0), {}, settle=lambda: None)._settle_heap()
        self.assertEqual(gc.get_threshold(), before)

    def test_trimThreshold(self) -> None:
        """
        A node's settling sets the C heap's trim threshold from
        C{malloc_trim_threshold} (0 included: the helper leaves the C
        library's own).
        """
        import echogate.heap

        asked: list[int] = []
        self.patch(echogate.heap, "trim_threshold", lambda size: asked.append(size) or True)
        settings = attrs.evolve(resolve({"proxy_listen": "tcp:0"}, {}, None), gc_young_threshold=0)
        for size in (4096, 0):
            GatewayService(None, attrs.evolve(settings, malloc_trim_threshold=size), {},
                           settle=lambda: None)._settle_heap()
        self.assertEqual(asked, [4096, 0])

    def test_trimThresholdUnsupported(self) -> None:
        """
        Where the C library has no C{mallopt}, the node says so once and
        goes on.
        """
        import echogate.heap

        self.patch(echogate.heap, "trim_threshold", lambda size: False)
        events: list[dict] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        settings = attrs.evolve(resolve({"proxy_listen": "tcp:0"}, {}, None), gc_young_threshold=0)
        service = GatewayService(None, settings, {}, settle=lambda: None)
        service._settle_heap()
        service._settle_heap()
        said = [e for e in events if "malloc_trim_threshold" in e.get("log_format", "")]
        self.assertEqual(len(said), 1)

    def test_trimThresholdSetting(self) -> None:
        """
        The trim threshold is 16 MiB unless set; it is a size (k, m, g), at
        most 2047m.
        """
        self.assertEqual(resolve({"proxy_listen": "tcp:0"}, {}, None).malloc_trim_threshold, 16 * 1024**2)
        self.assertEqual(resolve({}, {"ECHOGATE_MALLOC_TRIM_THRESHOLD": "512k"}, None).malloc_trim_threshold,
                         512 * 1024)
        self.assertEqual(resolve({"malloc_trim_threshold": "0"}, {}, None).malloc_trim_threshold, 0)
        for bad in ("-1", "lots", "1.5m", "2g"):
            with self.assertRaises(ConfigError) as raised:
                resolve({"malloc_trim_threshold": bad}, {}, None)
            self.assertIn("malloc_trim_threshold", str(raised.exception), f"row bad={bad!r}")

    def test_youngThresholdDefault(self) -> None:
        """
        The young threshold is 50,000 unless set; it must be a whole number.
        """
        self.assertEqual(resolve({"proxy_listen": "tcp:0"}, {}, None).gc_young_threshold, 50000)
        self.assertEqual(resolve({}, {"ECHOGATE_GC_YOUNG_THRESHOLD": "0"}, None).gc_young_threshold, 0)
        for bad in ("-1", "many", "1.5"):
            with self.assertRaises(ConfigError) as raised:
                resolve({"gc_young_threshold": bad}, {}, None)
            self.assertIn("gc_young_threshold", str(raised.exception), f"row bad={bad!r}")


class AdminBodiesTests(unittest.TestCase):
    """
    The Admin API's listener leaves bodies to the Admin API, which answers
    a bad one with a Kong-shaped error.
    """

    timeout = 60

    async def test_malformedMultipart(self) -> None:
        """
        A POST whose multipart body does not parse gets the Admin API's
        JSON 400, not Twisted's bare one.
        """
        from echogate.pdk.bodies import CANNOT_PARSE_MULTIPART

        gateway = await start_gateway(self)
        answer = await gateway.admin("POST", "/services", data=b"--nope\r\nthis is not a multipart body",
                                     headers={"Content-Type": "multipart/form-data; boundary=b"})
        self.assertEqual((answer.code, answer.json()), (400, {"message": CANNOT_PARSE_MULTIPART}))
        self.assertEqual((await gateway.admin("GET", "/services")).json()["data"], [])


class _Raw(Protocol):
    """
    Sends bytes as they are and keeps everything the server answers until
    it closes the connection.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.received = b""
        self.closed: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.received)


async def raw_request(port: int, data: bytes) -> tuple[int, bytes]:
    """
    Send C{data} to 127.0.0.1:C{port}; the status and body of the answer.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    protocol = _Raw(data)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
    answer = await protocol.closed
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class MissingPluginsTests(unittest.TestCase, PostgresMixin):
    """
    A node started without a plugin that has stored configs (here
    C{--plugins header-echo}, leaving key-auth out) fails closed.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.upstream, port = start_upstream(self)
        self.dsn = self.database()
        configured = await start_gateway(self, database=self.dsn)
        for path, body in [("/services", {"name": "s", "url": f"http://127.0.0.1:{port}"}),
                           ("/services/s/routes", {"name": "r", "paths": ["/private"]}),
                           ("/routes/r/plugins", {"name": "key-auth"})]:
            answer = await configured.admin("POST", path, json=body)
            self.assertEqual(answer.code, 201, answer.body)

    async def test_refused(self) -> None:
        """
        The attacker's request without a key gets 500 naming key-auth, and
        the upstream sees nothing.
        """
        node = await start_gateway(self, database=self.dsn, plugins="header-echo")
        status, body = await raw_request(
            node.proxy_port, b"GET /private/data HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
        self.assertEqual((status, json.loads(body)),
                         (500, {"message": "plugin 'key-auth' is configured but not loaded on this node"}))
        self.assertEqual(self.upstream.seen, [])

    async def test_status(self) -> None:
        """
        C{GET /status} lists the missing plugins (none on a node that has
        them all).
        """
        node = await start_gateway(self, database=self.dsn, plugins="header-echo")
        self.assertEqual((await node.admin("GET", "/status")).json()["missing_plugins"], ["key-auth"])
        whole = await start_gateway(self, database=self.dsn)
        self.assertEqual((await whole.admin("GET", "/status")).json()["missing_plugins"], [])

    async def test_skip(self) -> None:
        """
        With C{missing_plugins = skip} the request goes on without key-auth.
        """
        node = await start_gateway(self, database=self.dsn, plugins="header-echo",
                                   settings={"missing_plugins": "skip"})
        status, _ = await raw_request(
            node.proxy_port, b"GET /private/data HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(len(self.upstream.seen), 1)


class FatalStartTests(unittest.TestCase):
    """
    Start-up failures end the process with a non-zero exit code and one
    line saying why.
    """

    def test_dataDirIsAFile(self) -> None:
        """
        A data directory that is a file is refused, named.
        """
        from echogate.service import check_data_dir

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        with self.assertRaises(SystemExit) as raised:
            check_data_dir(path)
        self.assertEqual(str(raised.exception.code), f"echogate: data_dir {path} is a file, not a directory")

    def test_dataDirMade(self) -> None:
        """
        A usable data directory is made if need be, and left empty.
        """
        import os

        from echogate.service import check_data_dir

        path = os.path.join(self.mktemp(), "data")
        check_data_dir(path)
        self.assertEqual(os.listdir(path), [])

    def test_failureAfterStartExitsOne(self) -> None:
        """
        A failure once the reactor runs stops it and leaves exit code 1,
        which L{exit_on_failure} ends the process with.
        """
        import os

        from twisted.python.failure import Failure

        from echogate.service import exit_on_failure
        from echogate.store.embedded import EmbeddedStartFailed

        class Reactor:
            running = True
            stopped = 0

            def stop(self) -> None:
                self.stopped += 1

        reactor = Reactor()
        settings = resolve({"proxy_listen": "tcp:0", "data_dir": self.mktemp()}, {}, None)
        service = GatewayService(reactor, settings, {}, settle=None)
        exits: list[int] = []
        self.patch(os, "_exit", exits.append)
        exit_on_failure(service)
        self.assertEqual(exits, [])
        service.ready.addErrback(lambda f: None)
        service._start_failed(Failure(EmbeddedStartFailed("cannot start the embedded PostgreSQL server")))
        self.assertEqual((service.exit_code, reactor.stopped), (1, 1))
        exit_on_failure(service)
        self.assertEqual(exits, [1])


class EdgeWiringTests(unittest.TestCase):
    """
    The edge settings reach the proxy listener of a real node.
    """

    async def test_settingsReachTheSite(self) -> None:
        """
        Timeouts, head limits and connection caps are the settings'.
        """
        gw = await start_gateway(self, settings={
            "keepalive_timeout": "7", "client_header_timeout": "3", "client_body_timeout": "4",
            "send_timeout": "5", "max_request_line": "2k", "max_header_line": "3k", "max_headers": "40",
            "max_connections": "123", "max_connections_per_ip": "9"})
        site = gw.service.proxy_site
        self.assertEqual(site.timeOut, 7)
        limits = site.head_limits
        self.assertEqual((limits.header_timeout, limits.body_timeout, limits.send_timeout), (3, 4, 5))
        self.assertEqual((limits.request_line, limits.header_line, limits.headers), (2048, 3072, 40))
        self.assertEqual((site.max_connections, site.max_connections_per_ip), (123, 9))

    async def test_automaticConnectionCap(self) -> None:
        """
        max_connections = auto gives the site the descriptor-derived cap.
        """
        from echogate.settings import connection_limit

        gw = await start_gateway(self)
        self.assertEqual(gw.service.proxy_site.max_connections, connection_limit())

