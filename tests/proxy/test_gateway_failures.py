"""
The proxy end to end when things go wrong: no route, no service, an
upstream that refuses, resets, stalls or is too slow, an upstream error, a
body over the limit. Over the fixtures of L{tests.proxy.test_gateway}.
"""
from __future__ import annotations

import socket

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.client import ResponseFailed

from echogate import __version__
from tests.gateway import start_gateway
from tests.proxy.test_gateway import _AGENT, ProxyTestCase


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FailureTests(ProxyTestCase):
    async def test_noRoute(self) -> None:
        """
        No route matches: 404 with Kong's message and the gateway's Server header.
        """
        answer = await self.gw.proxy("GET", "/nothing")
        self.assertEqual(answer.code, 404)
        self.assertEqual(answer.json(), {"message": "no Route matched with those values"})
        self.assertEqual(answer.header("server"), f"echogate/{__version__}")
        self.assertTrue(answer.header("content-type").startswith("application/json"))

    async def test_routeWithoutService(self) -> None:
        """
        A route without a service answers 503.
        """
        answer = await self.gw.admin("POST", "/routes", json={"paths": ["/lonely"]})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.proxy("GET", "/lonely")
        self.assertEqual(answer.code, 503)
        self.assertIn("message", answer.json())

    async def test_stalledBody(self) -> None:
        """
        A service that stops sending its body for longer than read_timeout:
        the client gets the head and what came, then its connection is cut,
        and the service's connection is closed too.
        """
        await self.service(read_timeout=300)
        await self.route(paths=["/stall"], strip_path=False)
        response = await treq.get(f"{self.gw.proxy_url}/stall", pool=self.gw.pool)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.length, 1000)
        await self.assertFailure(treq.content(response), ResponseFailed)
        for _ in range(50):
            if self.upstream.gone:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.upstream.gone, [b"/stall"])

    async def test_refused(self) -> None:
        """
        An upstream that refuses connections: 502, after the retries.
        """
        await self.gw.admin("POST", "/services", json={"name": "dead", "url": f"http://127.0.0.1:{_closed_port()}",
                                                       "retries": 2})
        await self.route("dead", paths=["/dead"])
        answer = await self.gw.proxy("GET", "/dead")
        self.assertEqual(answer.code, 502)
        self.assertEqual(answer.json(), {"message": "An invalid response was received from the upstream server"})

    async def test_reset(self) -> None:
        """
        An upstream that drops the connection without answering: 502.
        """
        await self.service(retries=0)
        await self.route(paths=["/reset"], strip_path=False)
        answer = await self.gw.proxy("GET", "/reset")
        self.assertEqual(answer.code, 502)

    async def test_timeout(self) -> None:
        """
        An upstream slower than read_timeout: 504.
        """
        await self.service(read_timeout=200)
        await self.route(paths=["/slow"], strip_path=False)
        answer = await self.gw.proxy("GET", "/slow?delay=3")
        self.assertEqual(answer.code, 504)
        self.assertEqual(answer.json(), {"message": "The upstream server is timing out"})

    async def test_upstream5xxPassesThrough(self) -> None:
        """
        An upstream 500 is the upstream's answer, passed through, not retried.
        """
        await self.service()
        await self.route(paths=["/status"], strip_path=False)
        answer = await self.gw.proxy("GET", "/status/500")
        self.assertEqual(answer.code, 500)
        self.assertEqual(len(self.upstream.seen), 1)

    async def test_bodyTooLarge(self) -> None:
        """
        A body over client_max_body_size is refused with 413 before it is
        sent upstream.
        """
        await self.service()
        await self.route(paths=["/"])
        small = await start_gateway(self, database=None,
                                    settings={**self.gateway_settings, "client_max_body_size": "1k"})
        await small.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await small.admin("POST", "/services/s/routes", json={"paths": ["/"]})
        answer = await small.proxy("POST", "/x", data=b"y" * 5000)
        self.assertEqual(answer.code, 413)
        self.assertEqual(self.upstream.seen, [])


# The same through Twisted's Agent (upstream_client = agent), as in
# tests.proxy.test_gateway.
class AgentFailureTests(FailureTests):
    gateway_settings = _AGENT
