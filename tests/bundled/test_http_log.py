"""
Tests for the bundled http-log plugin (L{echogate.bundled.http_log}): its
schema, the requests it sends, and entries reaching a real HTTP endpoint
from the running gateway. Its batching queue is tested in
L{tests.bundled.test_http_log_queue}.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

from echogate.bundled.http_log import HttpLog
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


class HttpLogSchemaTests(SynchronousTestCase):
    """
    http-log's config, field by field.
    """

    def validate(self, **config: Any) -> dict:
        config.setdefault("http_endpoint", "http://logs.test/in")
        return HttpLog.config_schema.validate(config)

    def refuse(self, **config: Any) -> dict:
        return self.assertRaises(SchemaViolation, self.validate, **config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults.
        """
        config = self.validate()
        self.assertEqual({k: v for k, v in config.items() if k != "queue"}, {
            "http_endpoint": "http://logs.test/in", "method": "POST", "content_type": "application/json",
            "timeout": 10000, "keepalive": 60000, "headers": None, "redact_credentials": True, "redact": []})
        self.assertEqual(config["queue"], {
            "max_batch_size": 1, "max_coalescing_delay": 1, "max_entries": 10000, "max_bytes": None,
            "max_retry_time": 60, "initial_retry_delay": 0.01, "max_retry_delay": 60, "concurrency_limit": 1})

    def test_endpoint(self) -> None:
        """
        The endpoint is required and is an http or https URL with a host.
        """
        self.assertEqual(self.assertRaises(SchemaViolation, HttpLog.config_schema.validate, {}).fields,
                         {"http_endpoint": "required field missing"})
        self.assertEqual(self.refuse(http_endpoint="ftp://x/"), {"http_endpoint": "unsupported scheme"})
        self.assertEqual(self.refuse(http_endpoint="http:///nohost"), {"http_endpoint": "missing host in url"})
        self.assertEqual(self.refuse(http_endpoint="http://x:99999/"), {"http_endpoint": "invalid port number"})
        self.assertEqual(self.validate(http_endpoint="https://u:p@x:8443/p")["http_endpoint"],
                         "https://u:p@x:8443/p")

    def test_method(self) -> None:
        """
        POST, PUT or PATCH.
        """
        self.assertEqual(self.refuse(method="GET"), {"method": "expected one of: POST, PUT, PATCH"})

    def test_contentType(self) -> None:
        """
        JSON only.
        """
        self.assertEqual(self.refuse(content_type="text/plain"),
                         {"content_type": "expected one of: application/json, application/json; charset=utf-8"})

    def test_timeouts(self) -> None:
        """
        timeout is positive, keepalive not negative, both numbers.
        """
        self.assertEqual(self.refuse(timeout=0), {"timeout": "value must be greater than 0"})
        self.assertEqual(self.refuse(timeout="1"), {"timeout": "expected a number"})
        self.assertEqual(self.refuse(keepalive=-1), {"keepalive": "value must be at least 0"})

    def test_headers(self) -> None:
        """
        Headers are a map of strings, without Host, Content-Length or
        Content-Type.
        """
        self.assertEqual(self.validate(headers={"X-Token": "t"})["headers"], {"X-Token": "t"})
        self.assertEqual(self.refuse(headers={"Host": "x"}), {"headers": "cannot contain 'Host' header"})
        self.assertEqual(self.refuse(headers={"content-length": "1"}),
                         {"headers": "cannot contain 'Content-Length' header"})
        self.assertEqual(self.refuse(headers={"Content-Type": "x"}),
                         {"headers": "cannot contain 'Content-Type' header"})
        self.assertEqual(self.refuse(headers={"X": 1}), {"headers": "expected a string"})
        self.assertEqual(self.refuse(headers=["X"]), {"headers": "expected a map"})

    def test_userinfoAndAuthorization(self) -> None:
        """
        User info in the endpoint and an Authorization header exclude each
        other.
        """
        fields = self.refuse(http_endpoint="http://u:p@x/", headers={"authorization": "Bearer t"})
        self.assertEqual(fields, {"@entity": ["specifying both an 'Authorization' header and user info in"
                                              " 'http_endpoint' is not allowed"]})

    def test_queue(self) -> None:
        """
        Every queue field has its bounds.
        """
        cases = [
            ({"max_batch_size": 0}, {"max_batch_size": "value should be between 1 and 1000000"}),
            ({"max_coalescing_delay": 3601}, {"max_coalescing_delay": "value should be between 0 and 3600"}),
            ({"max_entries": 0}, {"max_entries": "value should be between 1 and 1000000"}),
            ({"max_bytes": 0}, {"max_bytes": "value must be greater than 0"}),
            ({"max_retry_time": "x"}, {"max_retry_time": "expected a number"}),
            ({"initial_retry_delay": 0}, {"initial_retry_delay": "value should be between 0.001 and 1000000"}),
            ({"max_retry_delay": 0}, {"max_retry_delay": "value should be between 0.001 and 1000000"}),
            ({"concurrency_limit": 2}, {"concurrency_limit": "expected one of: -1, 1"}),
            ({"size": 2}, {"size": "unknown field"}),
        ]
        for queue, fields in cases:
            self.assertEqual(self.refuse(queue=queue), {"queue": fields}, queue)

    def test_unknownField(self) -> None:
        """
        Unknown fields are refused.
        """
        self.assertEqual(self.refuse(custom_fields_by_lua={}), {"custom_fields_by_lua": "unknown field"})


