"""
WebSocket proxying end to end: a gateway node in front of the tiny
WebSocket server of L{tests.wsserver}, with the C{websockets} library's
client (in a subprocess) and the raw client of L{tests.wsserver}.
"""
from __future__ import annotations

import json
import resource
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from echogate.plugin import GatewayPlugin
from echogate.registry import load_plugins
from echogate.schema import Record
from echogate.upstream.upgrade import is_websocket_upgrade
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream
from tests.waiting import until
from tests.wsserver import WebSocketClient, connect_client, start_ws_server

_CLIENT_SCRIPT = """
import json, sys
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=None, open_timeout=20, close_timeout=20) as ws:
    ws.send("hello")
    text = ws.recv(timeout=20)
    big = bytes(range(256)) * 4096
    ws.send(big)
    back = ws.recv(timeout=20)
    print(json.dumps({"text": text, "big": back == big, "size": len(back)}))
"""


class TunnelLog(GatewayPlugin):
    """
    Records C{ctx.tunnel} (copied) and the status in every C{log} phase.
    """

    name = "tunnel-log"
    version = "1.0.0"
    priority = 1
    config_schema = Record({})

    def __init__(self) -> None:
        object.__setattr__(self, "seen", [])

    def log(self, ctx: Any, config: Any) -> None:
        tunnel = ctx.tunnel
        self.seen.append((ctx.response.status, None if tunnel is None else (
            tunnel.bytes_up, tunnel.bytes_down, tunnel.closed_by, tunnel.duration)))  # type: ignore[attr-defined]


def _buffered(transport: Any) -> int:
    """
    The bytes a Twisted transport (maybe batched, maybe TLS) holds unsent.
    """
    total = len(getattr(transport, "_pending", ()) and b"".join(transport._pending))
    inner = getattr(transport, "_transport", transport)
    total += len(getattr(inner, "dataBuffer", b"")) + getattr(inner, "_tempDataLen", 0)
    return total


