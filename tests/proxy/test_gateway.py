"""
The proxy end to end: a gateway node on 127.0.0.1 with the real
PostgreSQL, configured through its Admin API, in front of a real upstream
server. When things go wrong is in L{tests.proxy.test_gateway_failures}; large and
slow bodies in L{tests.proxy.test_gateway_streaming}.
"""
from __future__ import annotations

import datetime
import json
import resource
from typing import Any

import treq
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from echogate import __version__
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


class ProxyTestCase(unittest.TestCase):
    timeout = 60
    #: Extra gateway settings (the Agent... subclasses pick the other upstream client).
    gateway_settings: dict[str, str] = {}

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.gw = await start_gateway(self, settings=self.gateway_settings)

    async def service(self, name: str = "mock-service", **fields: object) -> dict:
        path = fields.pop("path", "")
        body = {"name": name, "url": f"http://127.0.0.1:{self.upstream_port}{path}"}
        body.update(fields)
        answer = await self.gw.admin("POST", "/services", json=body)
        self.assertEqual(answer.code, 201, answer.body)
        return answer.json()

    async def route(self, service: str = "mock-service", **fields: object) -> dict:
        answer = await self.gw.admin("POST", f"/services/{service}/routes", json=fields)
        self.assertEqual(answer.code, 201, answer.body)
        return answer.json()

    async def plugged_gateway(self, plugins: dict[str, GatewayPlugin], path: str) -> Any:
        """
        Another gateway, with these plugin objects enabled on every route,
        and a route of C{path} (not stripped) to the upstream.
        """
        gw = await start_gateway(self, settings=self.gateway_settings, plugin_objects=plugins)
        answer = await gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await gw.admin("POST", "/services/s/routes", json={"paths": [path], "strip_path": False})
        self.assertEqual(answer.code, 201, answer.body)
        for name in plugins:
            answer = await gw.admin("POST", "/plugins", json={"name": name})
            self.assertEqual(answer.code, 201, answer.body)
        return gw


