"""
DB-less mode (C{database = off}): a node whose entities come from a
declarative configuration file or C{POST /config}, with no PostgreSQL at
all. Real nodes on 127.0.0.1 (in this process, and as twistd processes
for start-up and SIGHUP); none of these tests starts a database.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import treq
import yaml
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from echogate.admin import AdminAPI, NodeInfo
from echogate.declarative.dbless import DBlessConfiguration
from echogate.registry import load_plugins
from echogate.service import GatewayService
from echogate.settings import ConfigError, resolve
from echogate.store.declared import DeclaredStore
from echogate.testing import MemoryStore
from tests.gateway import Answer, RunningGateway
from tests.test_startup import StartupTestCase, _env, _free_port
from tests.upstream_server import start_upstream
from tests.waiting import until


def kong_yml(upstream_port: int, *, service: str = "mock-service", path: str = "/mock",
             plugins: list[dict[str, Any]] | None = None, route: str = "mock-route") -> str:
    """
    The README walk-through as a declarative file: a service, its route
    (C{mockbin.org}, C{path}) and the header-echo plugin on the service.
    """
    return yaml.safe_dump({
        "_format_version": "3.0",
        "services": [{
            "name": service,
            "url": f"http://127.0.0.1:{upstream_port}",
            "routes": [{"name": route, "hosts": ["mockbin.org"], "paths": [path]}],
            "plugins": plugins if plugins is not None else [{"name": "header-echo"}],
        }],
    })


async def start_dbless(testcase: unittest.TestCase, *, declarative_config: str | None = None,
                       settings: dict[str, str] | None = None) -> RunningGateway:
    """
    Start a DB-less node in this process (stopped at the end of
    C{testcase}); its data directory is C{testcase.data_dir}.
    """
    testcase.data_dir = testcase.mktemp()  # type: ignore[attr-defined]
    flags = {
        "proxy_listen": "tcp:0:interface=127.0.0.1",
        "admin_listen": "tcp:0:interface=127.0.0.1",
        "database": "off",
        "declarative_config": declarative_config,
        "data_dir": testcase.data_dir,  # type: ignore[attr-defined]
        "config_check_interval": "1",
        **(settings or {}),
    }
    config = resolve(flags, {}, None)
    service = GatewayService(reactor, config, load_plugins(config.plugins), settle=None)
    service.privilegedStartService()
    service.startService()
    testcase.addCleanup(service.stopService)
    await service.ready
    pool = HTTPConnectionPool(reactor, persistent=True)
    testcase.addCleanup(pool.closeCachedConnections)
    return RunningGateway(service, pool)


class DBlessTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)

    def write(self, text: str) -> str:
        path = self.mktemp() + ".yml"
        Path(path).write_text(text)
        return path

    async def node(self, text: str | None = None) -> RunningGateway:
        return await start_dbless(self, declarative_config=self.write(text) if text is not None else None)

    def assertNoDatabase(self, gateway: RunningGateway) -> None:
        """
        No embedded server was started, nor its directory made.
        """
        self.assertIsNone(gateway.service.embedded)
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "postgres")))  # type: ignore[attr-defined]

    async def echo(self, gateway: RunningGateway, path: str = "/mock/request") -> Answer:
        return await gateway.proxy("GET", path, headers={"Host": "mockbin.org", "X-Request-Echo": "Hello, world"})


class FileTests(DBlessTestCase):
    async def test_walkThrough(self) -> None:
        """
        The README walk-through from a file: the proxied request reaches
        the service and carries the header-echo plugin's header; no
        database was started.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        answer = await self.echo(gateway)
        self.assertEqual(answer.code, 200, answer)
        self.assertEqual(answer.json()["uri"], "/request")
        self.assertEqual(answer.header("X-Response-Echo"), "Hello, world")
        self.assertNoDatabase(gateway)

    async def test_reads(self) -> None:
        """
        The Admin API reads the file's entities: lists, by name, nested.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        services = (await gateway.admin("GET", "/services")).json()["data"]
        self.assertEqual([s["name"] for s in services], ["mock-service"])
        one = await gateway.admin("GET", "/services/mock-service")
        self.assertEqual(one.json()["port"], self.upstream_port)
        routes = (await gateway.admin("GET", "/services/mock-service/routes")).json()["data"]
        self.assertEqual([r["name"] for r in routes], ["mock-route"])
        plugins = (await gateway.admin("GET", "/plugins")).json()["data"]
        self.assertEqual([p["name"] for p in plugins], ["header-echo"])

    async def test_writesRefused(self) -> None:
        """
        Writes of entities are refused as Kong refuses them without a
        database: 405, code 12, and nothing changes.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        calls = [
            ("POST", "/services", {"name": "other", "url": "http://127.0.0.1:1"}, "create"),
            ("PUT", "/services/other", {"url": "http://127.0.0.1:1"}, "create or update"),
            ("PATCH", "/services/mock-service", {"retries": 1}, "update"),
            ("DELETE", "/services/mock-service", None, "remove"),
        ]
        for method, path, body, verb in calls:
            answer = await gateway.admin(method, path, json=body)
            self.assertEqual(answer.code, 405, (method, answer))
            self.assertEqual(answer.json(), {
                "code": 12, "name": "operation unsupported",
                "message": f"cannot {verb} 'services' entities when not using a database"})
        answer = await gateway.admin("POST", "/consumers/nobody/key-auth", json={})
        self.assertEqual(answer.code, 404)
        answer = await gateway.admin("POST", "/consumers", json={"username": "alice"})
        self.assertEqual(answer.json()["message"], "cannot create 'consumers' entities when not using a database")
        services = (await gateway.admin("GET", "/services")).json()["data"]
        self.assertEqual([(s["name"], s["retries"]) for s in services], [("mock-service", 5)])

    async def test_emptyStart(self) -> None:
        """
        Without a file the node starts empty, not ready, and waits for
        C{POST /config}.
        """
        gateway = await self.node()
        self.assertEqual((await gateway.admin("GET", "/services")).json()["data"], [])
        self.assertEqual((await gateway.admin("GET", "/status/ready")).code, 503)
        self.assertEqual((await self.echo(gateway)).code, 404)
        answer = await gateway.admin("POST", "/config", json={"config": kong_yml(self.upstream_port)})
        self.assertEqual(answer.code, 201, answer)
        self.assertEqual((await gateway.admin("GET", "/status/ready")).code, 200)
        self.assertEqual((await self.echo(gateway)).code, 200)
        self.assertNoDatabase(gateway)

    async def test_badFileAtStart(self) -> None:
        """
        A node whose file is invalid does not start.
        """
        path = self.write(kong_yml(self.upstream_port, path="no-slash"))
        flags = {"proxy_listen": "tcp:0:interface=127.0.0.1", "admin_listen": "tcp:0:interface=127.0.0.1",
                 "database": "off", "declarative_config": path, "data_dir": self.mktemp()}
        config = resolve(flags, {}, None)
        service = GatewayService(Clock(), config, load_plugins(config.plugins), settle=None)
        from echogate.declarative import DeclarativeError

        self.assertRaises(DeclarativeError, service.load_declarative)