def _tunnels_allowed(wanted: int) -> int:
    """
    How many tunnels this process can hold open at once (up to
    C{wanted}), after raising its descriptor soft limit to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        raised = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    return max(1, min(wanted, (soft - 256) // 4))


class WebSocketTests(unittest.TestCase):
    timeout = 120

    async def setUp(self) -> None:
        self.server, self.server_port = start_ws_server(self)
        self.recorder = TunnelLog()
        plugins = dict(load_plugins("bundled"))
        plugins["tunnel-log"] = self.recorder
        self.gw = await start_gateway(self, plugin_objects=plugins)
        await self.admin("POST", "/services", {"name": "ws", "url": f"http://127.0.0.1:{self.server_port}"})
        await self.admin("POST", "/services/ws/routes", {"name": "ws", "paths": ["/"], "strip_path": False})
        await self.admin("POST", "/plugins", {"name": "tunnel-log"})

    async def admin(self, method: str, path: str, body: dict) -> Any:
        answer = await self.gw.admin(method, path, json=body)
        self.assertIn(answer.code, (200, 201), answer.body)
        return answer.json()

    def client(self, path: bytes = b"/echo", headers: bytes = b"", read: bool = True) -> WebSocketClient:
        client = connect_client(self.gw.proxy_port, WebSocketClient(path, headers, read))
        self.addCleanup(lambda: client.transport.abortConnection() if client.transport else None)
        return client

    async def test_websocketsLibraryEcho(self) -> None:
        """
        The C{websockets} client talks through the gateway: a text message
        and a 1 MB binary message come back whole.
        """
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ("-c", _CLIENT_SCRIPT, f"ws://127.0.0.1:{self.gw.proxy_port}/echo"), reactor=reactor)
        self.assertEqual(code, 0, err.decode())
        self.assertEqual(json.loads(out), {"text": "hello", "big": True, "size": 1024 * 1024})
        path, headers = self.server.handshakes[0]
        self.assertEqual((headers[b"upgrade"], headers[b"connection"]), (b"websocket", b"Upgrade"))
        self.assertIn(b"sec-websocket-key", headers)
        self.assertIn(b"x-forwarded-for", headers)

    async def test_handshakeHeaders(self) -> None:
        """
        The client gets the 101 with the service's headers and the
        gateway's, and frames pass both ways.
        """
        client = self.client()
        head = await client.head
        self.assertIn(b"HTTP/1.1 101 Switching Protocols", head)
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        self.assertIn(b"X-Server: ws", head)
        self.assertIn(b"Via: 1.1 echogate/", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        client.send(1, b"ping me")
        await until(lambda: client.messages, message="the echo")
        self.assertEqual(client.messages, [(1, b"ping me")])

    async def test_keyAuthOnHandshake(self) -> None:
        """
        key-auth runs on the handshake: without a key, 401 and the service
        is never connected to; with one, the tunnel opens.
        """
        await self.admin("POST", "/routes/ws/plugins", {"name": "key-auth"})
        await self.admin("POST", "/consumers", {"username": "alice"})
        await self.admin("POST", "/consumers/alice/key-auth", {"key": "sesame"})
        refused = self.client()
        await until(lambda: refused.status, message="the answer")
        self.assertEqual(refused.status, 401)
        self.assertEqual(self.server.handshakes, [])
        allowed = self.client(headers=b"apikey: sesame\r\n")
        await allowed.head
        self.assertEqual(allowed.status, 101)
        self.assertEqual(len(self.server.handshakes), 1)

    async def test_otherAnswerPassedBack(self) -> None:
        """
        A service that answers the handshake with something else than 101
        is answered as any response: status, headers, body.
        """
        client = self.client(b"/deny")
        await until(lambda: client._buffer.endswith(b"denied"), message="the whole answer")
        self.assertEqual(client.status, 403)
        self.assertIn(b"X-Why: policy", client._buffer)
        self.assertTrue(client._buffer.endswith(b"\r\n\r\ndenied"), client._buffer)
        self.assertEqual(self.recorder.seen[-1], (403, None))
        self.assertEqual(self.server.handshakes[0][1].get(b"upgrade"), b"websocket")

    async def test_backPressure(self) -> None:
        """
        A client that stops reading stops the service: the gateway pauses
        the service's connection, holds a bounded amount, and the service
        is paused in turn.
        """
        client = self.client(b"/flood", read=False)
        await until(lambda: self.server.pauses, message="the service paused by back-pressure")
        channel = next(c for c in self.gw.service.proxy_site._channels if c._tunnel is not None)
        tunnel = channel._tunnel
        sent = self.server.sent
        await until(lambda: tunnel.down.pauses, message="the gateway paused the service's reads")
        self.assertLess(_buffered(channel.transport), 4 * 1024 * 1024)
        self.assertLess(_buffered(tunnel._upstream), 4 * 1024 * 1024)
        # Resumed, everything the service sent arrives.
        client.transport.resumeProducing()
        await until(lambda: client.received >= sent, message="the flood arrives once the client reads")

    async def test_clientClosePropagates(self) -> None:
        """
        The client's going away closes the service's connection, and the log
        phase runs with the bytes passed each way.
        """
        client = self.client()
        await client.head
        client.send(2, b"abc")
        await until(lambda: client.messages)
        conn = self.server.connections[0]
        client.transport.loseConnection()
        await conn.closed
        await until(lambda: self.recorder.seen, message="the log phase")
        status, (up, down, by, duration) = self.recorder.seen[-1]
        self.assertEqual((status, up, down, by), (101, 2 + 4 + 3, 2 + 3, "client"))
        self.assertGreaterEqual(duration, 0)

    async def test_serviceClosePropagates(self) -> None:
        """
        A close frame goes to the service, which answers and closes: the
        client's connection is closed too.
        """
        client = self.client()
        await client.head
        client.send(8, b"\x03\xe8")
        await client.closed
        self.assertEqual(client.messages, [(8, b"\x03\xe8")])
        await until(lambda: self.recorder.seen, message="the log phase")
        self.assertEqual(self.recorder.seen[-1][1][2], "service")

    async def test_idleTimeout(self) -> None:
        """
        A tunnel idle both ways for the service's read_timeout is closed.
        """
        await self.admin("PATCH", "/services/ws", {"read_timeout": 300})
        client = self.client()
        await client.head
        await client.closed
        await until(lambda: self.recorder.seen, message="the log phase")
        self.assertEqual(self.recorder.seen[-1][1][2], "idle")

    async def test_drainClosesTunnels(self) -> None:
        """
        Stopping the node closes open tunnels (both sides) after the drain
        timeout.
        """
        client = self.client()
        await client.head
        conn = self.server.connections[0]
        await self.gw.service.proxy_site.drain(0.2)
        await conn.closed
        await client.closed
        self.assertEqual(self.recorder.seen[-1][1][2], "gateway")

    async def test_concurrentTunnels(self) -> None:
        """
        1,000 tunnels open at once each echo their own message. (Four
        descriptors a tunnel in this process: the soft limit is raised to
        the hard one if needed; a hard limit too low for 1,000 lowers the
        count, never under 200.)
        """
        count = _tunnels_allowed(1000)
        clients = [self.client() for _ in range(count)]
        await gatherResults([c.head for c in clients])
        for n, c in enumerate(clients):
            c.send(1, b"m%d" % n)
        await until(lambda: all(c.messages for c in clients), timeout=60, message="every echo")
        self.assertEqual([c.messages for c in clients], [[(1, b"m%d" % n)] for n in range(count)])
        self.assertGreaterEqual(count, 200)


class UpgradeStrippedTests(unittest.TestCase):
    async def test_h2cStillStripped(self) -> None:
        """
        An Upgrade to anything but websocket is removed, as before.
        """
        upstream, port = start_upstream(self)
        gw = await start_gateway(self)
        await gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{port}"})
        await gw.admin("POST", "/services/s/routes", json={"paths": ["/"]})
        answer = await gw.proxy("GET", "/x", headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                                                      "HTTP2-Settings": "AAMAAABkAAQAAP__"})
        self.assertEqual(answer.code, 200, answer.body)
        seen = answer.json()["headers"]
        self.assertNotIn("upgrade", seen)
        self.assertNotIn("http2-settings", seen)


class IsWebSocketUpgradeTests(unittest.TestCase):
    def test_tokens(self) -> None:
        """
        Connection and Upgrade are token lists, compared without case.
        """
        def check(connection: bytes | None, upgrade: bytes | None) -> bool:
            headers = Headers()
            if connection is not None:
                headers.setRawHeaders(b"connection", [connection])
            if upgrade is not None:
                headers.setRawHeaders(b"upgrade", [upgrade])
            return is_websocket_upgrade(headers)

        self.assertTrue(check(b"keep-alive, Upgrade", b"WebSocket"))
        self.assertTrue(check(b"UPGRADE", b"websocket"))
        self.assertFalse(check(b"keep-alive", b"websocket"))
        self.assertFalse(check(b"upgrade", b"h2c"))
        self.assertFalse(check(None, b"websocket"))
        self.assertFalse(check(b"upgrade", None))


class BalancedWebSocketTests(unittest.TestCase):
    """
    A WebSocket to a service whose host names an upstream: each handshake
    goes to the peer the balancer picks (round-robin: one each), and an
    upstream with no target that can take it answers Kong's 503.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.servers = [start_ws_server(self) for _ in range(2)]
        self.gw = await start_gateway(self)
        for path, body in (("/upstreams", {"name": "chat.v1"}),
                           *(("/upstreams/chat.v1/targets", {"target": f"127.0.0.1:{port}"})
                             for _, port in self.servers),
                           ("/services", {"name": "chat", "host": "chat.v1", "port": 80}),
                           ("/services/chat/routes", {"paths": ["/"], "strip_path": False})):
            answer = await self.gw.admin("POST", path, json=body)
            self.assertEqual(answer.code, 201, answer.body)

    def client(self) -> WebSocketClient:
        client = connect_client(self.gw.proxy_port, WebSocketClient(b"/echo"))
        self.addCleanup(lambda: client.transport.abortConnection() if client.transport else None)
        return client

    async def test_spread(self) -> None:
        """Two handshakes, one per target, and frames pass through each."""
        async def opened() -> bool:
            client = self.client()
            await until(lambda: client.status, message="an answer")
            return client.status == 101

        await until(opened, message="the node balances the upstream")
        for factory, _ in self.servers:
            factory.handshakes.clear()
        first, second = self.client(), self.client()
        await first.head
        await second.head
        self.assertEqual((first.status, second.status), (101, 101))
        self.assertEqual([len(factory.handshakes) for factory, _ in self.servers], [1, 1])
        second.send(1, b"hi")
        await until(lambda: second.messages, message="the echo")
        self.assertEqual(second.messages, [(1, b"hi")])

    async def test_noPeer(self) -> None:
        """Every target set unhealthy: the handshake is answered 503, Kong's message."""
        for _, port in self.servers:
            answer = await self.gw.admin("PUT", f"/upstreams/chat.v1/targets/127.0.0.1:{port}/unhealthy")
            self.assertEqual(answer.code, 204, answer.body)

        async def refused() -> bool:
            client = self.client()
            await until(lambda: client.status, message="an answer")
            return client.status == 503

        await until(refused, message="the node answers 503")
