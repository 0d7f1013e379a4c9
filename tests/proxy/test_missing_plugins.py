"""
Fail closed on missing plugins: a stored config of a plugin this node has
not loaded (a drop-in missing from the path, a typo in C{--plugins}) refuses
the requests it applies to (C{missing_plugins = refuse}, the default), in
the plans of L{echogate.proxy.plan.PluginIndex}, on the data path, and in
what L{echogate.proxy.snapshot.LiveConfiguration} logs about it.
"""
from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.header_echo import HeaderEcho
from echogate.bundled.key_auth import KeyAuth
from echogate.proxy.plan import MissingPlugin, PluginIndex, not_loaded_message
from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.store.data import ConfigurationData
from echogate.testing import ROUTE_ID, SERVICE_ID, GatewayHarness
from tests.entities.test_credentials import ALICE, BOB, people
from tests.proxy.test_runner import (
    CONSUMER,
    OTHER_CONSUMER,
    OTHER_ROUTE,
    OTHER_SERVICE,
    ROUTE,
    SERVICE,
    make_plugin,
    noop,
    record,
)

KEYS = {"keyauth_credentials": [{"consumer": {"id": ALICE}, "key": "alice-key"},
                                {"consumer": {"id": BOB}, "key": "bob-key"}]}


def refusal(name: str) -> dict[str, str]:
    """
    The body of a request refused for plugin C{name}.
    """
    return {"message": not_loaded_message(name)}


class MissingPluginPlanTests(SynchronousTestCase):
    """
    Where L{PluginIndex} puts the L{MissingPlugin} step of a config whose
    plugin is not loaded.
    """

    def index(self, *records: dict, missing: str = "refuse") -> PluginIndex:
        return PluginIndex(records, {"p": make_plugin("p", priority=5000, access=noop)}, missing)

    def test_listed(self) -> None:
        """
        The missing plugins are listed once each, sorted, and are not in use.
        """
        index = self.index(record("zz"), record("absent", route=ROUTE), record("absent"), record("p"))
        self.assertEqual(index.missing, ["absent", "zz"])
        self.assertEqual(index.names_in_use(), ["p"])

    def test_globalFirst(self) -> None:
        """
        A global config refuses in the global C{rewrite} phase, before
        routing, and first in every route's plan, ahead of any plugin.
        """
        index = self.index(record("absent"), record("p"))
        self.assertEqual([s.name for s in index.global_steps.rewrite_steps], ["absent"])
        plan = index.plan(OTHER_ROUTE, OTHER_SERVICE)
        self.assertEqual([s.name for s in plan], ["absent", "p"])
        self.assertIsInstance(plan[0].plugin, MissingPlugin)
        self.assertTrue(plan.static)

    def test_routeScoped(self) -> None:
        """
        A route's config is first in that route's plan only.
        """
        index = self.index(record("absent", route=ROUTE), record("p"))
        self.assertEqual([s.name for s in index.plan(ROUTE, SERVICE).access_steps], ["absent", "p"])
        self.assertEqual([s.name for s in index.plan(OTHER_ROUTE, SERVICE)], ["p"])
        self.assertEqual([s.name for s in index.global_steps], ["p"])

    def test_serviceScoped(self) -> None:
        """
        A service's config is first in the plans of its routes only.
        """
        index = self.index(record("absent", service=SERVICE))
        self.assertEqual([s.name for s in index.plan(OTHER_ROUTE, SERVICE)], ["absent"])
        self.assertEqual(index.plan(ROUTE, OTHER_SERVICE), ())

    def test_consumerScopedLast(self) -> None:
        """
        A consumer's config is last in the plan (after the plugins that may
        authenticate the consumer), resolved for that consumer only.
        """
        index = self.index(record("absent", consumer=CONSUMER), record("p"))
        plan = index.plan(ROUTE, SERVICE)
        self.assertEqual([(s.name, s.by_consumer, s.entry) for s in plan[1:]], [("absent", True, None)])
        self.assertEqual(plan[0].name, "p")
        self.assertFalse(plan.static)
        self.assertIsNotNone(index.resolve("absent", ROUTE, SERVICE, CONSUMER))
        self.assertIsNone(index.resolve("absent", ROUTE, SERVICE, OTHER_CONSUMER))

    def test_consumerAndRouteScoped(self) -> None:
        """
        A missing plugin with both a route config and a consumer config
        refuses every request of the route, first, whoever the consumer is.
        """
        index = self.index(record("absent", route=ROUTE), record("absent", consumer=CONSUMER), record("p"))
        plan = index.plan(ROUTE, SERVICE)
        self.assertEqual([(s.name, s.by_consumer) for s in plan], [("absent", False), ("p", False)])
        self.assertTrue(plan.static)

    def test_disabledIgnored(self) -> None:
        """
        A disabled config of a missing plugin refuses nothing.
        """
        index = self.index(record("absent", enabled=False))
        self.assertEqual((index.missing, index.global_steps), ([], ()))

    def test_skip(self) -> None:
        """
        With C{skip}, configs of missing plugins are left out of every plan
        (and still listed).
        """
        index = self.index(record("absent"), record("absent", route=ROUTE), record("p"), missing="skip")
        self.assertEqual([s.name for s in index.plan(ROUTE, SERVICE)], ["p"])
        self.assertEqual([s.name for s in index.global_steps], ["p"])
        self.assertEqual(index.missing, ["absent"])
        self.assertFalse(index.refusing)

    def test_badSetting(self) -> None:
        """
        Anything but C{refuse} or C{skip} is a programming error.
        """
        self.assertRaises(ValueError, PluginIndex, [], {}, "ignore")


