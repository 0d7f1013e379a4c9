"""
Unit tests of the C{upstream_client} setting and the keep-alive settings:
their values, and the client the gateway gets from them.
"""
from __future__ import annotations

import platform

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from echogate.settings import ConfigError, resolve
from echogate.upstream.agent import UpstreamClient
from echogate.upstream.lean import LeanUpstreamClient
from tests.upstream.test_lean import OK, Harness


class SettingTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        upstream_client defaults to lean (on CPython) and shows in public().
        """
        self.patch(platform, "python_implementation", lambda: "CPython")
        settings = resolve({}, {}, None)
        self.assertEqual(settings.upstream_client, "lean")
        self.assertEqual(settings.public()["upstream_client"], "lean")
        self.assertEqual((settings.upstream_keepalive_pool_size, settings.upstream_keepalive_idle_timeout), (1000, 60))

    def test_autoOnPyPy(self) -> None:
        """
        On PyPy too, the default (auto) is lean (whose parser there is
        echogate's own); lean and agent still mean themselves.
        """
        self.patch(platform, "python_implementation", lambda: "PyPy")
        self.assertEqual(resolve({}, {}, None).upstream_client, "lean")
        self.assertEqual(resolve({"upstream_client": "Auto"}, {}, None).upstream_client, "lean")
        self.assertEqual(resolve({"upstream_client": "agent"}, {}, None).upstream_client, "agent")

    def test_autoOnCPython(self) -> None:
        """
        On CPython, auto is lean.
        """
        self.patch(platform, "python_implementation", lambda: "CPython")
        self.assertEqual(resolve({"upstream_client": "auto"}, {}, None).upstream_client, "lean")

    def test_agent(self) -> None:
        """
        upstream_client accepts agent (and LEAN, any case).
        """
        self.assertEqual(resolve({"upstream_client": "agent"}, {}, None).upstream_client, "agent")
        self.assertEqual(resolve({"upstream_client": "LEAN"}, {}, None).upstream_client, "lean")

    def test_serviceUsesIt(self) -> None:
        """
        The gateway's data path gets the client the setting names.
        """
        from echogate.service import GatewayService

        for value, kind in (("lean", LeanUpstreamClient), ("agent", UpstreamClient)):
            settings = resolve({"upstream_client": value, "proxy_listen": "tcp:0"}, {}, None)
            service = GatewayService(MemoryReactorClock(), settings, {})
            service.bind()
            self.assertIsInstance(service.upstream, kind, f"row value={value!r} kind={kind!r}")
            self.assertIs(service.gateway.upstream.http, service.upstream, f"row value={value!r} kind={kind!r}")

    def test_keepaliveSettings(self) -> None:
        """
        upstream_keepalive_pool_size and upstream_keepalive_idle_timeout
        reach either client; a pool size of 0 keeps no connection.
        """
        from echogate.service import GatewayService

        settings = resolve({"upstream_client": "lean", "upstream_keepalive_pool_size": "0",
                            "upstream_keepalive_idle_timeout": "7", "proxy_listen": "tcp:0"}, {}, None)
        service = GatewayService(MemoryReactorClock(), settings, {})
        service.bind()
        h = Harness()
        h.client = service.upstream
        h.reactor = service._reactor
        d = h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        settings = resolve({"upstream_client": "agent", "upstream_keepalive_pool_size": "3",
                            "upstream_keepalive_idle_timeout": "7", "proxy_listen": "tcp:0"}, {}, None)
        service = GatewayService(MemoryReactorClock(), settings, {})
        service.bind()
        pool = service.upstream.pool
        self.assertEqual((pool.persistent, pool.maxPersistentPerHost, pool.cachedConnectionTimeout), (True, 3, 7.0))

    def test_bad(self) -> None:
        """
        Any other value is a ConfigError naming the setting and its choices.
        """
        e = self.assertRaises(ConfigError, resolve, {"upstream_client": "curl"}, {}, None)
        self.assertIn("upstream_client", str(e))
        self.assertIn("'auto', 'agent' or 'lean'", str(e))
