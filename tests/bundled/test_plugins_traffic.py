"""
The six traffic plugins end to end: a gateway node on 127.0.0.1 with the
real PostgreSQL, each plugin configured through the Admin API as the docs
show, in front of a real upstream server.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


@implementer(IBodyProducer)
class _ChunkedBody:
    """
    A request body of unknown length, so the client sends it chunked.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    def startProducing(self, consumer: Any) -> Deferred:
        for chunk in self._chunks:
            consumer.write(chunk)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class TrafficPluginTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.gw = await start_gateway(self)
        answer = await self.gw.admin("POST", "/services", json={
            "name": "mock", "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/services/mock/routes", json={"name": "r", "paths": ["/mock"]})
        self.assertEqual(answer.code, 201, answer.body)

    async def plugin(self, name: str, where: str = "/services/mock/plugins", **fields: Any) -> dict:
        answer = await self.gw.admin("POST", where, json={"name": name, **fields})
        self.assertEqual(answer.code, 201, answer.body)
        return answer.json()

    async def test_correlationId(self) -> None:
        """
        correlation-id on a route: the service and the client see the same id.
        """
        await self.plugin("correlation-id", "/routes/r/plugins",
                          config={"header_name": "X-Correlation-ID", "echo_downstream": True})
        answer = await self.gw.proxy("GET", "/mock/a")
        self.assertEqual(answer.code, 200)
        sent = self.upstream.seen[-1]["headers"]["x-correlation-id"][0]
        self.assertRegex(sent, r"^[0-9a-f-]{36}#\d+$")
        self.assertEqual(answer.header("x-correlation-id"), sent)

    async def test_cors(self) -> None:
        """
        cors: the gateway answers the preflight; other responses get the
        origin header.
        """
        await self.plugin("cors", config={"origins": ["https://app.example"], "credentials": True,
                                          "max_age": 3600, "exposed_headers": ["X-Total"]})
        preflight = await self.gw.proxy("OPTIONS", "/mock/a", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "PUT"})
        self.assertEqual(preflight.code, 200)
        self.assertEqual(preflight.header("access-control-allow-origin"), "https://app.example")
        self.assertEqual(preflight.header("access-control-max-age"), "3600")
        self.assertEqual(self.upstream.seen, [])
        answer = await self.gw.proxy("GET", "/mock/a", headers={"Origin": "https://app.example"})
        self.assertEqual(answer.header("access-control-allow-origin"), "https://app.example")
        self.assertEqual(answer.header("access-control-allow-credentials"), "true")
        self.assertEqual(answer.header("access-control-expose-headers"), "X-Total")

    async def test_requestSizeLimiting(self) -> None:
        """
        request-size-limiting: a body over the limit, sized or chunked, is
        refused with 413 and never reaches the service.
        """
        await self.plugin("request-size-limiting", config={"allowed_payload_size": 1, "size_unit": "kilobytes"})
        ok = await self.gw.proxy("POST", "/mock/a", data=b"x" * 1024)
        self.assertEqual(ok.code, 200)
        big = await self.gw.proxy("POST", "/mock/a", data=b"x" * 1025)
        self.assertEqual((big.code, big.json()), (413, {"message": "Request size limit exceeded"}))
        chunked = await self.gw.proxy("POST", "/mock/a", data=_ChunkedBody([b"x" * 1000, b"y" * 1000]))
        self.assertEqual(chunked.code, 413)
        small_chunked = await self.gw.proxy("POST", "/mock/a", data=_ChunkedBody([b"x" * 10, b"y" * 10]))
        self.assertEqual(small_chunked.code, 200)
        self.assertEqual([s["body_length"] for s in self.upstream.seen], [1024, 20])

    async def test_requestTermination(self) -> None:
        """
        request-termination: the configured answer, without the service;
        with a trigger, only triggered requests.
        """
        await self.plugin("request-termination", config={"status_code": 403, "message": "So long"})
        answer = await self.gw.proxy("GET", "/mock/a")
        self.assertEqual((answer.code, answer.json()), (403, {"message": "So long"}))
        self.assertEqual(self.upstream.seen, [])

    async def test_requestTransformer(self) -> None:
        """
        request-transformer: headers, query, JSON body and method changed
        on the way to the service.
        """
        await self.plugin("request-transformer", config={
            "http_method": "PUT",
            "remove": {"headers": ["x-secret"], "querystring": ["debug"]},
            "rename": {"headers": ["x-old:x-new"]},
            "add": {"headers": ["x-from:$(query_params.who)"], "querystring": ["v:2"], "body": ["added:yes"]},
            "append": {"headers": ["x-list:two"]},
        })
        answer = await self.gw.proxy("POST", "/mock/a?who=me&debug=1", json={"k": "v"},
                                     headers={"X-Secret": "s", "X-Old": "o", "X-List": "one"})
        self.assertEqual(answer.code, 200)
        seen = self.upstream.seen[-1]
        self.assertEqual((seen["method"], seen["uri"]), ("PUT", "/a?who=me&v=2"))
        headers = seen["headers"]
        self.assertNotIn("x-secret", headers)
        self.assertEqual((headers["x-new"], headers["x-from"], headers["x-list"]), (["o"], ["me"], ["one", "two"]))
        self.assertEqual(json.loads(seen["body"]), {"k": "v", "added": "yes"})
        self.assertEqual(headers["content-length"], [str(seen["body_length"])])

    async def test_responseTransformer(self) -> None:
        """
        response-transformer: a JSON response's properties and headers are
        changed; a large non-JSON response streams through whole.
        """
        await self.plugin("response-transformer", config={
            "remove": {"json": ["headers"]}, "add": {"json": ["extra:1"], "json_types": ["number"],
                                                     "headers": ["x-added:yes"]}})
        answer = await self.gw.proxy("GET", "/mock/a")
        self.assertEqual(answer.code, 200)
        document = answer.json()
        self.assertNotIn("headers", document)
        self.assertEqual((document["path"], document["extra"]), ("/a", 1))
        self.assertEqual(answer.header("x-added"), "yes")
        big = await self.gw.proxy("GET", "/mock/big?size=3000000")
        self.assertEqual((big.code, len(big.body), big.header("x-added")), (200, 3000000, "yes"))
