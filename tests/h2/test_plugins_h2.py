"""
The bundled plugins over HTTP/2: a representative case for each plugin,
through a whole node on 127.0.0.1 with an h2c listener (prior knowledge;
the C{http2} flag keeps HTTP/1.1 working on the same port), every plugin
on a route of its own, configured through the Admin API as the docs show.
Where it is cheap, the HTTP/1.1 answer to the same request is compared:
the same status and the same plugin headers.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any

import jwt
from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web import server
from twisted.web.resource import Resource

from tests.gateway import RunningGateway, start_gateway
from tests.h2.h2client import Answer, H2Client, connect
from tests.upstream_server import UpstreamResource, start_upstream
from tests.waiting import until

#: Each route and the plugins on it (name, config).
ROUTES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "acl": [("key-auth", {}), ("acl", {"allow": ["admins"]})],
    "basic": [("basic-auth", {"realm": "mock"})],
    "cid": [("correlation-id", {"header_name": "X-Correlation-ID", "echo_downstream": True})],
    "cors": [("cors", {"origins": ["https://app.example"], "credentials": True, "max_age": 3600,
                       "exposed_headers": ["X-Total"]})],
    "ip": [("ip-restriction", {"deny": ["127.0.0.1"]})],
    "jwt": [("jwt", {"claims_to_verify": ["exp"]})],
    "key": [("key-auth", {})],
    "cache": [("proxy-cache", {"strategy": "memory"})],
    "rl": [("rate-limiting", {"minute": 2, "policy": "local"})],
    "size": [("request-size-limiting", {"allowed_payload_size": 1, "size_unit": "kilobytes"})],
    "term": [("request-termination", {"status_code": 403, "message": "So long"})],
    "rqt": [("request-transformer", {"remove": {"headers": ["x-secret"]}, "add": {"headers": ["x-added:in"],
                                                                                  "querystring": ["v:2"]}})],
    "rst": [("response-transformer", {"remove": {"json": ["headers"]},
                                      "add": {"json": ["extra:1"], "json_types": ["number"],
                                              "headers": ["x-added:out"]}})],
    "echo": [("header-echo", {})],
}


class _Collector(Resource):
    """
    http-log's receiving end: the JSON documents POSTed to it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] = []

    def render_POST(self, request: Any) -> bytes:
        document = json.loads(request.content.read())
        self.entries.extend(document if isinstance(document, list) else [document])
        return b"ok"


