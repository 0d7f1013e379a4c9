"""
Tests for how the node sets up its Admin API (L{echogate.service}): the
token and server names reach it, and an Admin API reachable from other
hosts without a token is warned about at start-up.
"""
from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from echogate.service import GatewayService
from echogate.settings import resolve
from tests.admin.test_admin_guard import send_raw


class AdminSetupTests(SynchronousTestCase):
    """
    Tests for the Admin API the node builds.
    """

    def build(self, flags: Mapping[str, str]) -> tuple[GatewayService, list[dict[str, Any]]]:
        """
        A node's listeners' factories (nothing bound), and what was logged meanwhile.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        settings = resolve({"proxy_listen": "tcp:0:interface=127.0.0.1", "data_dir": self.mktemp(),
                            "database": "postgresql://127.0.0.1:1/none", **flags}, {}, None)
        service = GatewayService(MemoryReactorClock(), settings, {}, settle=None)
        service._factories()
        return service, events

    def warnings(self, events: list[dict[str, Any]]) -> list[str]:
        return [event["admin_exposed"] for event in events
                if event.get("log_level") == LogLevel.warn and "admin_exposed" in event]

    def test_exposedWithoutToken(self) -> None:
        """
        admin_listen on every interface without admin_token: one warning naming the endpoint.
        """
        _, events = self.build({"admin_listen": "tcp:8001"})
        [warning] = self.warnings(events)
        self.assertIn("'tcp:8001'", warning)
        self.assertIn("admin_token", warning)

    def test_loopback(self) -> None:
        """
        The default, loopback admin_listen, is not warned about.
        """
        _, events = self.build({"admin_listen": "tcp:8001:interface=127.0.0.1"})
        self.assertEqual(self.warnings(events), [])

    def test_exposedWithToken(self) -> None:
        """
        With admin_token set, an exposed admin_listen is not warned about.
        """
        _, events = self.build({"admin_listen": "tcp:8001", "admin_token": "t"})
        self.assertEqual(self.warnings(events), [])

    def test_tokenReachesTheAPI(self) -> None:
        """
        The node's Admin API asks for admin_token.
        """
        service, _ = self.build({"admin_listen": "tcp:8001", "admin_token": "t"})
        answer = send_raw(Site(service.admin.resource()),
                          b"GET /plugins/enabled HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 401)

    def test_serverNamesReachTheAPI(self) -> None:
        """
        The node's Admin API answers to admin_server_names, and to no other name.
        """
        service, _ = self.build({"admin_server_names": "admin.internal"})
        site = Site(service.admin.resource())
        codes = [send_raw(site, b"GET /plugins/enabled HTTP/1.1\r\nHost: " + host
                          + b"\r\nConnection: close\r\n\r\n").status
                 for host in (b"admin.internal", b"attacker.example")]
        self.assertEqual(codes, [200, 421])