class _Response:
    def __init__(self, code: int, body: bytes = b"") -> None:
        self.code = code
        self._body = body

    def content(self) -> Deferred:
        return succeed(self._body)


class _Client:
    """
    A treq-like client that records requests and answers with C{codes}.
    """

    def __init__(self, *codes: int) -> None:
        self.requests: list[dict] = []
        self.codes = list(codes)

    def request(self, method: str, url: str, data: bytes, headers: dict) -> Deferred:
        self.requests.append({"method": method, "url": url, "data": data, "headers": headers})
        code = self.codes.pop(0) if self.codes else 200
        if code == 0:
            return Deferred()  # never answers
        return succeed(_Response(code, b"nope"))


class HttpLogTests(SynchronousTestCase):
    """
    Through L{GatewayHarness}: what http-log sends.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def run_requests(self, client: _Client, count: int = 1, **config: Any) -> HttpLog:
        plugin = HttpLog(reactor=self.clock, client=client)
        config.setdefault("http_endpoint", "http://logs.test:9000/in")
        harness = GatewayHarness([plugin], configs=[("http-log", config)], clock=self.clock)
        for n in range(count):
            self.successResultOf(harness.request("GET", f"/r{n}"))
        return plugin

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        plugin = HttpLog()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), ("http-log", 12))

    def test_oneEntry(self) -> None:
        """
        One entry is POSTed as a JSON object with the configured content
        type and headers.
        """
        client = _Client()
        self.run_requests(client, headers={"X-Token": "t"})
        (sent,) = client.requests
        self.assertEqual((sent["method"], sent["url"]), ("POST", "http://logs.test:9000/in"))
        self.assertEqual(sent["headers"]["Content-Type"], ["application/json"])
        self.assertEqual(sent["headers"]["X-Token"], ["t"])
        self.assertEqual(json.loads(sent["data"])["request"]["uri"], "/r0")

    def test_batch(self) -> None:
        """
        Several entries go as one JSON array.
        """
        client = _Client()
        self.run_requests(client, count=3, method="PUT", queue={"max_batch_size": 3})
        (sent,) = client.requests
        self.assertEqual(sent["method"], "PUT")
        self.assertEqual([e["request"]["uri"] for e in json.loads(sent["data"])], ["/r0", "/r1", "/r2"])

    def test_userinfo(self) -> None:
        """
        User info in the endpoint becomes Basic authorization and leaves the
        URL.
        """
        client = _Client()
        self.run_requests(client, http_endpoint="http://bob:s3cret@logs.test/")
        (sent,) = client.requests
        self.assertEqual(sent["url"], "http://logs.test/")
        self.assertEqual(sent["headers"]["Authorization"], ["Basic " + base64.b64encode(b"bob:s3cret").decode()])

    def test_errorStatusRetried(self) -> None:
        """
        A 500 answer is a failure: the batch is sent again.
        """
        client = _Client(500, 200)
        plugin = self.run_requests(client, queue={"initial_retry_delay": 1})
        self.clock.advance(1)
        self.assertEqual(len(client.requests), 2)
        self.assertEqual(client.requests[0]["data"], client.requests[1]["data"])
        queue = next(iter(plugin.queues.queues.values()))
        self.assertEqual((queue.sent, queue.dropped), (1, 0))

    def test_timeout(self) -> None:
        """
        An endpoint that does not answer within timeout counts as a failure.
        """
        client = _Client(0, 200)
        plugin = self.run_requests(client, timeout=500, queue={"initial_retry_delay": 1})
        self.clock.advance(0.5)
        self.clock.advance(1)
        self.assertEqual(len(client.requests), 2)
        queue = next(iter(plugin.queues.queues.values()))
        self.assertEqual(queue.sent, 1)

    def test_queuePerConfig(self) -> None:
        """
        Requests under the same config share a queue; another config has its own.
        """
        client = _Client()
        plugin = HttpLog(reactor=self.clock, client=client)
        a = plugin.queue_for(HttpLog.config_schema.validate({"http_endpoint": "http://a/"}))
        self.assertIs(a, plugin.queue_for(HttpLog.config_schema.validate({"http_endpoint": "http://a/"})))
        self.assertIsNot(a, plugin.queue_for(HttpLog.config_schema.validate({"http_endpoint": "http://b/"})))

    def test_drain(self) -> None:
        """
        drain sends partial batches at once.
        """
        client = _Client()
        plugin = self.run_requests(client, count=2, queue={"max_batch_size": 10, "max_coalescing_delay": 60})
        self.assertEqual(client.requests, [])
        self.successResultOf(plugin.drain())
        self.assertEqual(len(json.loads(client.requests[0]["data"])), 2)


class _Collector(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[Any] = []
        self.headers: list[Any] = []
        self.arrived: Deferred = Deferred()
        self.failures = 0

    def render_POST(self, request: Any) -> bytes:
        if self.failures:
            self.failures -= 1
            request.setResponseCode(503)
            return b"later"
        self.bodies.append(json.loads(request.content.read()))
        self.headers.append(request.requestHeaders)
        return b"ok"


class HttpLogGatewayTests(TestCase):
    """
    http-log in a running gateway, sending to a real HTTP endpoint.
    """

    timeout = 60

    async def test_endToEnd(self) -> None:
        """
        Entries for proxied requests reach the endpoint in batches, after a
        refused first attempt.
        """
        collector = _Collector()
        collector.failures = 1
        site = server.Site(collector)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        _, upstream_port = start_upstream(self)
        gw = await start_gateway(self)
        await gw.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{upstream_port}"})
        await gw.admin("POST", "/services/svc/routes", json={"paths": ["/h"]})
        answer = await gw.admin("POST", "/plugins", json={"name": "http-log", "config": {
            "http_endpoint": f"http://127.0.0.1:{port.getHost().port}/logs",
            "headers": {"X-Log-Token": "abc"},
            "queue": {"max_batch_size": 2, "max_coalescing_delay": 0.05, "initial_retry_delay": 0.05}}})
        self.assertEqual(answer.code, 201, answer.body)
        for n in range(3):
            self.assertEqual((await gw.proxy("GET", f"/h/{n}")).code, 200)
        for _ in range(300):
            if sum(len(b) for b in collector.bodies) >= 3:
                break
            await deferLater(reactor, 0.02, lambda: None)
        uris = sorted(e["request"]["uri"] for batch in collector.bodies for e in batch)
        self.assertEqual(uris, ["/h/0", "/h/1", "/h/2"])
        self.assertEqual(collector.headers[0].getRawHeaders(b"x-log-token"), [b"abc"])
        self.assertEqual(collector.failures, 0)