def _lines(path: str) -> list[Any]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class PluginsOverH2Tests(unittest.TestCase):
    """
    Each bundled plugin's visible effect on an HTTP/2 stream, as on
    HTTP/1.1.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.upstream: UpstreamResource
        self.upstream, upstream_port = start_upstream(self)
        self.collector = _Collector()
        site = server.Site(self.collector)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.log_path = os.path.abspath(self.mktemp())
        self.gw: RunningGateway = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 http2"})
        await self.admin("POST", "/services", {"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        routes = dict(ROUTES)
        routes["logged"] = [
            ("file-log", {"path": self.log_path}),
            ("http-log", {"http_endpoint": f"http://127.0.0.1:{port.getHost().port}/logs",
                          "queue": {"max_batch_size": 1, "max_coalescing_delay": 0.01}}),
            ("prometheus", {"status_code_metrics": True})]
        for name, plugins in routes.items():
            await self.admin("POST", "/services/s/routes", {"name": name, "paths": [f"/{name}"]})
            for plugin, config in plugins:
                await self.admin("POST", f"/routes/{name}/plugins", {"name": plugin, "config": config})
        for consumer in ("alice", "bob"):
            await self.admin("POST", "/consumers", {"username": consumer})
            await self.admin("POST", f"/consumers/{consumer}/key-auth", {"key": f"{consumer}-key"})
        await self.admin("POST", "/consumers/alice/acls", {"group": "admins"})
        await self.admin("POST", "/consumers/alice/basic-auth", {"username": "alice", "password": "wonderland"})
        self.jwt_credential = await self.admin("POST", "/consumers/alice/jwt", {})
        self.h2: H2Client = await connect(self.gw.proxy_port)
        self.addCleanup(lambda: self.h2.transport.loseConnection())

    async def admin(self, method: str, path: str, document: dict[str, Any]) -> Any:
        answer = await self.gw.admin(method, path, json=document)
        self.assertEqual(answer.code, 201, (path, answer.body))
        return answer.json()

    async def get(self, path: str, headers: dict[str, str] | None = None, method: bytes = b"GET",
                  body: bytes | None = None) -> Answer:
        """
        One request over HTTP/2 on the test's connection, answered whole.
        """
        fields = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body is not None:
            fields.append((b"content-length", b"%d" % len(body)))
        stream = self.h2.request(method, path.encode(), headers=fields, body=body)
        answer: Answer = await self.h2.done[stream]
        self.assertIsNone(answer.reset, (path, answer))
        return answer

    async def same_over_http11(self, h2answer: Answer, path: str, names: list[str],
                               headers: dict[str, str] | None = None, method: str = "GET",
                               body: bytes | None = None) -> Any:
        """
        The same request over HTTP/1.1: the same status and the same
        C{names} headers as C{h2answer}.
        """
        kw: dict[str, Any] = {"headers": {"Host": "example.test", **(headers or {})}}
        if body is not None:
            kw["data"] = body
        answer = await self.gw.proxy(method, path, **kw)
        self.assertEqual(answer.code, h2answer.status, (path, answer.body, h2answer.body))
        for name in names:
            mine = h2answer.header(name.lower().encode())
            self.assertEqual(answer.header(name), mine.decode() if mine is not None else None, (path, name))
        return answer

    async def test_authentication(self) -> None:
        """
        key-auth, basic-auth, jwt, acl and ip-restriction refuse and admit
        HTTP/2 streams as HTTP/1.1 requests, with the same statuses and
        challenge headers; the service sees the consumer.
        """
        # key-auth
        refused = await self.get("/key/a")
        self.assertEqual((refused.status, json.loads(refused.body)), (401, {"message": "No API key found in request"}))
        await self.same_over_http11(refused, "/key/a", ["WWW-Authenticate", "Content-Type"])
        admitted = await self.get("/key/a", {"apikey": "alice-key"})
        self.assertEqual(admitted.status, 200)
        self.assertEqual(json.loads(admitted.body)["headers"]["x-consumer-username"], ["alice"])
        # basic-auth
        refused = await self.get("/basic/a")
        self.assertEqual((refused.status, refused.header(b"www-authenticate")), (401, b'Basic realm="mock"'))
        await self.same_over_http11(refused, "/basic/a", ["WWW-Authenticate"])
        token = base64.b64encode(b"alice:wonderland").decode()
        admitted = await self.get("/basic/a", {"authorization": f"Basic {token}"})
        self.assertEqual(admitted.status, 200)
        self.assertEqual(json.loads(admitted.body)["headers"]["x-consumer-username"], ["alice"])
        wrong = await self.get("/basic/a", {"authorization": "Basic " + base64.b64encode(b"alice:x").decode()})
        self.assertEqual(wrong.status, 401)
        # jwt
        credential = self.jwt_credential
        signed = jwt.encode({"iss": credential["key"], "exp": 4102444800}, credential["secret"], algorithm="HS256")
        admitted = await self.get("/jwt/a", {"authorization": f"Bearer {signed}"})
        self.assertEqual(admitted.status, 200, admitted.body)
        self.assertEqual(json.loads(admitted.body)["headers"]["x-consumer-username"], ["alice"])
        expired = jwt.encode({"iss": credential["key"], "exp": 1}, credential["secret"], algorithm="HS256")
        refused = await self.get("/jwt/a", {"authorization": f"Bearer {expired}"})
        self.assertEqual(refused.status, 401, refused.body)
        await self.same_over_http11(refused, "/jwt/a", [], {"Authorization": f"Bearer {expired}"})
        # acl (after key-auth)
        self.assertEqual((await self.get("/acl/a", {"apikey": "alice-key"})).status, 200)
        refused = await self.get("/acl/a", {"apikey": "bob-key"})
        self.assertEqual(refused.status, 403, refused.body)
        await self.same_over_http11(refused, "/acl/a", [], {"apikey": "bob-key"})
        # ip-restriction (the test client is 127.0.0.1, denied)
        refused = await self.get("/ip/a")
        self.assertEqual(refused.status, 403, refused.body)
        h1 = await self.same_over_http11(refused, "/ip/a", ["Content-Type"])
        self.assertEqual(json.loads(refused.body), h1.json())
        paths = [seen["path"] for seen in self.upstream.seen]
        self.assertEqual(paths, ["/a"] * 4)

    async def test_headersAndBodies(self) -> None:
        """
        correlation-id, cors, header-echo, request-termination,
        request-transformer and response-transformer over HTTP/2.
        """
        # correlation-id
        answer = await self.get("/cid/a")
        sent = self.upstream.seen[-1]["headers"]["x-correlation-id"][0]
        self.assertRegex(sent, r"^[0-9a-f-]{36}#\d+$")
        self.assertEqual(answer.header(b"x-correlation-id"), sent.encode())
        # cors: the preflight answered by the gateway, then the origin header
        preflight = await self.get("/cors/a", {"origin": "https://app.example",
                                               "access-control-request-method": "PUT"}, method=b"OPTIONS")
        self.assertEqual((preflight.status, preflight.header(b"access-control-allow-origin"),
                          preflight.header(b"access-control-max-age")), (200, b"https://app.example", b"3600"))
        await self.same_over_http11(preflight, "/cors/a", [
            "Access-Control-Allow-Origin", "Access-Control-Max-Age", "Access-Control-Allow-Methods",
            "Access-Control-Allow-Credentials"],
            {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}, method="OPTIONS")
        answer = await self.get("/cors/a", {"origin": "https://app.example"})
        self.assertEqual((answer.header(b"access-control-allow-origin"),
                          answer.header(b"access-control-expose-headers")), (b"https://app.example", b"X-Total"))
        # header-echo
        answer = await self.get("/echo/a", {"x-request-echo": "Hello, h2"})
        self.assertEqual(answer.header(b"x-response-echo"), b"Hello, h2")
        await self.same_over_http11(answer, "/echo/a", ["X-Response-Echo"], {"X-Request-Echo": "Hello, h2"})
        # request-termination
        answer = await self.get("/term/a")
        self.assertEqual((answer.status, json.loads(answer.body)), (403, {"message": "So long"}))
        await self.same_over_http11(answer, "/term/a", ["Content-Type"])
        # request-transformer
        answer = await self.get("/rqt/a?x=1", {"x-secret": "s"}, method=b"POST", body=b"payload")
        self.assertEqual(answer.status, 200)
        seen = json.loads(answer.body)
        self.assertEqual((seen["uri"], seen["headers"]["x-added"], seen["body"]), ("/a?x=1&v=2", ["in"], "payload"))
        self.assertNotIn("x-secret", seen["headers"])
        # response-transformer: the JSON body rewritten, its length right
        answer = await self.get("/rst/a")
        document = json.loads(answer.body)
        self.assertEqual((document["path"], document["extra"], "headers" in document), ("/a", 1, False))
        self.assertEqual(answer.header(b"x-added"), b"out")
        length = answer.header(b"content-length")
        self.assertIn(length, (None, b"%d" % len(answer.body)))
        self.assertNotIn(b"transfer-encoding", [name for name, _ in answer.headers])
        h1 = await self.same_over_http11(answer, "/rst/a", ["X-Added"])
        self.assertEqual(set(h1.json()), set(document))
        self.assertNotIn("/term/a", [s["uri"] for s in self.upstream.seen])

    async def test_traffic(self) -> None:
        """
        proxy-cache (the second request is a hit, whichever protocol asks),
        rate-limiting (the third request in the minute is 429 with Kong's
        headers) and request-size-limiting (413) over HTTP/2.
        """
        # proxy-cache
        first = await self.get("/cache/item?x=1")
        second = await self.get("/cache/item?x=1")
        self.assertEqual((first.header(b"x-cache-status"), second.header(b"x-cache-status")), (b"Miss", b"Hit"))
        self.assertEqual(first.body, second.body)
        h1 = await self.gw.proxy("GET", "/cache/item?x=1", headers={"Host": "example.test"})
        self.assertEqual((h1.header("x-cache-status"), h1.body), ("Hit", first.body))
        self.assertEqual(len([s for s in self.upstream.seen if s["path"] == "/item"]), 1)
        # rate-limiting: 2 a minute, the third refused; HTTP/1.1 counted alike
        one = await self.get("/rl/a")
        two = await self.get("/rl/a")
        three = await self.get("/rl/a")
        self.assertEqual([one.status, two.status, three.status], [200, 200, 429])
        self.assertEqual((one.header(b"x-ratelimit-limit-minute"), one.header(b"x-ratelimit-remaining-minute"),
                          one.header(b"ratelimit-limit"), one.header(b"ratelimit-remaining")),
                         (b"2", b"1", b"2", b"1"))
        self.assertEqual(json.loads(three.body), {"message": "API rate limit exceeded"})
        self.assertEqual((three.header(b"x-ratelimit-remaining-minute"), three.header(b"ratelimit-remaining")),
                         (b"0", b"0"))
        self.assertIsNotNone(three.header(b"retry-after"))
        self.assertIsNotNone(three.header(b"ratelimit-reset"))
        await self.same_over_http11(three, "/rl/a", ["X-RateLimit-Limit-Minute", "X-RateLimit-Remaining-Minute",
                                                     "RateLimit-Limit", "RateLimit-Remaining"])
        # request-size-limiting: declared and undeclared bodies
        self.assertEqual((await self.get("/size/a", method=b"POST", body=b"x" * 1024)).status, 200)
        big = await self.get("/size/a", method=b"POST", body=b"x" * 1025)
        self.assertEqual((big.status, json.loads(big.body)), (413, {"message": "Request size limit exceeded"}))
        await self.same_over_http11(big, "/size/a", ["Content-Type"], method="POST", body=b"x" * 1025)
        stream = self.h2.request(b"POST", b"/size/b", body=b"y" * 2000)  # no content-length
        undeclared = await self.h2.done[stream]
        self.assertEqual(undeclared.status, 413, undeclared)
        self.assertEqual([s["body_length"] for s in self.upstream.seen if s["path"] in ("/a", "/b")
                          and s["method"] == "POST"], [1024])
        # (the connection goes on)
        self.assertEqual((await self.get("/key/a", {"apikey": "alice-key"})).status, 200)

    async def test_logging(self) -> None:
        """
        file-log and http-log write a sane record of an HTTP/2 request: the
        log record (Kong's) has no protocol field; its request part is the
        request as HTTP/1.1 would give it (the authority as the Host, no
        pseudo-header among the headers, a URL, a size); prometheus counts
        it.
        """
        answer = await self.get("/logged/x?q=1", {"user-agent": "h2-test"})
        self.assertEqual(answer.status, 200)
        h1 = await self.gw.proxy("GET", "/logged/y?q=1", headers={"Host": "example.test", "User-Agent": "h2-test"})
        self.assertEqual(h1.code, 200)
        await until(lambda: len(_lines(self.log_path)) >= 2 and len(self.collector.entries) >= 2)
        for records in (_lines(self.log_path), self.collector.entries):
            by_uri = {record["request"]["uri"]: record for record in records}
            h2rec, h1rec = by_uri["/logged/x?q=1"], by_uri["/logged/y?q=1"]
            request = h2rec["request"]
            self.assertEqual((request["method"], request["querystring"]), ("GET", {"q": "1"}))
            self.assertEqual(request["url"], f"http://example.test:{self.gw.proxy_port}/logged/x?q=1")
            self.assertEqual((request["headers"]["host"], request["headers"]["user-agent"]),
                             ("example.test", "h2-test"))
            self.assertEqual([name for name in request["headers"] if name.startswith(":")], [])
            self.assertGreater(request["size"], len("GET /logged/x?q=1"))
            self.assertEqual((h2rec["upstream_uri"], h2rec["upstream_status"], h2rec["response"]["status"]),
                             ("/x?q=1", "200", 200))
            self.assertGreater(h2rec["response"]["size"], len(answer.body))
            self.assertEqual((h2rec["route"]["name"], h2rec["client_ip"], h2rec["source"]),
                             ("logged", "127.0.0.1", "upstream"))
            self.assertEqual(set(h2rec), set(h1rec))
            self.assertEqual(set(request), set(h1rec["request"]))
        metrics = await self.gw.admin("GET", "/metrics")
        self.assertEqual(metrics.code, 200)
        lines = [line for line in metrics.body.decode().splitlines()
                 if line.startswith("echogate_http_requests_total{") and 'route="logged"' in line
                 and 'service="s"' in line]  # (the counters are the test process's)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('code="200"', lines[0])
        self.assertEqual(float(lines[0].rsplit(" ", 1)[1]), 2.0)

