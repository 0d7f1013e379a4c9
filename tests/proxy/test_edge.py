"""
The proxy at the edge, on the wire: a real node (real PostgreSQL, real
listeners on 127.0.0.1) and a real upstream, driven with the exact bytes an
attacker or a broken client sends (docs/security.md).
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.gateway import RunningGateway, start_gateway
from tests.rawclient import RawClient, connect, status_of
from tests.upstream_server import UpstreamResource, start_upstream

KEY = "s3cret-key"


class EdgeCase(unittest.TestCase):
    """
    A node with one service on the test upstream: an open route C{/} and a
    key-auth route C{/admin} (consumer alice, key L{KEY}), both on host
    C{h.test}.
    """

    settings: dict[str, str] = {}

    async def setUp(self) -> None:
        self.upstream, upstream_port = start_upstream(self)
        self.gw: RunningGateway = await start_gateway(self, settings=self.settings)
        answer = await self.gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/services/s/routes", json={"name": "open", "paths": ["/"]})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/services/s/routes", json={"name": "admin", "paths": ["/admin"],
                                                                         "strip_path": False})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/routes/admin/plugins", json={"name": "key-auth"})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/consumers", json={"username": "alice"})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/consumers/alice/key-auth", json={"key": KEY})
        self.assertEqual(answer.code, 201, answer)

    async def client(self) -> RawClient:
        client = await connect(self.gw.proxy_port)
        self.addCleanup(lambda: client.transport.abortConnection())
        return client

    async def send(self, raw: bytes) -> tuple[bytes, RawClient]:
        """
        Send C{raw} on a new connection; what came back once one whole
        response did (or the connection closed).
        """
        client = await self.client()
        client.send(raw)
        data = await client.response()
        return data, client

    async def closed(self, client: RawClient) -> bytes:
        """
        What the client got by the time the gateway closed the connection.
        """
        return await client.closed

    def paths_seen(self) -> list[str]:
        return [seen["path"] for seen in self.upstream.seen]

    def assertRefused(self, data: bytes, status: int, message: str) -> None:
        self.assertEqual(status_of(data), status, data)
        self.assertEqual(json.loads(data.split(b"\r\n\r\n", 1)[1]), {"message": message})
        self.assertIn(b"\r\nconnection: close\r\n", data.lower())


class SlashBypassTests(EdgeCase):
    """
    Repeated slashes are merged before routing, so an extra slash does not
    walk around a route's plugins.
    """

    async def test_doubleSlash(self) -> None:
        """
        C{GET //admin/x} without a key is the key-auth route's: 401, the
        upstream sees nothing.
        """
        data, _ = await self.send(b"GET //admin/x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 401, data)
        self.assertEqual(self.paths_seen(), [])

    async def test_tripleSlash(self) -> None:
        """
        C{GET ///admin/x} likewise.
        """
        data, _ = await self.send(b"GET ///admin/x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 401, data)
        self.assertEqual(self.paths_seen(), [])

    async def test_mergedUpstream(self) -> None:
        """
        With the key, the upstream gets the merged path the router matched.
        """
        data, _ = await self.send(b"GET //admin//x HTTP/1.1\r\nHost: h.test\r\napikey: " + KEY.encode() + b"\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(self.paths_seen(), ["/admin/x"])

    async def test_encodedSlashLiteral(self) -> None:
        """
        An encoded slash stays literal: C{/%2Fadmin/x} is not C{/admin/x}
        (the open route's, sent on as it came).
        """
        data, _ = await self.send(b"GET /%2Fadmin/x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(self.paths_seen(), ["/%2Fadmin/x"])


class HostTests(EdgeCase):
    """
    RFC 9112 section 3.2: an HTTP/1.1 request needs exactly one valid Host.
    """

    async def test_missing(self) -> None:
        """
        HTTP/1.1 without Host: 400 before routing, and the connection closes.
        """
        data, client = await self.send(b"GET /x HTTP/1.1\r\n\r\n")
        self.assertRefused(data, 400, "Bad request")
        await self.closed(client)
        self.assertEqual(self.paths_seen(), [])

    async def test_two(self) -> None:
        """
        Two Host lines: 400, not routed on the first.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nHost: other.test\r\n\r\n")
        self.assertRefused(data, 400, "Bad request")
        self.assertEqual(self.paths_seen(), [])

    async def test_badPort(self) -> None:
        """
        A port beyond 65535: 400.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test:99999999\r\n\r\n")
        self.assertRefused(data, 400, "Bad request")

    async def test_badCharacters(self) -> None:
        """
        A Host that is not a host: 400.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h test/../\r\n\r\n")
        self.assertRefused(data, 400, "Bad request")

    async def test_http10WithoutHost(self) -> None:
        """
        HTTP/1.0 needs no Host: routed as before.
        """
        data, _ = await self.send(b"GET /x HTTP/1.0\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)

    async def test_ipv6Host(self) -> None:
        """
        A bracketed IPv6 literal with a port is a valid Host.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)


class BodyAfterAccessTests(EdgeCase):
    """
    A request with a body is routed and authorised on its head; a refused
    one never has its body read, and C{100 Continue} comes only after
    access passed.
    """

    async def test_refusedBeforeBody(self) -> None:
        """
        A 300 MiB body announced to the key-auth route without a key is
        answered 401 at once (before a byte of it is sent), and the
        connection closes.
        """
        client = await self.client()
        client.send(b"POST /admin/upload HTTP/1.1\r\nHost: h.test\r\nContent-Length: 314572800\r\n\r\n")
        data = await client.response()
        self.assertEqual(status_of(data), 401, data)
        self.assertIn(b"\r\nconnection: close\r\n", data.lower())
        await self.closed(client)
        self.assertEqual(self.paths_seen(), [])

    async def test_chunkedRefusedBeforeBody(self) -> None:
        """
        The same for a chunked body: 401 with only the head sent.
        """
        client = await self.client()
        client.send(b"POST /admin/upload HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        data = await client.response()
        self.assertEqual(status_of(data), 401, data)
        await self.closed(client)

    async def test_noContinueWithoutKey(self) -> None:
        """
        C{Expect: 100-continue} on the key-auth route without a key gets the
        401, never a 100.
        """
        client = await self.client()
        client.send(b"POST /admin/x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = await client.response()
        self.assertNotIn(b"100 Continue", data)
        self.assertEqual(status_of(data), 401, data)

    async def test_noContinueUnrouted(self) -> None:
        """
        On a path no route takes (a method no route allows), a 404 and
        no 100.
        """
        answer = await self.gw.admin("PATCH", "/routes/open", json={"methods": ["GET"]})
        self.assertEqual(answer.code, 200, answer)
        await deferLater(reactor, 0.2, lambda: None)
        client = await self.client()
        client.send(b"POST /elsewhere HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = await client.response()
        self.assertNotIn(b"100 Continue", data)
        self.assertEqual(status_of(data), 404, data)

    async def test_continueAfterAccess(self) -> None:
        """
        With the key: C{100 Continue}, then the body is read and sent on.
        """
        client = await self.client()
        client.send(b"POST /admin/x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                    b"apikey: " + KEY.encode() + b"\r\n\r\n")
        first = await client.until(lambda data: b"\r\n\r\n" in data)
        self.assertTrue(first.startswith(b"HTTP/1.1 100 Continue\r\n"), first)
        client.send(b"hello")
        data = await client.response()
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual([seen["body"] for seen in self.upstream.seen], ["hello"])

    async def test_bodyWithHead(self) -> None:
        """
        A body that comes in the same packet as its head is proxied whole.
        """
        data, _ = await self.send(b"POST /admin/x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n"
                                  b"apikey: " + KEY.encode() + b"\r\n\r\nhello")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual([seen["body"] for seen in self.upstream.seen], ["hello"])

    async def test_keyInBodyReadFirst(self) -> None:
        """
        key-auth with key_in_body reads the body before its access phase.
        """
        plugins = await self.gw.admin("GET", "/routes/admin/plugins")
        plugin_id = plugins.json()["data"][0]["id"]
        answer = await self.gw.admin("PATCH", f"/plugins/{plugin_id}", json={"config": {"key_in_body": True}})
        self.assertEqual(answer.code, 200, answer)
        await deferLater(reactor, 0.2, lambda: None)
        body = b"apikey=" + KEY.encode()
        data, _ = await self.send(b"POST /admin/x HTTP/1.1\r\nHost: h.test\r\n"
                                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(status_of(data), 200, data)


class BodyLimitTests(EdgeCase):
    """
    With client_max_body_size, a body that crosses it is answered 413 at
    once and the connection closed.
    """

    settings = {"client_max_body_size": "1k"}

    async def test_chunkedCrossing(self) -> None:
        """
        A chunked body crossing the limit gets 413 before it ends.
        """
        client = await self.client()
        client.send(b"POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"800\r\n" + b"a" * 2048 + b"\r\n")
        data = await client.response()
        self.assertRefused(data, 413, "Request size limit exceeded")
        await self.closed(client)
        self.assertEqual(self.paths_seen(), [])

    async def test_declaredTooLarge(self) -> None:
        """
        A Content-Length over the limit gets 413 on the head.
        """
        client = await self.client()
        client.send(b"POST /x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5000\r\n\r\n")
        data = await client.response()
        self.assertRefused(data, 413, "Request size limit exceeded")


class FramingTests(EdgeCase):
    """
    Framing leftovers get 400 and the connection closes (nginx 1.21.2+).
    """

    async def check(self, raw: bytes) -> None:
        data, client = await self.send(raw)
        self.assertRefused(data, 400, "Bad request")
        await self.closed(client)
        self.assertEqual(self.paths_seen(), [])

    async def test_identityWithLength(self) -> None:
        """
        C{Transfer-Encoding: identity} with a Content-Length.
        """
        await self.check(b"POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: identity\r\n"
                         b"Content-Length: 3\r\n\r\nabc")

    async def test_twoCodings(self) -> None:
        """
        Two Transfer-Encoding lines, C{chunked} then C{identity}.
        """
        await self.check(b"POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n"
                         b"Transfer-Encoding: identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

    async def test_chunkedInHttp10(self) -> None:
        """
        HTTP/1.0 with C{Transfer-Encoding: chunked}.
        """
        await self.check(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

    async def test_twoLengths(self) -> None:
        """
        Two Content-Length lines.
        """
        await self.check(b"POST /x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")

    async def test_hugeChunkSize(self) -> None:
        """
        A chunk size of 17 hex digits (more than 63 bits).
        """
        await self.check(b"POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"10000000000000000\r\nabc")

    async def test_bareLineFeeds(self) -> None:
        """
        A head whose lines end in a bare LF.
        """
        await self.check(b"GET /x HTTP/1.1\nHost: h.test\n\n")


class HopTests(EdgeCase):
    """
    httpoxy, Connection tokens and TRACE.
    """

    async def test_proxyHeaderDropped(self) -> None:
        """
        The C{Proxy} request header never reaches the service (httpoxy).
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nProxy: http://evil.test:3128\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertNotIn("proxy", self.upstream.seen[0]["headers"])

    async def test_connectionTokens(self) -> None:
        """
        C{Connection: close, X-Foo}: X-Foo is not sent on, the answer says
        C{Connection: close}, and the connection closes.
        """
        data, client = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nConnection: close, X-Foo\r\n"
                                       b"X-Foo: secret\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertNotIn("x-foo", self.upstream.seen[0]["headers"])
        self.assertIn(b"\r\nconnection: close\r\n", data.lower())
        await self.closed(client)

    async def test_connectionTokensTwoLines(self) -> None:
        """
        Tokens on a second Connection line count as well.
        """
        data, client = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nConnection: X-Foo\r\n"
                                       b"Connection: close\r\nX-Foo: secret\r\n\r\n")
        self.assertNotIn("x-foo", self.upstream.seen[0]["headers"])
        await self.closed(client)

    async def test_trace(self) -> None:
        """
        TRACE gets 405, as nginx answers it.
        """
        data, _ = await self.send(b"TRACE /x HTTP/1.1\r\nHost: h.test\r\nCookie: session=1\r\n\r\n")
        self.assertRefused(data, 405, "Method not allowed")
        self.assertEqual(self.paths_seen(), [])


class HeadLimitTests(EdgeCase):
    """
    Limits on the head always answer, then close.
    """

    settings = {"max_request_line": "1k", "max_header_line": "1k", "max_headers": "20"}

    async def test_longUri(self) -> None:
        """
        A request line over max_request_line: 414.
        """
        data, client = await self.send(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertRefused(data, 414, "URI too long")
        await self.closed(client)

    async def test_longUriInPieces(self) -> None:
        """
        The same when the line comes in pieces and never ends.
        """
        client = await self.client()
        client.send(b"GET /" + b"a" * 800)
        client.send(b"a" * 800)
        data = await client.response()
        self.assertRefused(data, 414, "URI too long")

    async def test_longHeader(self) -> None:
        """
        A header line over max_header_line: 431.
        """
        data, _ = await self.send(b"GET / HTTP/1.1\r\nHost: h.test\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n")
        self.assertRefused(data, 431, "Request header or cookie too large")

    async def test_tooManyHeaders(self) -> None:
        """
        More header lines than max_headers: 431, nothing forwarded.
        """
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(21))
        data, _ = await self.send(b"GET / HTTP/1.1\r\nHost: h.test\r\n" + lines + b"\r\n")
        self.assertRefused(data, 431, "Request header or cookie too large")
        self.assertEqual(self.paths_seen(), [])

    async def test_withinLimits(self) -> None:
        """
        A head at the limits passes.
        """
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(19))
        data, _ = await self.send(b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: h.test\r\n" + lines + b"\r\n")
        self.assertEqual(status_of(data), 200, data)


class SlowClientTests(EdgeCase):
    """
    A client that drips its head or its body is cut off (408) after
    client_header_timeout (a total for the head) or client_body_timeout
    (between reads).
    """

    settings = {"client_header_timeout": "1", "client_body_timeout": "1"}

    async def test_drippedHead(self) -> None:
        """
        One byte every 0.2 s keeps no head open beyond its total deadline.
        """
        client = await self.client()
        head = b"GET /x HTTP/1.1\r\nHost: h.test\r\nX-Slow: " + b"z" * 100
        for byte in head[:30]:
            if client.closed.called:
                break
            client.send(bytes([byte]))
            await deferLater(reactor, 0.2, lambda: None)
        data = await self.closed(client)
        self.assertRefused(data, 408, "Request timeout")
        self.assertEqual(self.paths_seen(), [])

    async def test_stalledBody(self) -> None:
        """
        A body that stops coming: 408, and nothing reaches the service.
        """
        client = await self.client()
        client.send(b"POST /x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 10\r\n\r\nab")
        data = await self.closed(client)
        self.assertRefused(data, 408, "Request timeout")
        self.assertEqual(self.paths_seen(), [])

    async def test_idleKeepAliveNotCutEarly(self) -> None:
        """
        The head timer does not run between requests: a keep-alive client
        that waits longer than client_header_timeout before its next
        request is served.
        """
        client = await self.client()
        client.send(b"GET /1 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        first = await client.response()
        self.assertEqual(status_of(first), 200, first)
        await deferLater(reactor, 1.5, lambda: None)
        self.assertFalse(client.closed.called)
        client.data = b""
        client.send(b"GET /2 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        second = await client.response()
        self.assertEqual(status_of(second), 200, second)


class ReasonPhraseTests(EdgeCase):
    """
    Status lines carry the right reason phrase, also for a service's own
    status.
    """

    async def test_upstreamStatuses(self) -> None:
        """
        429, 422, 451 and 431 from the service keep their phrases.
        """
        for status, phrase in ((429, b"Too Many Requests"), (422, b"Unprocessable Entity"),
                               (451, b"Unavailable For Legal Reasons"), (431, b"Request Header Fields Too Large")):
            data, _ = await self.send(b"GET /status/%d HTTP/1.1\r\nHost: h.test\r\n\r\n" % status)
            self.assertTrue(data.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase)), data[:80])

    async def test_rateLimited(self) -> None:
        """
        The gateway's own 429 (rate-limiting) says Too Many Requests.
        """
        answer = await self.gw.admin("POST", "/routes/open/plugins",
                                     json={"name": "rate-limiting", "config": {"minute": 1}})
        self.assertEqual(answer.code, 201, answer)
        await deferLater(reactor, 0.2, lambda: None)
        await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), data[:80])


class UpstreamErrorLogTests(EdgeCase):
    """
    Upstream failures are in the error log: which service address, why,
    for which request.
    """

    def capture(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    async def test_refused(self) -> None:
        """
        A service whose port refuses connections: 502 and one error line.
        """
        answer = await self.gw.admin("POST", "/services", json={"name": "dead", "url": "http://127.0.0.1:9",
                                                                "retries": 0})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/services/dead/routes", json={"hosts": ["dead.test"]})
        self.assertEqual(answer.code, 201, answer)
        await deferLater(reactor, 0.2, lambda: None)
        events = self.capture()
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: dead.test\r\n\r\n")
        self.assertEqual(status_of(data), 502, data)
        lines = [e for e in events if e.get("log_namespace") == "echogate.proxy" and "upstream" in e]
        self.assertEqual(len(lines), 1, events)
        self.assertEqual(lines[0]["upstream"], "127.0.0.1:9")
        self.assertEqual(lines[0]["reason"], "connection refused")
        self.assertEqual((lines[0]["service"], lines[0]["path"]), ("dead", "/x"))

    async def test_truncated(self) -> None:
        """
        A response cut short by the service: the client's connection is cut
        after what came, the error log says so, and the log phase ran.
        """
        events = self.capture()
        client = await self.client()
        client.send(b"GET /truncate HTTP/1.1\r\nHost: h.test\r\n\r\n")
        data = await self.closed(client)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:80])
        self.assertTrue(data.endswith(b"x" * 10), data[-40:])
        lines = [e for e in events if e.get("log_namespace") == "echogate.proxy" and "upstream" in e]
        self.assertEqual(len(lines), 1, events)
        self.assertIn("closed the response early", lines[0]["reason"])


