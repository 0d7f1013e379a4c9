"""
Attacks on what session 10 added to the data path, each sent as raw bytes
to a real node in front of a scripted raw upstream (L{ScriptedUpstream}):
WebSocket tunnels, streamed uploads, response buffering, load balancing
and https-only routes. Each test says the request and what must not
happen.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from echogate.plugin import GatewayPlugin
from echogate.registry import load_plugins
from echogate.schema import Record
from tests.gateway import RunningGateway, start_gateway
from tests.rawclient import RawClient, connect, status_of
from tests.waiting import until
from tests.wsserver import accept_key

#: The key every handshake here sends, and its accept value.
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = accept_key(KEY)


def handshake(path: bytes = b"/ws", extra: bytes = b"") -> bytes:
    """
    A WebSocket handshake's head for C{path}, with C{extra} header lines.
    """
    return (b"GET %s HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, KEY, extra))


class _Scripted(Protocol):
    """
    One upstream connection: records its bytes, and answers the first head
    with what its factory's C{answer} makes of it.
    """

    def __init__(self, factory: "ScriptedUpstream"):
        self.factory = factory
        self.received = b""
        self.answered = False

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.answered and b"\r\n\r\n" in self.received:
            self.answered = True
            answer = self.factory.answer(self.received)
            if answer is not None:
                self.transport.write(answer)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.closed += 1


class ScriptedUpstream(Factory):
    """
    A raw upstream: every connection's bytes (L{received}), each answered
    by C{answer(head)} (C{None}: no answer).
    """

    def __init__(self, answer: Callable[[bytes], bytes | None]):
        self.answer = answer
        self.connections: list[_Scripted] = []
        self.closed = 0

    def buildProtocol(self, addr: Any) -> _Scripted:
        return _Scripted(self)

    def received(self) -> bytes:
        return b"".join(c.received for c in self.connections)


def _switching(head: bytes) -> bytes:
    return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
           b"Sec-WebSocket-Accept: %s\r\n\r\n" % ACCEPT


def _ok(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"


class _Buffering(GatewayPlugin):
    """
    Enables response buffering in C{access}.
    """

    name = "buffering-attack"
    priority = 10
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        ctx.upstream.enable_buffering()


class AttackTests(unittest.TestCase):
    timeout = 120

    gw: RunningGateway

    async def setUp(self) -> None:
        plugins = dict(load_plugins("bundled"))
        plugins["buffering-attack"] = _Buffering()
        self.gw = await start_gateway(self, plugin_objects=plugins, settings={"max_buffered_response": "64k"})

    def upstream(self, answer: Callable[[bytes], bytes | None]) -> tuple[ScriptedUpstream, int]:
        factory = ScriptedUpstream(answer)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in factory.connections])
        return factory, port.getHost().port

    async def admin(self, method: str, path: str, body: dict) -> Any:
        answer = await self.gw.admin(method, path, json=body)
        self.assertIn(answer.code, (200, 201), answer.body)
        return answer.json()

    async def client(self) -> RawClient:
        client = await connect(self.gw.proxy_port)
        self.addCleanup(client.transport.abortConnection)
        return client

    async def service(self, port: int, name: str = "s", **route: Any) -> None:
        await self.admin("POST", "/services", {"name": name, "url": f"http://127.0.0.1:{port}"})
        route.setdefault("paths", ["/"])
        await self.admin("POST", f"/services/{name}/routes", {"name": name, "strip_path": False, **route})

    async def guarded(self, port: int) -> None:
        """
        Service C{s} with an open route C{/ws} and a key-auth route
        C{/admin}, on the same upstream.
        """
        await self.service(port, paths=["/ws"])
        await self.admin("POST", "/services", {"name": "adm", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/adm/routes", {"name": "adm", "paths": ["/admin"], "strip_path": False})
        await self.admin("POST", "/routes/adm/plugins", {"name": "key-auth"})

    # -- WebSocket -----------------------------------------------------------

    async def test_switchWithoutUpgradeRefused(self) -> None:
        """
        A service that answers C{101} without C{Upgrade: websocket} (a
        status the client controls, as a health check that echoes one) is
        a 502: no tunnel, and the request pipelined behind the handshake
        never reaches the service around key-auth.
        """
        upstream, port = self.upstream(lambda head: b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        await self.guarded(port)
        client = await self.client()
        client.send(handshake() + b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: d.endswith(b'"No API key found in request"}'))
        self.assertTrue(data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), data)
        self.assertIn(b"HTTP/1.1 401 Unauthorized", data)
        self.assertNotIn(b"/admin/secret", upstream.received())

    async def test_switchWithWrongAcceptRefused(self) -> None:
        """
        A C{101} whose C{Sec-WebSocket-Accept} is not the one for the key
        sent is a 502 (the service did not read the handshake).
        """
        upstream, port = self.upstream(
            lambda head: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: AAAA\r\n\r\n")
        await self.guarded(port)
        client = await self.client()
        client.send(handshake() + b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: d.endswith(b'"No API key found in request"}'))
        self.assertTrue(data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), data)
        self.assertIn(b"HTTP/1.1 401 Unauthorized", data)
        self.assertNotIn(b"/admin/secret", upstream.received())

    async def test_pipelinedAfterRefusedHandshake(self) -> None:
        """
        A handshake the service answers 403, with a key-less request to a
        key-auth route pipelined behind it: that request gets its own 401
        and never reaches the service.
        """
        upstream, port = self.upstream(
            lambda head: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
        await self.guarded(port)
        client = await self.client()
        client.send(handshake() + b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: d.count(b"HTTP/1.1 ") >= 2 and d.endswith(b"}"))
        self.assertIn(b"HTTP/1.1 403 Forbidden", data)
        self.assertIn(b"HTTP/1.1 401 Unauthorized", data)
        self.assertNotIn(b"/admin/secret", upstream.received())

    async def test_handshakeWithBodyNotTunnelled(self) -> None:
        """
        An upgrade GET with a body (Content-Length, or chunked) is no
        handshake: it goes through the upstream client without C{Upgrade},
        so a 101 cannot open a tunnel, and the bytes after its body are
        the next request, with its own plugins.
        """
        framings = ((b"Content-Length: 5\r\n", b"hello"),
                    (b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"))
        for index, (framing, body) in enumerate(framings):
            upstream, port = self.upstream(_switching)
            name = f"b{index}"
            await self.service(port, name, paths=[f"/{name}"])
            client = await self.client()
            client.send(handshake(b"/" + name.encode(), framing) + body)
            data = await client.until(lambda d: status_of(d) is not None)
            self.assertEqual(status_of(data), 502, data)
            head = upstream.received()
            self.assertNotIn(b"upgrade: websocket", head.lower())

    async def test_keyAuthBeforeUpstreamConnect(self) -> None:
        """
        A key-less handshake to a key-auth route, with frames sent before
        any answer: 401, and the service is never connected to; the same
        with a global rewrite-phase plugin and with ip-restriction.
        """
        upstream, port = self.upstream(_switching)
        await self.service(port, paths=["/ws"])
        await self.admin("POST", "/routes/s/plugins", {"name": "key-auth"})
        await self.admin("POST", "/plugins", {"name": "correlation-id"})
        client = await self.client()
        client.send(handshake() + b"\x81\x85abcd" + b"xxxxx")
        # The whole 401. (Not the connection's close: the frame's bytes
        # after the bodiless head are the start of a next request line,
        # which the node waits for until client_header_timeout, 60 s, as
        # nginx does; waiting for that close made this test take a minute
        # and raced the Admin API's own idle timeout on the next call.)
        data = await client.until(lambda d: d.endswith(b'"No API key found in request"}'))
        self.assertEqual(status_of(data), 401)
        await self.admin("POST", "/services", {"name": "ip", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/ip/routes", {"name": "ip", "paths": ["/ip"], "strip_path": False})
        await self.admin("POST", "/routes/ip/plugins", {"name": "ip-restriction",
                                                         "config": {"deny": ["127.0.0.1"]}})
        client = await self.client()
        client.send(handshake(b"/ip"))
        data = await client.until(lambda d: status_of(d) is not None)
        self.assertEqual(status_of(data), 403)
        self.assertEqual(upstream.connections, [])

    async def test_serviceCloseClosesClient(self) -> None:
        """
        Once the tunnel is open, the service's close closes the client's
        connection (no half-open tunnel left behind).
        """
        upstream, port = self.upstream(_switching)
        await self.service(port, paths=["/ws"])
        client = await self.client()
        client.send(handshake() + b"early")
        await client.until(lambda d: b"\r\n\r\n" in d)
        await until(lambda: upstream.received().endswith(b"early"), message="the early bytes")
        upstream.connections[0].transport.loseConnection()
        await client.closed
        self.assertEqual(status_of(client.data), None)
        self.assertIn(b"101 Switching Protocols", client.data)

    # -- streamed uploads ----------------------------------------------------

    async def streamed(self, port: int) -> None:
        """
        Service C{s} with a streaming route C{/up} (C{request_buffering:
        false}) and a key-auth route C{/admin}, on the same upstream.
        """
        await self.service(port, paths=["/up"], request_buffering=False)
        await self.admin("POST", "/services", {"name": "adm", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/adm/routes", {"name": "adm", "paths": ["/admin"], "strip_path": False,
                                                           "request_buffering": False})
        await self.admin("POST", "/routes/adm/plugins", {"name": "key-auth"})

    async def test_smallLengthThenMore(self) -> None:
        """
        A streamed body announced with C{Content-Length: 5}, followed by a
        key-less request to a key-auth route: the service gets 5 bytes of
        body, the second request is answered 401 by the gateway.
        """
        upstream, port = self.upstream(_ok)
        await self.streamed(port)
        await self.admin("POST", "/routes/s/plugins", {"name": "request-size-limiting",
                                                       "config": {"allowed_payload_size": 1}})
        client = await self.client()
        client.send(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello"
                    b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: d.endswith(b'"No API key found in request"}'))
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data)
        self.assertIn(b"HTTP/1.1 401 Unauthorized", data)
        self.assertTrue(upstream.received().endswith(b"\r\n\r\nhello"), upstream.received())
        self.assertNotIn(b"/admin/secret", upstream.received())

    async def test_lengthAndChunked(self) -> None:
        """
        C{Content-Length} and C{Transfer-Encoding: chunked} together on a
        streamed route, the chunked body ending early and a request to the
        key-auth route behind it (CL.TE): 400, closed, nothing upstream.
        """
        upstream, port = self.upstream(_ok)
        await self.streamed(port)
        client = await self.client()
        client.send(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.closed
        self.assertEqual(status_of(data), 400)
        self.assertEqual(upstream.connections, [])

    async def test_badChunks(self) -> None:
        """
        Bad chunk sizes and extensions on a streamed route: the client
        gets a 400 (or its connection closed) and the bytes after never
        reach the service as a request.
        """
        upstream, port = self.upstream(lambda head: None)
        await self.streamed(port)
        for bad in (b"zz\r\nhello\r\n", b"-5\r\nhello\r\n", b"5 ;a=\x00\r\nhello\r\n",
                    b"0x5\r\nhello\r\n", b"5\nhello\r\n", b"3\r\nhello\r\n"):
            client = await self.client()
            client.send(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n" + bad
                        + b"0\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            data = await client.closed
            self.assertIn(status_of(data), (400, 502, None), (bad, data))
            self.assertNotIn(b"/admin/secret", upstream.received(), bad)

    async def test_trailersNotForwarded(self) -> None:
        """
        A chunked body's trailer fields (a forged C{X-Consumer-Username})
        never reach the service.
        """
        upstream, port = self.upstream(lambda head: None)
        await self.streamed(port)
        client = await self.client()
        client.send(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\nX-Consumer-Username: admin\r\n\r\n")
        await until(lambda: b"hello" in upstream.received(), message="the body upstream")
        await until(lambda: upstream.received().endswith(b"0\r\n\r\n"), message="the body's end")
        self.assertNotIn(b"x-consumer-username", upstream.received().lower())

    async def test_expectContinueRefused(self) -> None:
        """
        C{Expect: 100-continue} to a streamed key-auth route without a
        key: 401 without a 100, and the service is never connected to.
        """
        upstream, port = self.upstream(_ok)
        await self.streamed(port)
        client = await self.client()
        client.send(b"POST /admin/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        data = await client.closed
        self.assertEqual(status_of(data), 401)
        self.assertNotIn(b"100 Continue", data)
        self.assertEqual(upstream.connections, [])

    # -- response buffering --------------------------------------------------

    async def test_chunkedResponseWithoutEnd(self) -> None:
        """
        A service whose chunked answer never ends, with buffering on: the
        client gets 504 after the service's C{read_timeout}, not a hang.
        """
        upstream, port = self.upstream(
            lambda head: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await self.admin("POST", "/services", {"name": "s", "url": f"http://127.0.0.1:{port}", "read_timeout": 300})
        await self.admin("POST", "/services/s/routes", {"name": "s", "paths": ["/"]})
        await self.admin("POST", "/plugins", {"name": "buffering-attack"})
        client = await self.client()
        client.send(b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: status_of(d) is not None)
        self.assertEqual(status_of(data), 504, data)

    async def test_chunkedResponseOverLimit(self) -> None:
        """
        A chunked answer (no length announced) growing past
        C{max_buffered_response}: 502, never held whole.
        """
        chunk = b"%x\r\n%s\r\n" % (4096, b"a" * 4096)
        upstream, port = self.upstream(
            lambda head: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 64)
        await self.admin("POST", "/services", {"name": "s", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/s/routes", {"name": "s", "paths": ["/"]})
        await self.admin("POST", "/plugins", {"name": "buffering-attack"})
        client = await self.client()
        client.send(b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        data = await client.until(lambda d: status_of(d) is not None)
        self.assertEqual(status_of(data), 502, data)

    # -- load balancing ------------------------------------------------------

    async def test_hashCookieNotInjected(self) -> None:
        """
        On a C{hash_on: cookie} upstream, the cookie a client sends (even
        one crafted to look like cookie attributes) is only a hash key:
        the response sets no cookie then; without one, the gateway's own.
        """
        upstream, port = self.upstream(_ok)
        await self.admin("POST", "/upstreams", {"name": "lb.v1", "hash_on": "cookie", "hash_on_cookie": "eg"})
        await self.admin("POST", "/upstreams/lb.v1/targets", {"target": f"127.0.0.1:{port}"})
        await self.admin("POST", "/services", {"name": "s", "url": "http://lb.v1"})
        await self.admin("POST", "/services/s/routes", {"name": "s", "paths": ["/"]})

        async def proxied() -> bool:
            return (await self.gw.proxy("GET", "/ready")).code == 200

        await until(proxied, message="the node proxies to the upstream")
        for cookie in (b'eg="x; Path=/; Domain=evil.test"', b"eg=x%0d%0aSet-Cookie:%20a=b", b"eg=; a=b"):
            client = await self.client()
            client.send(b"GET /x HTTP/1.1\r\nHost: gw.test\r\nCookie: " + cookie + b"\r\n\r\n")
            data = await client.response()
            self.assertEqual(status_of(data), 200, data)
            head = data.partition(b"\r\n\r\n")[0].lower()
            self.assertNotIn(b"evil", head)
            self.assertNotIn(b"a=b", head)
            for line in head.split(b"\r\n"):
                if line.startswith(b"set-cookie:"):
                    self.assertRegex(line.decode(), r"^set-cookie: eg=[0-9a-z-]+; path=/$")
            client.transport.loseConnection()

    # -- https-only routes ---------------------------------------------------

    async def test_forwardedProtoFromUntrustedPeer(self) -> None:
        """
        C{X-Forwarded-Proto: https} from a peer not in C{trusted_ips}, on
        an https-only route: the gateway's 426/redirect, never the service.
        """
        upstream, port = self.upstream(_ok)
        await self.service(port, protocols=["https"])
        client = await self.client()
        client.send(b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-Proto: https\r\n\r\n")
        data = await client.response()
        self.assertIn(status_of(data), (301, 302, 307, 308, 426), data)
        self.assertEqual(upstream.connections, [])
