"""
Routes over TLS, end to end on a node with a plain and an HTTPS listener:
C{protocols} enforced (426 or Kong's redirect for an https-only route on
plain HTTP, and no walking around it with C{X-Forwarded-Proto} from an
untrusted peer), C{snis} matched against the client's server name, and
the TLS facts plugins read (C{ctx.request.tls}).
"""
from __future__ import annotations

import json
import os
from typing import Any

import attrs
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from echogate.plugin import GatewayPlugin
from echogate.registry import load_plugins
from tests.gateway import RunningGateway, start_gateway
from tests.upstream_server import start_upstream


async def curl(url: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    """
    C{curl -k -i URL}: the status, the headers (lower-case names) and the body.
    """
    out, err, code = await getProcessOutputAndValue(
        "curl", ("-k", "-s", "-S", "-i", "--max-time", "20", *extra, url), env=dict(os.environ))
    if code != 0:
        raise AssertionError(f"curl failed ({code}): {err.decode()}")
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@attrs.frozen
class TLSFacts(GatewayPlugin):
    """
    Answers, in header_filter, what C{ctx.request.tls} says.
    """

    name: str = "tls-facts"
    priority: int = 1
    version: str = "1.0.0"

    def header_filter(self, ctx: Any, config: Any) -> None:
        tls = ctx.request.tls
        facts = None if tls is None else {"sni": tls.sni, "version": tls.version, "cipher": bool(tls.cipher),
                                          "client_certificate": tls.client_certificate}
        ctx.response.set_header("X-TLS", json.dumps(facts))


class HTTPSRouteTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        _, upstream_port = start_upstream(self)
        plugins = {**load_plugins("bundled"), "tls-facts": TLSFacts()}
        self.gw: RunningGateway = await start_gateway(
            self, plugin_objects=plugins, settings={"proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl"})
        ports = {description.endswith(" ssl"): int(address.port)
                 for description, address in self.gw.service.listening("proxy")}
        self.http, self.https = f"http://127.0.0.1:{ports[False]}", f"https://127.0.0.1:{ports[True]}"
        self.https_port = ports[True]
        answer = await self.gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)

    async def route(self, **fields: Any) -> dict[str, Any]:
        answer = await self.gw.admin("POST", "/services/s/routes", json=fields)
        self.assertEqual(answer.code, 201, answer.body)
        return answer.json()

    async def test_httpsOnly426(self) -> None:
        """Plain HTTP on an https-only route: Kong's 426, its body and Upgrade header."""
        await self.route(paths=["/secure"], protocols=["https"])
        status, headers, body = await curl(self.http + "/secure/x")
        self.assertEqual((status, json.loads(body)), (426, {"message": "Please use HTTPS protocol"}))
        self.assertEqual(headers["upgrade"], "TLS/1.2, HTTP/1.1")
        status, _, _ = await curl(self.https + "/secure/x")
        self.assertEqual(status, 200)

    async def test_redirect(self) -> None:
        """https_redirect_status_code 301: a redirect to the same URI over https."""
        await self.route(paths=["/moved"], protocols=["https"], https_redirect_status_code=301)
        status, headers, _ = await curl(self.http + "/moved/a?b=1", "-H", "Host: shop.example.com:8000")
        self.assertEqual((status, headers["location"]), (301, "https://shop.example.com/moved/a?b=1"))

    async def test_redirectHostCannotPointElsewhere(self) -> None:
        """
        The redirect's Location is made of the client's Host: a Host that
        would carry a path, userinfo or a second host is refused at the
        edge (400) before any redirect is made.
        """
        await self.route(paths=["/moved"], protocols=["https"], https_redirect_status_code=302)
        for host in ("evil.example/x", "shop.example@evil.example", "evil.example\\x", "a b"):
            status, headers, _ = await curl(self.http + "/moved", "-H", f"Host: {host}")
            self.assertEqual(status, 400, (host, headers.get("location")))
            self.assertNotIn("location", headers)

    async def test_bothProtocols(self) -> None:
        """A route with http and https takes both."""
        await self.route(paths=["/both"], protocols=["http", "https"])
        self.assertEqual((await curl(self.http + "/both"))[0], 200)
        self.assertEqual((await curl(self.https + "/both"))[0], 200)

    async def test_forwardedProtoUntrusted(self) -> None:
        """
        An untrusted peer's X-Forwarded-Proto: https does not walk around
        the https-only rule.
        """
        await self.route(paths=["/secure"], protocols=["https"])
        status, _, _ = await curl(self.http + "/secure", "-H", "X-Forwarded-Proto: https")
        self.assertEqual(status, 426)

    async def test_sniRoute(self) -> None:
        """
        A route with snis matches only a TLS request with that server name:
        another name, or plain HTTP, falls to 404.
        """
        await self.route(paths=["/named"], protocols=["https"], snis=["api.example.com"])
        resolve = ("--resolve", f"api.example.com:{self.https_port}:127.0.0.1",
                   "--resolve", f"other.example.com:{self.https_port}:127.0.0.1")
        status, _, _ = await curl(f"https://api.example.com:{self.https_port}/named", *resolve)
        self.assertEqual(status, 200)
        status, _, _ = await curl(f"https://other.example.com:{self.https_port}/named", *resolve)
        self.assertEqual(status, 404)
        status, _, _ = await curl(self.http + "/named")
        self.assertEqual(status, 404)

    async def test_tlsFacts(self) -> None:
        """ctx.request.tls: the server name, version and cipher; None over plain HTTP."""
        await self.route(paths=["/facts"], protocols=["http", "https"])
        answer = await self.gw.admin("POST", "/plugins", json={"name": "tls-facts"})
        self.assertEqual(answer.code, 201, answer.body)
        resolve = ("--resolve", f"api.example.com:{self.https_port}:127.0.0.1")
        _, headers, _ = await curl(f"https://api.example.com:{self.https_port}/facts", *resolve)
        facts = json.loads(headers["x-tls"])
        self.assertEqual((facts["sni"], facts["cipher"], facts["client_certificate"]),
                         ("api.example.com", True, None))
        self.assertIn(facts["version"], ("TLSv1.2", "TLSv1.3"))
        _, headers, _ = await curl(self.http + "/facts")
        self.assertEqual(json.loads(headers["x-tls"]), None)