class DrainTests(unittest.TestCase):
    """
    A node told to stop stops accepting, answers 503 on /status/ready, lets
    a request in flight finish, then stops.
    """

    async def test_gracefulStop(self) -> None:
        """
        A slow request in flight when the node stops still gets its 200.
        """
        upstream, upstream_port = start_upstream(self)
        gw = await start_gateway(self, settings={"shutdown_timeout": "5"})
        answer = await gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer)
        answer = await gw.admin("POST", "/services/s/routes", json={"paths": ["/"]})
        self.assertEqual(answer.code, 201, answer)
        ready = await gw.admin("GET", "/status/ready")
        self.assertEqual((ready.code, ready.json()), (200, {"message": "ready"}))
        client = await connect(gw.proxy_port)
        self.addCleanup(lambda: client.transport.abortConnection())
        client.send(b"GET /slow?delay=1 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        await deferLater(reactor, 0.3, lambda: None)
        stopped: Deferred = gw.service.stopService()
        finished: list[Any] = []
        stopped.addCallback(finished.append)
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(finished, [])
        draining = await gw.admin("GET", "/status/ready")
        self.assertEqual((draining.code, draining.json()), (503, {"message": "draining"}))
        data = await client.response()
        self.assertEqual(status_of(data), 200, data)
        self.assertIn(b"\r\nconnection: close\r\n", data.lower())
        await client.closed
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(finished), 1)
        self.assertEqual(len(upstream.seen), 1)


class ReadinessTests(unittest.TestCase):
    """
    /status/ready before the first configuration load.
    """

    def test_notLoaded(self) -> None:
        """
        A node whose configuration is not loaded yet answers 503.
        """
        from echogate.service import GatewayService
        from echogate.settings import resolve

        service = GatewayService(reactor, resolve({"data_dir": self.mktemp()}, {}, None), {})
        self.assertEqual(service._readiness(), "no configuration loaded yet")
        service._stopping = True
        self.assertEqual(service._readiness(), "draining")


__all__ = ["EdgeCase", "UpstreamResource"]