class RefusalTests(SynchronousTestCase):
    """
    On the data path: a request whose plan includes a missing plugin's
    config is answered 500 naming it, and the upstream never sees it.
    """

    def harness(self, *records: dict, missing: str = "refuse", loaded: tuple = ()) -> GatewayHarness:
        """
        A harness (key-auth configured on the route when C{"key-auth"} is
        in C{loaded}) with C{records} of plugins it has not loaded added.
        """
        plugins = [KeyAuth(), HeaderEcho()]
        configs = [("key-auth", {}, {"route": ROUTE_ID})] if "key-auth" in loaded else []
        harness = GatewayHarness([p for p in plugins if p.name in loaded], configs,
                                 entities=people(KEYS) if "key-auth" in loaded else None)
        data = attrs.evolve(harness._data, plugins=tuple(harness._data.plugins) + records)
        harness.snapshot = Snapshot.build(data, harness.plugins, missing_plugins=missing)
        return harness

    def raw(self, harness: GatewayHarness, data: bytes) -> tuple[int, dict[str, str], bytes]:
        """
        Send C{data} as it is on a new connection; the status, headers and
        body of the answer.
        """
        protocol = harness.site.buildProtocol(IPv4Address("TCP", "203.0.113.9", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.9", 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((name.lower(), value.strip()) for name, _, value in
                       (line.partition(":") for line in lines[1:]))
        return int(lines[0].split(" ")[1]), headers, body

    def test_routeConfig(self) -> None:
        """
        The attacker's plain request to a route whose key-auth config names
        a plugin this node has not loaded gets 500 JSON, not the upstream.
        """
        harness = self.harness(record("key-auth", route=ROUTE_ID))
        status, headers, body = self.raw(harness, b"GET /admin/secrets HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual((status, json.loads(body)), (500, refusal("key-auth")))
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(harness.upstream_requests, [])

    def test_serviceConfig(self) -> None:
        """
        A service's config of a missing plugin refuses its routes' requests.
        """
        harness = self.harness(record("key-auth", service=SERVICE_ID))
        status, _, body = self.raw(harness, b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual((status, json.loads(body)), (500, refusal("key-auth")))
        self.assertEqual(harness.upstream_requests, [])

    def test_globalConfig(self) -> None:
        """
        A global config of a missing plugin refuses every request, before
        routing.
        """
        harness = self.harness(record("ip-restriction"))
        status, _, body = self.raw(harness, b"GET /anything HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual((status, json.loads(body)), (500, refusal("ip-restriction")))
        self.assertEqual(harness.upstream_requests, [])

    def test_withBody(self) -> None:
        """
        A request with a body is refused all the same.
        """
        harness = self.harness(record("key-auth", route=ROUTE_ID))
        status, _, _ = self.raw(harness, b"POST /transfer HTTP/1.1\r\nHost: gateway.test\r\n"
                                         b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
                                         b'{"amount": 1}')
        self.assertEqual(status, 500)
        self.assertEqual(harness.upstream_requests, [])

    def test_otherRoute(self) -> None:
        """
        A missing plugin's config on another route leaves this one served.
        """
        harness = self.harness(record("key-auth", route="00000000-0000-4000-8000-00000000ffff"))
        status, _, _ = self.raw(harness, b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(len(harness.upstream_requests), 1)

    def test_consumerConfig(self) -> None:
        """
        A consumer's config of a missing plugin refuses the requests that
        authenticate as that consumer, and only those.
        """
        harness = self.harness(record("rate-limiting", consumer=ALICE), loaded=("key-auth",))
        status, _, body = self.raw(harness, b"GET / HTTP/1.1\r\nHost: gateway.test\r\napikey: alice-key\r\n\r\n")
        self.assertEqual((status, json.loads(body)), (500, refusal("rate-limiting")))
        self.assertEqual(harness.upstream_requests, [])
        status, _, _ = self.raw(harness, b"GET / HTTP/1.1\r\nHost: gateway.test\r\napikey: bob-key\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(len(harness.upstream_requests), 1)

    def test_skip(self) -> None:
        """
        With C{missing_plugins = skip}, the request runs without the
        missing plugin (the behaviour before the setting).
        """
        harness = self.harness(record("key-auth", route=ROUTE_ID), missing="skip")
        status, _, _ = self.raw(harness, b"GET /admin/secrets HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(len(harness.upstream_requests), 1)


class _Store:
    def __init__(self, *loads: ConfigurationData):
        self.loads = list(loads)

    def load(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(self.loads.pop(0))

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def version(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(0)


def _data(version: int, *records: dict) -> ConfigurationData:
    return ConfigurationData(version=version, plugins=records)


class MissingPluginLogTests(SynchronousTestCase):
    """
    L{LiveConfiguration} says which configured plugins are missing: an
    error every minute with C{refuse}, a warning per load with C{skip}.
    """

    def setUp(self) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.clock = Clock()

    def live(self, *loads: ConfigurationData, missing: str = "refuse") -> LiveConfiguration:
        live = LiveConfiguration(store=_Store(*loads), plugins={"p": make_plugin("p", access=noop)},
                                 clock=self.clock, missing_plugins=missing, check_interval=3600)
        self.addCleanup(live.stop)
        self.successResultOf(live.start())
        return live

    def said(self, level: LogLevel) -> list[dict]:
        return [e for e in self.events
                if e.get("log_level") == level and "not loaded on this node" in e.get("log_format", "")]

    def test_errorEveryMinute(self) -> None:
        """
        An error naming the missing plugins is logged at once, then every
        60 seconds.
        """
        self.live(_data(1, record("key-auth"), record("acl", route=ROUTE)))
        self.assertEqual([e["names"] for e in self.said(LogLevel.error)], ["acl, key-auth"])
        self.clock.advance(59)
        self.assertEqual(len(self.said(LogLevel.error)), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.said(LogLevel.error)), 2)
        self.clock.advance(60)
        self.assertEqual(len(self.said(LogLevel.error)), 3)

    def test_quietOnceGone(self) -> None:
        """
        Once no config names a missing plugin, the errors stop.
        """
        live = self.live(_data(1, record("key-auth")), _data(2, record("p")))
        self.successResultOf(live.reload())
        self.assertEqual(live.missing, [])
        self.clock.advance(600)
        self.assertEqual(len(self.said(LogLevel.error)), 1)

    def test_stopped(self) -> None:
        """
        A stopped configuration logs no more.
        """
        live = self.live(_data(1, record("key-auth")))
        live.stop()
        self.clock.advance(600)
        self.assertEqual(len(self.said(LogLevel.error)), 1)

    def test_listed(self) -> None:
        """
        L{LiveConfiguration.missing} lists them (for C{GET /status}).
        """
        live = self.live(_data(1, record("key-auth"), record("acl")))
        self.assertEqual(live.missing, ["acl", "key-auth"])

    def test_skipWarnsPerLoad(self) -> None:
        """
        With C{skip}: a warning after each load, no error, nothing periodic.
        """
        live = self.live(_data(1, record("key-auth")), missing="skip")
        self.assertEqual(len(self.said(LogLevel.warn)), 1)
        self.clock.advance(600)
        self.assertEqual((len(self.said(LogLevel.warn)), self.said(LogLevel.error)), (1, []))
        self.assertEqual(live.missing, ["key-auth"])
