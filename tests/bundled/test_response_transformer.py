"""
Tests for the bundled response-transformer plugin
(L{echogate.bundled.response_transformer}).
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from echogate.bundled.request_termination import RequestTermination
from echogate.bundled.response_transformer import ResponseTransformer, json_value
from echogate.bundled.transforms import is_json_type
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, UpstreamAnswer
from tests import requestonly
from tests.proxy.test_plugin_contract import RawExchange, capture_log, with_upstream

NAME = "response-transformer"


def answering(status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    def upstream(request: Any) -> UpstreamAnswer:
        return UpstreamAnswer(status, headers or {}, body)

    return upstream


def harness(upstream: Any = None, **config: Any) -> GatewayHarness:
    return GatewayHarness([ResponseTransformer()], configs=[(NAME, config)],
                          upstream=upstream or answering(200, {"Content-Type": "application/json"}, b"{}"))


class _Transport:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class HeldResponse:
    """
    An upstream response whose body the test delivers chunk by chunk.
    """

    def __init__(self, headers: dict[str, str]):
        self.code = 200
        self.phrase = b"OK"
        self.version = (b"HTTP", 1, 1)
        self.headers = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        self.length = None
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(_Transport())

    def chunk(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def end(self) -> None:
        self.protocol.connectionLost(Failure(ResponseDone()))


class HeldUpstream:
    def __init__(self, headers: dict[str, str]):
        self.response = HeldResponse(headers)

    def request(self, service: dict, method: bytes, target: bytes, headers: Headers,
                body_factory: Any = None) -> Deferred:
        return succeed(self.response)

    send = requestonly.send

    def close(self) -> Deferred:
        return succeed(None)


class HeaderTests(SynchronousTestCase):
    """
    Response headers: remove, rename, replace, add, append.
    """

    def get(self, gateway: GatewayHarness) -> Any:
        return self.successResultOf(gateway.request("GET", "/"))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        plugin = ResponseTransformer()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 800))

    def test_operations(self) -> None:
        """
        Each operation on response headers.
        """
        upstream = answering(200, {"X-Remove": "1", "X-Old": "o", "X-Rep": "1", "X-Add": "keep", "X-App": "1"})
        config = {"remove": {"headers": ["x-remove"]}, "rename": {"headers": ["x-old:x-new", "x-none:x-other"]},
                  "replace": {"headers": ["x-rep:2", "x-absent:2"]},
                  "add": {"headers": ["x-add:no", "x-added:yes:with:colons"]},
                  "append": {"headers": ["x-app:2", "x-fresh:1"]}}
        response = self.get(harness(upstream, **config))
        h = response.headers
        self.assertNotIn("x-remove", h)
        self.assertNotIn("x-old", h)
        self.assertNotIn("x-other", h)
        self.assertNotIn("x-absent", h)
        self.assertEqual((h["x-new"], h["x-rep"], h["x-add"], h["x-added"], h["x-app"], h["x-fresh"]),
                         (["o"], ["2"], ["keep"], ["yes:with:colons"], ["1", "2"], ["1"]))

    def test_order(self) -> None:
        """
        A removed header can be added again; a renamed one replaced under
        its new name.
        """
        upstream = answering(200, {"X-A": "1", "X-B": "2"})
        config = {"remove": {"headers": ["x-a"]}, "add": {"headers": ["x-a:added"]},
                  "rename": {"headers": ["x-b:x-c"]}, "replace": {"headers": ["x-c:replaced"]}}
        h = self.get(harness(upstream, **config)).headers
        self.assertEqual((h["x-a"], h["x-c"]), (["added"], ["replaced"]))

    def test_caseInsensitive(self) -> None:
        """
        Names match whatever their case.
        """
        upstream = answering(200, {"x-lower": "1"})
        h = self.get(harness(upstream, remove={"headers": ["X-LOWER"]})).headers
        self.assertNotIn("x-lower", h)

    def test_emptyValueIgnored(self) -> None:
        """
        An entry without a value does nothing.
        """
        upstream = answering(200, {"X-A": "1"})
        h = self.get(harness(upstream, add={"headers": ["x-b:"]}, replace={"headers": ["x-a:"]},
                             append={"headers": ["x-a:"]})).headers
        self.assertEqual((h["x-a"], h.get("x-b")), (["1"], None))

    def test_exitResponses(self) -> None:
        """
        Answers made by a plugin are transformed too.
        """
        gateway = GatewayHarness([ResponseTransformer(), RequestTermination()],
                                 configs=[(NAME, {"add": {"headers": ["x-a:1"], "json": ["k:v"]}}),
                                          ("request-termination", {})])
        response = self.get(gateway)
        self.assertEqual((response.status, response.header("x-a")), (503, "1"))
        self.assertEqual(response.json(), {"message": "Service unavailable", "k": "v"})
        self.assertEqual(response.header("content-length"), str(len(response.body)))


class JsonBodyTests(SynchronousTestCase):
    """
    JSON bodies: remove, rename, replace, add, append, with types.
    """

    def body(self, document: Any, content_type: str = "application/json", **config: Any) -> Any:
        raw = json.dumps(document).encode() if not isinstance(document, bytes) else document
        gateway = harness(answering(200, {"Content-Type": content_type}, raw), **config)
        return self.successResultOf(gateway.request("GET", "/"))

    def test_operations(self) -> None:
        """
        Each operation, in order; values are strings by default.
        """
        config = {"remove": {"json": ["r"]}, "rename": {"json": ["old:new"]},
                  "replace": {"json": ["p:2", "absent:x"]}, "add": {"json": ["a:1", "p:no"]},
                  "append": {"json": ["m:2", "n:1", "s:t"]}}
        response = self.body({"r": 1, "old": "o", "p": 1, "m": ["1"], "s": "one"}, **config)
        self.assertEqual(response.json(), {"new": "o", "p": "2", "m": ["1", "2"], "s": ["one", "t"], "a": "1",
                                           "n": ["1"]})
        self.assertEqual(list(response.json()), ["new", "p", "m", "s", "a", "n"])

    def test_types(self) -> None:
        """
        C{json_types} gives each value (by position) a JSON type.
        """
        config = {"add": {"json": ["n:1.5", "i:42", "t:true", "f:yes", "s:7", "bad:abc", "h:0x10"],
                          "json_types": ["number", "number", "boolean", "boolean", "string", "number", "number"]}}
        self.assertEqual(self.body({}, **config).json(),
                         {"n": 1.5, "i": 42, "t": True, "f": False, "s": "7", "h": 16})

    def test_replaceKeepsNull(self) -> None:
        """
        A property that is present replaces, even when null.
        """
        self.assertEqual(self.body({"a": None}, replace={"json": ["a:1"]}).json(), {"a": "1"})

    def test_charsetAndLists(self) -> None:
        """
        C{application/json} with parameters, or among other types, is JSON.
        """
        for content_type in ("application/json; charset=utf-8", "text/plain, application/json"):
            self.assertEqual(self.body({}, content_type, add={"json": ["a:1"]}).json(), {"a": "1"},
                             f"row content_type={content_type!r}")

    def test_unicode(self) -> None:
        """
        Non-ASCII text is kept as UTF-8.
        """
        response = self.body({"é": "ü"}, add={"json": ["a:ß"]})
        self.assertEqual(response.body, '{"é":"ü","a":"ß"}'.encode())

    def test_lengthRemoved(self) -> None:
        """
        A transformed body is sent without the service's Content-Length.
        """
        response = self.body({}, add={"json": ["a:1"]})
        self.assertIsNone(response.header("content-length"))
        self.assertEqual(response.header("transfer-encoding"), "chunked")

    def test_notJsonType(self) -> None:
        """
        A body of another type is not touched.
        """
        response = self.body(b'{"a": 1}', "text/plain", add={"json": ["b:1"]})
        self.assertEqual(response.body, b'{"a": 1}')

    def test_invalidJson(self) -> None:
        """
        A JSON response that is not a JSON object is sent as it came, with
        a warning.
        """
        events = capture_log(self)
        for raw in (b"not json", b"[1, 2]"):
            self.assertEqual(self.body(raw, add={"json": ["b:1"]}).body, raw, f"row raw={raw!r}")
        warnings = [e for e in events if "body transform failed" in (e.get("log_format") or "")]
        self.assertEqual(len(warnings), 2)

    def test_emptyBody(self) -> None:
        """
        An empty body (a HEAD, a 204) stays empty, without a warning.
        """
        events = capture_log(self)
        response = self.body(b"", add={"json": ["b:1"]})
        self.assertEqual(response.body, b"")
        self.assertEqual([e for e in events if "body transform failed" in (e.get("log_format") or "")], [])

    def test_encodedBodyUntouched(self) -> None:
        """
        A compressed JSON body is not decoded: it is sent as it came.
        """
        raw = b"\x1f\x8b compressed"
        gateway = harness(answering(200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, raw),
                          add={"json": ["b:1"]})
        response = self.successResultOf(gateway.request("GET", "/"))
        self.assertEqual((response.body, response.header("content-encoding")), (raw, "gzip"))

    def test_identityEncoding(self) -> None:
        """
        C{Content-Encoding: identity} is transformed.
        """
        gateway = harness(answering(200, {"Content-Type": "application/json", "Content-Encoding": "identity"}, b"{}"),
                          add={"json": ["b:1"]})
        self.assertEqual(self.successResultOf(gateway.request("GET", "/")).json(), {"b": "1"})

    def test_jsonValue(self) -> None:
        """
        L{json_value} converts by type; C{None} means skip.
        """
        self.assertEqual([json_value("1e3", "number"), json_value("-2", "number"), json_value("1e400", "number"),
                          json_value("true", "boolean"), json_value("TRUE", "boolean"), json_value(None, "string"),
                          json_value("x", None)],
                         [1000, -2, None, True, False, None, "x"])

    def test_isJsonType(self) -> None:
        """
        Only application/json (any case, parameters, in a list) counts.
        """
        self.assertEqual([is_json_type(t) for t in ("application/json", "APPLICATION/JSON;charset=x",
                                                    "text/html, application/json", "application/vnd.api+json",
                                                    "text/json", None, "")],
                         [True, True, True, False, False, False, False])


class StreamingTests(SynchronousTestCase):
    """
    Only bodies that change are held back.
    """

    def exchange(self, headers: dict[str, str], **config: Any) -> tuple[HeldResponse, RawExchange]:
        upstream = HeldUpstream(headers)
        gateway = with_upstream(GatewayHarness([ResponseTransformer()], configs=[(NAME, config)]), upstream)
        exchange = RawExchange(gateway, "GET", "/")
        self.addCleanup(exchange.close)
        return upstream.response, exchange

    def test_otherTypesStream(self) -> None:
        """
        With JSON operations, a non-JSON response still goes to the client
        chunk by chunk as it arrives.
        """
        response, exchange = self.exchange({"Content-Type": "text/plain"}, add={"json": ["a:1"]},
                                           append={"headers": ["x-a:1"]})
        response.chunk(b"first-chunk")
        self.assertIn(b"x-a: 1", exchange.transport.value().lower())
        self.assertIn(b"first-chunk", exchange.transport.value())
        response.chunk(b"second-chunk")
        self.assertIn(b"second-chunk", exchange.transport.value())
        response.end()

    def test_jsonWithoutBodyOperationsStreams(self) -> None:
        """
        A JSON response streams when only headers are transformed.
        """
        response, exchange = self.exchange({"Content-Type": "application/json"}, add={"headers": ["x-a:1"]})
        response.chunk(b'{"a": ')
        self.assertIn(b'{"a": ', exchange.transport.value())
        response.chunk(b"1}")
        response.end()
        self.assertIn(b"1}", exchange.transport.value())

    def test_transformedHeldUntilEnd(self) -> None:
        """
        A JSON body to transform is held until its last chunk, then sent
        transformed.
        """
        response, exchange = self.exchange({"Content-Type": "application/json"}, add={"json": ["b:2"]})
        response.chunk(b'{"a": ')
        response.chunk(b"1}")
        self.assertNotIn(b'{"a": ', exchange.transport.value())
        response.end()
        self.assertIn(b'{"a":1,"b":"2"}', exchange.transport.value())


class ResponseTransformerSchemaTests(SynchronousTestCase):
    """
    response-transformer's config schema.
    """

    schema = ResponseTransformer.config_schema

    def violation(self, config: dict) -> dict:
        return self.assertRaises(SchemaViolation, self.schema.validate, config).fields

    def test_defaults(self) -> None:
        """
        Every list defaults to empty.
        """
        typed = {"json": [], "json_types": [], "headers": []}
        self.assertEqual(self.schema.validate({}), {"remove": {"json": [], "headers": []},
                                                    "rename": {"json": [], "headers": []},
                                                    "replace": typed, "add": typed, "append": typed})

    def test_lists(self) -> None:
        """
        Lists cannot be null, and hold strings.
        """
        self.assertEqual(self.violation({"remove": {"json": None}}), {"remove": {"json": "required field missing"}})
        self.assertEqual(self.violation({"add": {"headers": [1]}}), {"add": {"headers": {"1": "expected a string"}}})
        self.assertEqual(self.violation({"remove": {"body": []}}), {"remove": {"body": "unknown field"}})

    def test_colonPairs(self) -> None:
        """
        Entries of rename, replace, add and append need a colon.
        """
        for operation in ("rename", "replace", "add", "append"):
            for part in ("json", "headers"):
                self.assertEqual(self.violation({operation: {part: ["k"]}}),
                                 {operation: {part: {"1": "invalid value: k"}}},
                                 f"row operation={operation!r} part={part!r}")

    def test_renameHeaders(self) -> None:
        """
        Both names of a header rename are valid header names.
        """
        self.assertEqual(self.violation({"rename": {"headers": ["a:b c"]}}),
                         {"rename": {"headers": {"1": "'b c' is not a valid header"}}})
        self.assertEqual(self.violation({"rename": {"headers": ["a b:c"]}}),
                         {"rename": {"headers": {"1": "'a b' is not a valid header"}}})

    def test_jsonTypes(self) -> None:
        """
        C{json_types} are boolean, number or string.
        """
        self.assertEqual(self.violation({"add": {"json_types": ["integer"]}}),
                         {"add": {"json_types": {"1": "expected one of: boolean, number, string"}}})