class PostConfigTests(DBlessTestCase):
    async def test_swap(self) -> None:
        """
        C{POST /config} replaces the whole configuration: the new route
        answers, the old one is gone; the answer is the entities by id;
        C{GET /config} shows the new one.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        new = kong_yml(self.upstream_port, service="new-service", route="new-route", path="/new")
        answer = await gateway.admin("POST", "/config", json={"config": new})
        self.assertEqual(answer.code, 201, answer)
        body = answer.json()
        self.assertEqual([s["name"] for s in body["services"].values()], ["new-service"])
        self.assertEqual(list(body["services"]), [s["id"] for s in body["services"].values()])
        self.assertEqual((await self.echo(gateway, "/new/request")).code, 200)
        self.assertEqual((await self.echo(gateway)).code, 404)
        shown = yaml.safe_load((await gateway.admin("GET", "/config")).json()["config"])
        self.assertEqual([s["name"] for s in shown["services"]], ["new-service"])
        self.assertEqual(shown["_format_version"], "3.0")

    async def test_bodies(self) -> None:
        """
        The configuration may be the JSON body itself, YAML text, or the
        C{config} field of a form or a multipart body.
        """
        gateway = await self.node()
        text = kong_yml(self.upstream_port)
        as_json = yaml.safe_load(text)
        answers = [
            await gateway.admin("POST", "/config", json=as_json),
            await gateway.admin("POST", "/config", data=text.encode(),
                                headers={"Content-Type": "application/yaml"}),
            await gateway.admin("POST", "/config", data={"config": text}),
            await gateway.admin("POST", "/config", files={"config": ("kong.yml", text.encode())}),
        ]
        self.assertEqual([a.code for a in answers], [201] * 4, answers)
        answer = await gateway.admin("POST", "/config", json={"something": "else"})
        self.assertEqual((answer.code, answer.json()), (400, {"message": "expected a declarative configuration"}))

    async def test_checkHash(self) -> None:
        """
        With C{check_hash=1}, the configuration being applied already is
        answered 304; another one is applied.
        """
        text = kong_yml(self.upstream_port)
        gateway = await self.node(text)
        version = gateway.service.store.configuration_version
        answer = await gateway.admin("POST", "/config?check_hash=1", json={"config": text})
        self.assertEqual((answer.code, answer.body), (304, b""))
        self.assertEqual(gateway.service.store.configuration_version, version)
        answer = await gateway.admin("POST", "/config", json={"config": text})
        self.assertEqual(answer.code, 201)
        other = kong_yml(self.upstream_port, path="/other")
        answer = await gateway.admin("POST", "/config?check_hash=1", json={"config": other})
        self.assertEqual(answer.code, 201)

    async def test_invalid(self) -> None:
        """
        An invalid configuration is answered 400 with Kong's nested errors
        (flattened with C{flatten_errors=1}), and changes nothing.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        bad = kong_yml(self.upstream_port, path="no-slash", service="bad")
        answer = await gateway.admin("POST", "/config", json={"config": bad})
        self.assertEqual(answer.code, 400, answer)
        body = answer.json()
        self.assertEqual((body["code"], body["name"]), (14, "invalid declarative configuration"))
        self.assertIn("paths", body["fields"]["services"][0]["routes"][0])
        self.assertTrue(body["message"].startswith("declarative config is invalid: "))
        answer = await gateway.admin("POST", "/config?flatten_errors=1", json={"config": bad})
        self.assertEqual(answer.code, 400, answer)
        flat = answer.json()
        self.assertEqual(flat["fields"], {})
        [entry] = flat["flattened_errors"]
        self.assertEqual(entry["entity_type"], "route")
        self.assertTrue(entry["errors"][0]["field"].startswith("paths"))
        self.assertEqual((await self.echo(gateway)).code, 200)
        answer = await gateway.admin("POST", "/config", data=b"{not: [yaml",
                                     headers={"Content-Type": "text/yaml"})
        self.assertEqual(answer.code, 400)
        self.assertIn("failed parsing declarative configuration", answer.json()["fields"]["error"])

    async def test_clusterRateLimitingRefused(self) -> None:
        """
        rate-limiting's cluster policy needs a database: refused at load
        with a clear message; local is taken.
        """
        gateway = await self.node()
        cluster = kong_yml(self.upstream_port, plugins=[
            {"name": "rate-limiting", "config": {"minute": 5, "policy": "cluster"}}])
        answer = await gateway.admin("POST", "/config?flatten_errors=1", json={"config": cluster})
        self.assertEqual(answer.code, 400, answer)
        [entry] = answer.json()["flattened_errors"]
        self.assertEqual(entry["entity_type"], "plugin")
        self.assertEqual(entry["errors"], [{
            "type": "field", "field": "config.policy",
            "message": "the cluster policy needs a database: not available with database = off"
                       " (use local or redis)"}])
        local = kong_yml(self.upstream_port, plugins=[
            {"name": "rate-limiting", "config": {"minute": 5, "policy": "local"}}])
        answer = await gateway.admin("POST", "/config", json={"config": local})
        self.assertEqual(answer.code, 201, answer)
        self.assertEqual((await self.echo(gateway)).header("X-RateLimit-Limit-Minute"), "5")

    async def test_underLoad(self) -> None:
        """
        Proxied requests running while five configurations are posted all
        succeed: each is served whole by one configuration or the next.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        done: list[bool] = []
        codes: list[int] = []

        async def client() -> None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            try:
                for _ in range(400):
                    if done:
                        break
                    response = await treq.get(f"{gateway.proxy_url}/mock/request",
                                              headers={"Host": "mockbin.org"}, pool=pool)
                    await response.content()
                    codes.append(response.code)
            finally:
                await pool.closeCachedConnections()

        clients = [Deferred.fromCoroutine(client()) for _ in range(4)]
        posted = []
        for i in range(5):
            config = kong_yml(self.upstream_port, service=f"service-{i}", route=f"route-{i}")
            answer = await gateway.admin("POST", "/config", json={"config": config})
            posted.append(answer.code)
        done.append(True)
        await DeferredList(clients, fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual(posted, [201] * 5)
        self.assertTrue(codes)
        self.assertEqual([c for c in codes if c != 200], [])
        services = (await gateway.admin("GET", "/services")).json()["data"]
        self.assertEqual([s["name"] for s in services], ["service-4"])


class DatabaseModeConfigTests(unittest.TestCase):
    """
    A node with a database answers C{/config} as Kong does: 400.
    """

    def test_refused(self) -> None:
        """
        C{GET} and C{POST /config}: 400, the endpoint is DB-less only.
        """
        api = AdminAPI(store=MemoryStore(), plugins={}, clock=Clock(),
                       node=NodeInfo(node_id="n", hostname="h", version="0", configuration={}))
        stub = StubTreq(api.resource())
        for method in ("GET", "POST"):
            response = self.successResultOf(stub.request(method, "http://localhost/config",
                                                         json={"config": "_format_version: '3.0'"}))
            self.assertEqual(response.code, 400)
            body = json.loads(self.successResultOf(response.content()))
            self.assertEqual(body, {"message": "this endpoint is only available when echogate is configured"
                                               " to not use a database"})
            stub.flush()


class SettingsTests(unittest.SynchronousTestCase):
    def test_off(self) -> None:
        """
        C{database = off} (any case, or C{ECHOGATE_DATABASE=off}) is DB-less,
        with C{declarative_config}.
        """
        settings = resolve({"database": "OFF", "declarative_config": "kong.yml"}, {}, None)
        self.assertTrue(settings.dbless)
        self.assertEqual(settings.declarative_config, "kong.yml")
        self.assertEqual(settings.public()["database"], "off")
        from_env = resolve({}, {"ECHOGATE_DATABASE": "off", "ECHOGATE_DECLARATIVE_CONFIG": "k.yml"}, None)
        self.assertEqual((from_env.dbless, from_env.declarative_config), (True, "k.yml"))
        self.assertFalse(resolve({}, {}, None).dbless)

    def test_declarativeConfigNeedsOff(self) -> None:
        """
        C{declarative_config} with a database is refused, named.
        """
        error = self.assertRaises(ConfigError, resolve, {"declarative_config": "kong.yml"}, {}, None)
        self.assertIn("declarative_config: only used with database = off", str(error))


class ProcessTests(StartupTestCase):
    """
    C{twistd -n echogate --database off --declarative-config kong.yml}.
    """

    async def test_sighup(self) -> None:
        """
        SIGHUP reads the file again: a changed file is applied; a bad one
        is logged, one line per error, and the node keeps serving.
        """
        _, upstream_port = start_upstream(self)
        cwd = self.mktemp_dir()
        path = Path(cwd) / "kong.yml"
        path.write_text(kong_yml(upstream_port))
        proxy_port, admin_port = _free_port(), _free_port()
        args = ["--database", "off", "--declarative-config", "kong.yml",
                "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        gateway = await self.start(args, _env(), cwd, admin_port)
        proxy = f"http://127.0.0.1:{proxy_port}"

        async def code(route: str) -> int:
            response = await treq.get(f"{proxy}{route}/request", headers={"Host": "mockbin.org"}, pool=self.pool)
            await response.content()
            return int(response.code)

        self.assertEqual(await code("/mock"), 200)
        path.write_text(kong_yml(upstream_port, path="/changed"))
        gateway.transport.signalProcess("HUP")
        await until(lambda: Deferred.fromCoroutine(code("/changed")).addCallback(lambda c: c == 200))
        self.assertEqual(await code("/mock"), 404)

        path.write_text(kong_yml(upstream_port, path="no-slash", service="bad").replace(
            "mockbin.org", "bad..host"))
        gateway.transport.signalProcess("HUP")
        await until(lambda: "is invalid" in gateway.output.decode())
        await until(lambda: gateway.output.decode().count("kong.yml: route") >= 2)
        self.assertEqual(await code("/changed"), 200)
        self.assertFalse(os.path.exists(os.path.join(cwd, "echogate-data", "postgres")))
        gateway.transport.signalProcess("TERM")
        self.assertEqual(await gateway.ended, -signal.SIGTERM)

    async def test_badFile(self) -> None:
        """
        An invalid file stops start-up with one line naming its errors.
        """
        path = Path(self.mktemp_dir(), "kong.yml").resolve()
        path.write_text(kong_yml(1, path="no-slash"))
        line = await self.refuse("--database", "off", "--declarative-config", str(path))
        self.assertIn("is invalid: route 'mock-route': paths", line)

    async def test_workers(self) -> None:
        """
        With --workers, each worker serves the main process's
        configuration, also after a C{POST /config}.
        """
        _, upstream_port = start_upstream(self)
        cwd = self.mktemp_dir()
        Path(cwd, "kong.yml").write_text(kong_yml(upstream_port))
        proxy_port, admin_port = _free_port(), _free_port()
        args = ["--database", "off", "--declarative-config", "kong.yml", "--workers", "2",
                "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        gateway = await self.start(args, _env(), cwd, admin_port)
        await until(lambda: gateway.output.decode().count("echogate ready") >= 2, timeout=60)
        fresh = HTTPConnectionPool(reactor, persistent=False)

        async def all_ok(route: str) -> bool:
            for _ in range(20):
                response = await treq.get(f"http://127.0.0.1:{proxy_port}{route}/request",
                                          headers={"Host": "mockbin.org"}, pool=fresh)
                await response.content()
                if response.code != 200:
                    return False
            return True

        self.assertTrue(await all_ok("/mock"))
        response = await treq.post(f"http://127.0.0.1:{admin_port}/config", pool=self.pool,
                                   json={"config": kong_yml(upstream_port, path="/posted")})
        self.assertEqual(response.code, 201, await response.content())
        await until(lambda: Deferred.fromCoroutine(all_ok("/posted")), timeout=30)
        gateway.transport.signalProcess("TERM")
        self.assertEqual(await gateway.ended, -signal.SIGTERM)



class _Runner:
    """
    A C{run_in_thread} for L{DBlessConfiguration} that records what it was
    given and calls it when the test says (L{fire}).

    @ivar calls: the functions given, in order.
    @ivar pending: the calls not fired yet: the function and arguments, and
        the L{Deferred} returned for them.
    """

    def __init__(self, *, at_once: bool = True):
        self.at_once = at_once
        self.calls: list[str] = []
        self.pending: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        self.calls.append(f.__name__)
        if self.at_once:
            return maybeDeferred(f, *args)
        d: Deferred[Any] = Deferred()
        self.pending.append((f, args, d))
        return d

    def fire(self, index: int = 0) -> None:
        f, args, d = self.pending.pop(index)
        maybeDeferred(f, *args).chainDeferred(d)


class LoadOffReactorTests(unittest.SynchronousTestCase):
    """
    C{POST /config} loads with its L{DBlessConfiguration}'s
    C{run_in_thread} (the node's thread pool) and applies on return.
    """

    def setUp(self) -> None:
        self.declared = DeclaredStore()

    def api(self, runner: _Runner) -> tuple[DBlessConfiguration, Site]:
        plugins: dict[str, Any] = {"key-auth": load_plugins(resolve({}, {}, None).plugins)["key-auth"]}
        dbless = DBlessConfiguration(self.declared, plugins, run_in_thread=runner)
        api = AdminAPI(store=self.declared, plugins=plugins, clock=Clock(), dbless=dbless,
                       node=NodeInfo(node_id="n", hostname="h", version="0", configuration={}))
        return dbless, Site(api.resource(), reactor=Clock())

    def post(self, site: Site, config: dict[str, Any]) -> tuple[Any, StringTransport]:
        """
        Post C{config} as JSON on a new connection: its protocol, and its
        transport, which holds the answer.
        """
        body = json.dumps(config).encode()
        raw = (b"POST /config HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8001),
                                    peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        protocol.makeConnection(transport)
        protocol.dataReceived(raw)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return protocol, transport

    def config(self, service: str) -> dict[str, Any]:
        return {"_format_version": "3.0", "services": [{"name": service, "url": "http://127.0.0.1:1"}]}

    def services(self, dbless: DBlessConfiguration) -> list[str]:
        assert dbless.current is not None
        return [record["name"] for record in dbless.current.records["services"]]

    def test_runnerUsed(self) -> None:
        """
        The configuration is loaded by the runner given, and applied.
        """
        runner = _Runner()
        dbless, site = self.api(runner)
        _, transport = self.post(site, self.config("one"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 201 "), transport.value())
        self.assertEqual(runner.calls, ["load_data"])
        self.assertEqual(self.services(dbless), ["one"])

    def test_answeredOnceLoaded(self) -> None:
        """
        Until the runner's call returns, nothing is applied nor answered;
        an invalid configuration is answered 400 once it has loaded.
        """
        runner = _Runner(at_once=False)
        dbless, site = self.api(runner)
        _, transport = self.post(site, {"_format_version": "3.0", "services": [{"name": "bad", "url": "nope"}]})
        self.assertEqual((transport.value(), dbless.current), (b"", None))
        runner.fire()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), transport.value())
        self.assertIsNone(dbless.current)

    def test_arrivalOrder(self) -> None:
        """
        Configurations posted one after the other are applied in that
        order, whichever would load first: the second loads once the
        first is applied.
        """
        runner = _Runner(at_once=False)
        dbless, site = self.api(runner)
        _, first = self.post(site, self.config("first"))
        _, second = self.post(site, self.config("second"))
        while runner.pending:
            runner.fire(-1)
        self.assertTrue(first.value().startswith(b"HTTP/1.1 201 "), first.value())
        self.assertTrue(second.value().startswith(b"HTTP/1.1 201 "), second.value())
        self.assertEqual(self.services(dbless), ["second"])

    def test_clientGone(self) -> None:
        """
        A configuration whose client went away while it loaded is applied
        all the same.
        """
        runner = _Runner(at_once=False)
        dbless, site = self.api(runner)
        protocol, _ = self.post(site, self.config("one"))
        protocol.connectionLost(Failure(ConnectionDone()))
        runner.fire()
        self.assertEqual(self.services(dbless), ["one"])


class ThreadTests(DBlessTestCase):
    """
    A node loads its configurations in its reactor's thread pool: the
    proxy keeps answering meanwhile.
    """

    def record_thread(self, gateway: RunningGateway, name: str) -> list[threading.Thread]:
        """
        Record the thread each call of C{gateway}'s configuration's C{name}
        (C{load_data}, C{read_file}) runs in.
        """
        dbless = gateway.service.dbless
        original = getattr(dbless, name)
        threads: list[threading.Thread] = []

        def recording(*args: Any) -> Any:
            threads.append(threading.current_thread())
            return original(*args)

        setattr(dbless, name, recording)
        return threads

    async def test_postInThread(self) -> None:
        """
        C{POST /config} loads off the reactor thread.
        """
        gateway = await self.node()
        threads = self.record_thread(gateway, "load_data")
        answer = await gateway.admin("POST", "/config", json=yaml.safe_load(kong_yml(self.upstream_port)))
        self.assertEqual(answer.code, 201, answer)
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())
        self.assertEqual((await self.echo(gateway)).code, 200)

    async def test_reloadInThread(self) -> None:
        """
        A reload (SIGHUP) reads and loads the file off the reactor thread,
        and applies it.
        """
        path = self.write(kong_yml(self.upstream_port))
        gateway = await start_dbless(self, declarative_config=path)
        threads = self.record_thread(gateway, "read_file")
        Path(path).write_text(kong_yml(self.upstream_port, path="/changed"))
        self.assertTrue(await gateway.service.reload_declarative())
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())

        async def changed() -> bool:
            return (await self.echo(gateway, "/changed/request")).code == 200

        reached: bool = await until(changed)
        self.assertTrue(reached)

    async def test_proxyAnswersWhileLoading(self) -> None:
        """
        While a large configuration (20,000 consumers) posted to
        C{/config} loads, the proxy answers requests.
        """
        gateway = await self.node(kong_yml(self.upstream_port))
        events: list[str] = []
        dbless = gateway.service.dbless
        load_data = dbless.load_data

        def loading(data: Any) -> Any:
            events.append("load started")
            try:
                return load_data(data)
            finally:
                events.append("load ended")

        dbless.load_data = loading
        config = yaml.safe_load(kong_yml(self.upstream_port))
        config["consumers"] = [{"username": f"user-{i}", "keyauth_credentials": [{"key": f"key-{i}"}]}
                               for i in range(20_000)]
        posted = Deferred.fromCoroutine(gateway.admin("POST", "/config", json=config))
        while not posted.called:
            answer = await self.echo(gateway)
            self.assertEqual(answer.code, 200, answer)
            events.append("proxied")
        self.assertEqual((await posted).code, 201)
        started, ended = events.index("load started"), events.index("load ended")
        self.assertIn("proxied", events[started:ended], events)