class WalkThroughTests(ProxyTestCase):
    async def test_walkThrough(self) -> None:
        """
        The tutorial's steps: a service, a route with a host and a path, and
        the upstream receives the stripped path.
        """
        answer = await self.gw.admin("POST", "/services", data={
            "name": "mock-service", "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.assertEqual(answer.code, 201)
        answer = await self.gw.admin("POST", "/services/mock-service/routes",
                                     data=[("hosts[]", "mockbin.org"), ("paths[]", "/mock")])
        self.assertEqual(answer.code, 201)
        answer = await self.gw.proxy("GET", "/mock/request?a=1&b=%2F", headers={"Host": "mockbin.org"})
        self.assertEqual(answer.code, 200, answer.body)
        seen = answer.json()
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["uri"], "/request?a=1&b=%2F")

    async def test_serviceAndRoutePaths(self) -> None:
        """
        The service path and strip_path join as Kong does.
        """
        await self.service(path="/service")
        await self.route(paths=["/route"])
        await self.route(paths=["/keep"], strip_path=False)
        for request, expected in [("/route/x", "/service/x"), ("/routereq", "/service/req"),
                                  ("/route", "/service"), ("/keep/y", "/service/keep/y"),
                                  ("/route/a/../b", "/service/b"), ("/route/x/%2e%2e/c", "/service/c"),
                                  ("/route/%2e%2e/keep/z", "/service/keep/z")]:
            answer = await self.gw.proxy("GET", request)
            self.assertEqual((request, answer.code, answer.json().get("path")), (request, 200, expected),
                             f"row request={request!r} expected={expected!r}")

    async def test_changesApplyToTheNextRequest(self) -> None:
        """
        A route created, changed or deleted through the Admin API is served
        (or not) by the very next proxied request.
        """
        await self.service()
        route = await self.route(paths=["/a"])
        self.assertEqual((await self.gw.proxy("GET", "/a")).code, 200)
        await self.gw.admin("PATCH", f"/routes/{route['id']}", json={"paths": ["/b"]})
        self.assertEqual((await self.gw.proxy("GET", "/a")).code, 404)
        self.assertEqual((await self.gw.proxy("GET", "/b")).code, 200)
        await self.gw.admin("DELETE", f"/routes/{route['id']}")
        self.assertEqual((await self.gw.proxy("GET", "/b")).code, 404)


class UpstreamHeaderTests(ProxyTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        await self.service()

    async def test_forwardedHeaders(self) -> None:
        """
        The upstream gets Host, X-Real-IP, X-Forwarded-* and Via; spoofed
        X-Forwarded-* from an untrusted peer are replaced.
        """
        await self.route(paths=["/fwd"])
        answer = await self.gw.proxy("GET", "/fwd/x", headers={
            "Host": "example.com:1234", "X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Host": "evil", "Via": "1.0 other"})
        headers = answer.json()["headers"]
        self.assertEqual(headers["host"], [f"127.0.0.1:{self.upstream_port}"])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-for"], ["10.0.0.1, 127.0.0.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-host"], ["example.com"])
        self.assertEqual(headers["x-forwarded-port"], [str(self.gw.proxy_port)])
        self.assertEqual(headers["x-forwarded-path"], ["/fwd/x"])
        self.assertEqual(headers["x-forwarded-prefix"], ["/fwd"])
        self.assertEqual(headers["via"], [f"1.0 other, 1.1 echogate/{__version__}"])

    async def test_preserveHost(self) -> None:
        """
        With preserve_host the client's Host goes upstream.
        """
        await self.route(paths=["/ph"], preserve_host=True)
        answer = await self.gw.proxy("GET", "/ph", headers={"Host": "client.example:99"})
        self.assertEqual(answer.json()["headers"]["host"], ["client.example:99"])

    async def test_hopByHopRemovedUpstream(self) -> None:
        """
        Hop-by-hop headers and the names Connection lists are not sent
        upstream; end-to-end headers are.
        """
        await self.route(paths=["/h"])
        answer = await self.gw.proxy("GET", "/h", headers={
            "Connection": "x-private", "X-Private": "secret", "TE": "trailers", "Upgrade": "h2c",
            "Proxy-Authorization": "Basic abc", "X-Public": "yes"})
        headers = answer.json()["headers"]
        for name in ("x-private", "te", "upgrade", "proxy-authorization"):
            self.assertNotIn(name, headers, f"row name={name!r}")
        self.assertEqual(headers["x-public"], ["yes"])

    async def test_hopByHopRemovedDownstream(self) -> None:
        """
        The upstream's hop-by-hop headers do not reach the client. (The
        names the upstream's Connection header lists are removed too, by
        echogate's own client: see tests.upstream.test_lean; Twisted's Agent
        keeps that header to itself, see docs/proxy.md.)
        """
        await self.route(paths=["/hop"], strip_path=False)
        answer = await self.gw.proxy("GET", "/hop")
        self.assertIsNone(answer.header("keep-alive"))
        self.assertEqual(answer.header("x-end-to-end"), "passes")
        self.assertEqual(answer.header("via"), f"1.1 echogate/{__version__}")
        self.assertIsNotNone(answer.header("x-echogate-upstream-latency"))
        self.assertIsNotNone(answer.header("x-echogate-proxy-latency"))

    async def test_upstreamHeadersAsSent(self) -> None:
        """
        C{ctx.response.get_upstream_header} reads the service's headers as
        it sent them (hop-by-hop ones included, none of the gateway's),
        while the client gets the end-to-end ones plus the gateway's.
        """
        class Peek(GatewayPlugin):
            name = "peek"
            version = "1.0.0"
            priority = 10
            config_schema = Record({})

            def header_filter(self, ctx: object, config: object) -> None:
                for name in ("x-end-to-end", "via", "x-echogate-upstream-latency"):
                    ctx.response.set_header(f"x-peek-{name}", repr(ctx.response.get_upstream_header(name)))

        gw = await self.plugged_gateway({"peek": Peek()}, "/hop")
        answer = await gw.proxy("GET", "/hop")
        self.assertEqual(answer.header("x-peek-x-end-to-end"), "'passes'")
        self.assertEqual(answer.header("x-peek-via"), "None")
        self.assertEqual(answer.header("x-peek-x-echogate-upstream-latency"), "None")
        self.assertEqual(answer.header("via"), f"1.1 echogate/{__version__}")
        self.assertIsNone(answer.header("keep-alive"))

    async def test_viaAddedToDownstream(self) -> None:
        """
        The service's Via header reaches the client with the gateway's hop
        added to it, in one header.
        """
        await self.route(paths=["/via"], strip_path=False)
        answer = await self.gw.proxy("GET", "/via")
        self.assertEqual(answer.headers.getRawHeaders("via"), [f"1.0 cache-a, 1.1 echogate/{__version__}"])

    async def test_responseHeaders(self) -> None:
        """
        Headers a plugin sets on the response in C{access} (before the
        service answered) replace the service's of the same name; in
        C{header_filter}, a plugin may use the L{Headers} object itself, and
        a response whose Content-Length it removed is chunked.
        """
        class Early(GatewayPlugin):
            name = "early"
            version = "1.0.0"
            priority = 20
            config_schema = Record({})

            def access(self, ctx: object, config: object) -> None:
                ctx.response.set_header("X-End-To-End", "early")
                ctx.response.add_header("X-Early", "yes")

        class Doubler(GatewayPlugin):
            name = "doubler"
            version = "1.0.0"
            priority = 10
            config_schema = Record({})

            def header_filter(self, ctx: object, config: object) -> None:
                ctx.response.headers.removeHeader(b"content-length")
                ctx.response.headers.setRawHeaders(b"x-object", [b"used"])

            def body_filter(self, ctx: object, config: object, chunk: bytes) -> bytes:
                return chunk * 2

        gw = await self.plugged_gateway({"early": Early(), "doubler": Doubler()}, "/hop")
        raw = await _exchange(gw.proxy_port, b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = [line.lower() for line in head.split(b"\r\n")[1:]]
        self.assertIn(b"x-end-to-end: early", lines)
        self.assertEqual([line for line in lines if line.startswith(b"x-end-to-end")], [b"x-end-to-end: early"])
        self.assertIn(b"x-early: yes", lines)
        self.assertIn(b"x-object: used", lines)
        self.assertIn(b"transfer-encoding: chunked", lines)
        self.assertFalse([line for line in lines if line.startswith(b"content-length")])
        self.assertEqual(body, b"6\r\nhophop\r\n0\r\n\r\n")

    async def test_connectionCloseAnswered(self) -> None:
        """
        A client that asks to close gets C{Connection: close} with the
        service's response, and the connection closes after it.
        """
        await self.route(paths=["/hop"], strip_path=False)
        raw = await _exchange(self.gw.proxy_port, b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nconnection: close", head.lower())
        self.assertEqual(body, b"hop")

    async def test_http10Client(self) -> None:
        """
        An HTTP/1.0 client gets a body of unknown length unchunked, ended
        by the connection's close.
        """
        await self.route(paths=["/big"], strip_path=False)
        raw = await _exchange(self.gw.proxy_port, b"GET /big?size=5000 HTTP/1.0\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        self.assertNotIn(b"chunked", head.lower())
        self.assertEqual(len(body), 5000)

    async def test_requestBody(self) -> None:
        """
        A body passes upstream whole, with the gateway's own Content-Length.
        """
        await self.route(paths=["/post"])
        payload = b"x" * 200_000
        answer = await self.gw.proxy("POST", "/post", data=payload)
        seen = answer.json()
        self.assertEqual(seen["body_length"], len(payload))
        self.assertEqual(seen["headers"]["content-length"], [str(len(payload))])

    async def test_head(self) -> None:
        """
        HEAD passes through and answers without a body.
        """
        await self.route(paths=["/"])
        answer = await self.gw.proxy("HEAD", "/anything")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, b"")


class _Collect(Protocol):
    def __init__(self, request: bytes):
        self._request = request
        self.data: list[bytes] = []
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: object) -> None:
        self.done.callback(b"".join(self.data))


async def _exchange(port: int, request: bytes) -> bytes:
    """
    Send C{request} as it is and read everything until the gateway closes
    the connection.
    """
    collector = _Collect(request)
    reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(lambda: collector))
    return await collector.done


class HeaderEchoTests(ProxyTestCase):
    timeout = 120

    async def test_walkThrough(self) -> None:
        """
        The plugin tutorial: header-echo added to a service echoes the
        request header into the response; config defaults are filled.
        """
        await self.service()
        await self.route(hosts=["mockbin.org"], paths=["/mock"])
        answer = await self.gw.admin("POST", "/services/mock-service/plugins", data={"name": "header-echo"})
        self.assertEqual(answer.code, 201, answer.body)
        self.assertEqual(answer.json()["config"], {"requestHeader": "X-Request-Echo",
                                                   "responseHeader": "X-Response-Echo"})
        answer = await self.gw.proxy("GET", "/mock/request",
                                     headers={"Host": "mockbin.org", "X-Request-Echo": "Hello, world"})
        self.assertEqual(answer.header("X-Response-Echo"), "Hello, world")
        answer = await self.gw.proxy("GET", "/mock/request", headers={"Host": "mockbin.org"})
        self.assertIsNone(answer.header("X-Response-Echo"))

    async def test_concurrentRequestsKeepTheirOwnValues(self) -> None:
        """
        600 requests in flight at once, answered by the upstream in random
        order: every response carries its own request's value.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 8192 <= hard or (soft < 8192 and hard == resource.RLIM_INFINITY):
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        await self.service()
        await self.route(paths=["/echo-header"], strip_path=False)
        await self.gw.admin("POST", "/plugins", data={"name": "header-echo"})
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, pool=pool)
        count = 600

        async def one(i: int) -> tuple[str, str | None, bytes]:
            value = f"value-{i}"
            delay = (i * 7919 % 1000) / 1000.0
            response = await treq.get(f"{self.gw.proxy_url}/echo-header?delay={delay}",
                                      headers={"X-Request-Echo": value}, agent=agent)
            body = await response.content()
            echoed = response.headers.getRawHeaders("X-Response-Echo", [None])[0]
            return value, echoed, body

        results = await gatherResults([Deferred.fromCoroutine(one(i)) for i in range(count)])
        wrong = [(v, e, b) for v, e, b in results if e != v or b != v.encode()]
        self.assertEqual(wrong, [])
        self.assertEqual(len(results), count)


# The same behaviour through Twisted's Agent (upstream_client = agent);
# the classes above run echogate's own client, the default.
_AGENT = {"upstream_client": "agent"}


class AgentWalkThroughTests(WalkThroughTests):
    gateway_settings = _AGENT


class AgentUpstreamHeaderTests(UpstreamHeaderTests):
    gateway_settings = _AGENT


class AgentHeaderEchoTests(HeaderEchoTests):
    gateway_settings = _AGENT


def _self_signed(name: str) -> tuple[bytes, bytes]:
    """
    A key and a self-signed certificate for C{name} (with the
    subjectAltName that certificate checks need), both PEM.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@implementer(IPolicyForHTTPS)
class _TrustOne:
    """
    Trust only C{certificate}, checked against the name it was made for
    (whatever address the request used).
    """

    def __init__(self, certificate: ssl.Certificate):
        self._certificate = certificate

    def creatorForNetloc(self, hostname: bytes, port: int) -> object:
        return ssl.optionsForClientTLS("echogate.test", trustRoot=self._certificate)


class TLSListenerTests(ProxyTestCase):
    async def setUp(self) -> None:
        key_pem, cert_pem = _self_signed("echogate.test")
        path = FilePath(self.mktemp())
        path.setContent(key_pem + cert_pem)
        self.certificate = ssl.Certificate.loadPEM(cert_pem)
        self.upstream, self.upstream_port = start_upstream(self)
        self.gw = await start_gateway(self, settings={
            "proxy_listen": f"ssl:0:interface=127.0.0.1:privateKey={path.path}"})
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, contextFactory=_TrustOne(self.certificate), pool=pool)

    async def test_httpsListener(self) -> None:
        """
        An ssl: proxy listener serves routes over TLS; the service is told
        the client came over https (X-Forwarded-Proto) and the port.
        """
        await self.service()
        await self.route(paths=["/tls"])
        response = await treq.get(f"https://127.0.0.1:{self.gw.proxy_port}/tls/x", agent=self.agent)
        self.assertEqual(response.code, 200)
        seen = json.loads(await response.content())
        self.assertEqual(seen["path"], "/x")
        self.assertEqual(seen["headers"]["x-forwarded-proto"], ["https"])
        self.assertEqual(seen["headers"]["x-forwarded-port"], [str(self.gw.proxy_port)])

    async def test_httpsOnlyRoute(self) -> None:
        """
        A route limited to https answers over the TLS listener (Kong's
        protocols), which tells it the request is secure.
        """
        await self.service()
        await self.route(paths=["/only"], protocols=["https"])
        response = await treq.get(f"https://127.0.0.1:{self.gw.proxy_port}/only", agent=self.agent)
        self.assertEqual(response.code, 200)
