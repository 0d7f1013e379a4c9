"""
Tests for the bundled grpc-web plugin (L{echogate.bundled.grpc_web}).
"""
from __future__ import annotations

import base64
import os
from typing import Any, Mapping, Sequence

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.bundled.grpc_transcode import Method, ProtoError, ProtoFiles, TranscodingUnavailable, methods_of
from echogate.bundled.grpc_web import (
    NEEDS_PROTO,
    NO_MESSAGE,
    NOT_BASE64,
    GrpcWeb,
    TextEncoder,
    decode_text,
    trailer_frame,
)
from echogate.bundled.request_termination import RequestTermination
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, HarnessResponse, UpstreamAnswer, UpstreamRequestSeen
from echogate.upstream.lean import LeanUpstreamClient
from tests.upstream_server import start_upstream

NAME = "grpc-web"

#: Kong's spec's hello.HelloService/SayHello exchange ("heya" in, "hello heya" out).
HELLO_REQUEST_TEXT = b"AAAAAAYKBGhleWE="
HELLO_REQUEST = base64.b64decode(HELLO_REQUEST_TEXT)
HELLO_REPLY = base64.b64decode(b"AAAAAAwKCmhlbGxvIGhleWE=")
OK_TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
#: What Kong answers a grpc-web-text client for it.
KONG_TEXT_ANSWER = b"AAAAAAwKCmhlbGxvIGhleWE=" + b"gAAAAB5ncnBjLXN0YXR1czowDQpncnBjLW1lc3NhZ2U6DQo="
#: The service's methods, for JSON transcoding.
HELLO_PROTO = os.path.join(os.path.dirname(__file__), "hello.proto")
HELLO_JSON = b'{"greeting": "heya"}'
REPLY_JSON = b'{"reply":"hello heya"}'


def frame(message: bytes) -> bytes:
    """
    One uncompressed gRPC message frame.
    """
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_service(body: bytes = HELLO_REPLY, trailers: Sequence[tuple[bytes, bytes]] | None = OK_TRAILERS,
                 status: int = 200, headers: Mapping[str, str] | None = None,
                 chunks: Sequence[bytes] | None = None) -> Any:
    """
    A fake gRPC service that answers every call with C{body} (or
    C{chunks}) and C{trailers}.
    """
    def answer(request: UpstreamRequestSeen) -> UpstreamAnswer:
        return UpstreamAnswer(status, dict(headers or {"Content-Type": "application/grpc"}),
                              b"" if chunks is not None else body, chunks=chunks, trailers=trailers)

    return answer


def harness(upstream: Any = None, plugins: Sequence[Any] = (), configs: Sequence[tuple] = (),
            route: Mapping[str, Any] | None = None, **config: Any) -> GatewayHarness:
    return GatewayHarness([GrpcWeb(), *plugins], configs=[(NAME, config), *configs],
                          upstream=upstream or grpc_service(), route=route)


def call(gateway: GatewayHarness, content_type: str | None, body: bytes, method: str = "POST",
         path: str = "/hello.HelloService/SayHello", **headers: str) -> Any:
    if content_type is not None:
        headers["Content-Type"] = content_type
    return gateway.request(method, path, headers=headers, body=body)


@attrs.frozen
class TrailerWatch(GatewayPlugin):
    """
    Records C{ctx.response.trailers} in its last C{body_filter} call; it
    runs after grpc-web (a lower priority).
    """

    seen: list[Any] = attrs.field(factory=list)

    name = "trailer-watch"
    version = "1.0.0"
    priority = 1
    config_schema = Record({})

    def body_filter(self, ctx: Any, config: Mapping[str, Any], chunk: bytes) -> None:
        if ctx.response.eof:
            self.seen.append(ctx.response.trailers)


class GrpcWebPluginTests(SynchronousTestCase):
    """
    The plugin object and its configuration.
    """

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name, priority and config
        fields.
        """
        plugin = GrpcWeb()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 3))
        self.assertEqual(plugin.config_schema.validate({}),
                         {"proto": None, "pass_stripped_path": None, "allow_origin_header": "*"})

    def test_badConfig(self) -> None:
        """
        The fields have Kong's types.
        """
        for bad in ({"pass_stripped_path": "yes"}, {"allow_origin_header": 1}, {"proto": True}):
            self.assertRaises(SchemaViolation, GrpcWeb().config_schema.validate, bad)


class BinaryModeTests(SynchronousTestCase):
    """
    application/grpc-web and application/grpc-web+proto.
    """

    def test_request(self) -> None:
        """
        The body goes to the service unchanged, with POST, C{Content-Type:
        application/grpc} and C{TE: trailers} (the client's C{TE} ignored).
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web+proto", HELLO_REQUEST, TE="chunked"))
        self.assertEqual(response.status, 200)
        [seen] = gateway.upstream_requests
        self.assertEqual((seen.method, seen.path, seen.body), ("POST", "/hello.HelloService/SayHello", HELLO_REQUEST))
        self.assertEqual(seen.headers["content-type"], ["application/grpc"])
        self.assertEqual(seen.headers["te"], ["trailers"])

    def test_response(self) -> None:
        """
        The service's messages come back as they are, then its trailers as
        a trailer frame, with the client's content type and
        C{Access-Control-Allow-Origin}; the length is not the service's.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web+proto", HELLO_REQUEST))
        self.assertEqual(response.body, HELLO_REPLY + trailer_frame(OK_TRAILERS))
        self.assertEqual(response.header("content-type"), "application/grpc-web+proto")
        self.assertEqual(response.header("access-control-allow-origin"), "*")
        self.assertNotEqual(response.header("content-length"), str(len(HELLO_REPLY)))

    def test_plainType(self) -> None:
        """
        application/grpc-web is binary too, and is the answer's type.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertEqual(gateway.upstream_requests[0].body, HELLO_REQUEST)
        self.assertEqual(response.body, HELLO_REPLY + trailer_frame(OK_TRAILERS))
        self.assertEqual(response.header("content-type"), "application/grpc-web")

    def test_streamedResponse(self) -> None:
        """
        A body that comes in pieces comes back whole, trailer frame last.
        """
        two = frame(b"one") + frame(b"second")
        gateway = harness(grpc_service(chunks=[two[:3], two[3:9], two[9:]]))
        response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertEqual(response.body, two + trailer_frame(OK_TRAILERS))

    def test_anyMethodIsPost(self) -> None:
        """
        The service is called with POST whatever the client's method.
        """
        gateway = harness()
        self.successResultOf(call(gateway, "application/grpc-web", b"", method="PUT"))
        self.assertEqual(gateway.upstream_requests[0].method, "POST")


class TextModeTests(SynchronousTestCase):
    """
    application/grpc-web-text and application/grpc-web-text+proto.
    """

    def test_kongExchange(self) -> None:
        """
        The request is decoded for the service (its length with it), and
        the answer is the one Kong's tests expect, byte for byte.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT))
        [seen] = gateway.upstream_requests
        self.assertEqual(seen.body, HELLO_REQUEST)
        self.assertEqual(seen.headers["content-type"], ["application/grpc"])
        self.assertEqual(response.body, KONG_TEXT_ANSWER)
        self.assertEqual(response.header("content-type"), "application/grpc-web-text")

    def test_protoType(self) -> None:
        """
        application/grpc-web-text+proto is text too, and is the answer's
        type.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web-text+proto", HELLO_REQUEST_TEXT))
        self.assertEqual(gateway.upstream_requests[0].body, HELLO_REQUEST)
        self.assertEqual(response.body, KONG_TEXT_ANSWER)
        self.assertEqual(response.header("content-type"), "application/grpc-web-text+proto")

    def test_piecesDecode(self) -> None:
        """
        A message that comes in pieces of any size is one base64 run:
        what was sent of it decodes as a whole.
        """
        message = frame(b"a message of some length, 41 bytes long")
        for size in (1, 2, 4, 5, 7):
            chunks = [message[i:i + size] for i in range(0, len(message), size)]
            gateway = harness(grpc_service(chunks=chunks))
            response = self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT))
            end = trailer_frame(OK_TRAILERS)
            self.assertEqual(response.body, base64.b64encode(message) + base64.b64encode(end), size)

    def test_piecesAcrossMessages(self) -> None:
        """
        Pieces that cut messages anywhere still decode to the messages and
        the trailer frame.
        """
        body = frame(b"one") + frame(b"") + frame(b"three!")
        gateway = harness(grpc_service(chunks=[body[:2], body[2:10], body[10:11], body[11:]]))
        response = self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT))
        self.assertEqual(decode_text(response.body), body + trailer_frame(OK_TRAILERS))

    def test_paddedPieces(self) -> None:
        """
        A request made of several padded base64 pieces (a client flushing
        mid-stream), or whose last piece lacks its padding, is decoded.
        """
        body = frame(b"x") + frame(b"yz")
        pieces = base64.b64encode(body[:5]) + base64.b64encode(body[5:])
        self.assertIn(b"=", pieces[:-2])
        for text in (pieces, base64.b64encode(body).rstrip(b"=")):
            gateway = harness()
            response = self.successResultOf(call(gateway, "application/grpc-web-text", text))
            self.assertEqual(response.status, 200)
            self.assertEqual(gateway.upstream_requests[0].body, body)

    def test_largeBody(self) -> None:
        """
        A large text body (spooled to disk by the gateway) is decoded whole.
        """
        body = frame(bytes(range(256)) * 2000)
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web-text", base64.b64encode(body)))
        self.assertEqual(response.status, 200)
        self.assertEqual(gateway.upstream_requests[0].body, body)

    def test_notBase64(self) -> None:
        """
        A text body that is not base64 is answered 400; the service is not
        called.
        """
        for text in (b"AAAA AAYKBGhleWE=", b"AAAAAAYKBGhleWE=\r\n", b"AAAA-_YKBGhleWE=", b"AA=AAAYK", b"AAAAA",
                     b"AAA===", b"==", b"AAAAAAYKBGhleWE=A", b"\x00\xff"):
            gateway = harness()
            response = self.successResultOf(call(gateway, "application/grpc-web-text", text))
            self.assertEqual((response.status, response.body), (400, NOT_BASE64.encode()), text)
            self.assertEqual(gateway.upstream_requests, [], text)


class TextEncoderTests(SynchronousTestCase):
    """
    L{TextEncoder}: base64 for a body that comes in pieces.
    """

    def test_holdsPartOfAQuantum(self) -> None:
        """
        Inside a frame, what does not fill 3 bytes waits for the next piece.
        """
        encoder = TextEncoder()
        message = frame(b"abcdef")
        self.assertEqual(encoder.encode(message[:4]), base64.b64encode(message[:3]))
        self.assertEqual(encoder.encode(message[4:5]), b"")
        self.assertEqual(encoder.encode(message[5:]), base64.b64encode(message[3:]))

    def test_flushesAtFrameEnd(self) -> None:
        """
        A piece that ends a frame is sent whole, padded: a streamed message
        does not wait for the next one.
        """
        encoder = TextEncoder()
        first, second = frame(b"ab"), frame(b"")
        self.assertEqual(encoder.encode(first), base64.b64encode(first))
        self.assertEqual(encoder.encode(second[:2]), b"")
        self.assertEqual(encoder.encode(second[2:]), base64.b64encode(second))

    def test_finish(self) -> None:
        """
        C{finish} sends what was held with the tail.
        """
        encoder = TextEncoder()
        self.assertEqual(encoder.encode(b"\x00\x00"), b"")
        self.assertEqual(encoder.finish(b"end"), base64.b64encode(b"\x00\x00end"))


class TrailerTests(SynchronousTestCase):
    """
    The service's trailers end the body as a trailer frame.
    """

    def test_frameBytes(self) -> None:
        """
        Flag 0x80, 4-byte big-endian length, C{name:value\\r\\n} lines with
        lower-case names, metadata included.
        """
        trailers = [(b"Grpc-Status", b"3"), (b"grpc-message", b"bad thing"), (b"X-Meta", b"v")]
        block = b"grpc-status:3\r\ngrpc-message:bad thing\r\nx-meta:v\r\n"
        self.assertEqual(trailer_frame(trailers), b"\x80" + len(block).to_bytes(4, "big") + block)
        gateway = harness(grpc_service(trailers=trailers))
        response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertEqual(response.body, HELLO_REPLY + b"\x80\x00\x00\x00\x31" + block)

    def test_lineBreakInValue(self) -> None:
        """
        A line break in a trailer's value cannot add a line to the frame.
        """
        self.assertEqual(trailer_frame([(b"a", b"x\r\nb:y")]), b"\x80\x00\x00\x00\x0aa:x  b:y\r\n")

    def test_trailersEmptied(self) -> None:
        """
        Once in the body, C{ctx.response.trailers} is emptied (the plugins
        after grpc-web, and the client, see none).
        """
        watch = TrailerWatch()
        gateway = harness(plugins=[watch], configs=[("trailer-watch", {})])
        self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertEqual(watch.seen, [[]])

    def test_trailersOnly(self) -> None:
        """
        A trailers-only answer (C{grpc-status} in the headers, no body) still
        ends with a trailer frame, made from those headers.
        """
        headers = {"Content-Type": "application/grpc", "grpc-status": "5", "grpc-message": "no such greeting"}
        gateway = harness(grpc_service(body=b"", trailers=None, headers=headers))
        response = self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT))
        expected = trailer_frame([(b"grpc-status", b"5"), (b"grpc-message", b"no such greeting")])
        self.assertEqual(base64.b64decode(response.body), expected)

    def test_noStatus(self) -> None:
        """
        An answer with no C{grpc-status} at all gets the one Kong gives its
        HTTP status (200: OK with no message, as Kong's grpc-web; 503:
        UNAVAILABLE; 404: NOT_FOUND).
        """
        for http, status in ((200, b"grpc-status:0\r\ngrpc-message:\r\n"),
                             (503, b"grpc-status:14\r\ngrpc-message:Unavailable\r\n"),
                             (404, b"grpc-status:5\r\ngrpc-message:NotFound\r\n")):
            gateway = harness(grpc_service(body=b"", trailers=None, status=http))
            response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
            self.assertEqual(response.body, b"\x80" + len(status).to_bytes(4, "big") + status)


class ContentTypeTests(SynchronousTestCase):
    """
    Which requests are gRPC-Web.
    """

    def test_caseAndParameters(self) -> None:
        """
        The media type is compared without case or parameters; the answer
        has it in lower case, without them.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "Application/GRPC-Web-Text; charset=utf-8", HELLO_REQUEST_TEXT))
        self.assertEqual(gateway.upstream_requests[0].body, HELLO_REQUEST)
        self.assertEqual(response.body, KONG_TEXT_ANSWER)
        self.assertEqual(response.header("content-type"), "application/grpc-web-text")

    def test_otherTypes(self) -> None:
        """
        Another type, or none, is answered 400 with Kong's message; the
        service is not called.
        """
        for content_type in ("application/json", "text/plain", "application/grpc", None, "application/grpc-web-texts"):
            gateway = harness()
            response = self.successResultOf(call(gateway, content_type, HELLO_REQUEST))
            self.assertEqual((response.status, response.body), (400, NEEDS_PROTO.encode()), content_type)
            self.assertEqual(response.header("access-control-allow-origin"), "*")
            self.assertEqual(gateway.upstream_requests, [])

    def test_otherTypesWithProto(self) -> None:
        """
        With a C{proto}, a type that is not gRPC-Web is still answered 400.
        """
        gateway = harness(proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "text/plain", HELLO_REQUEST))
        self.assertEqual((response.status, response.body), (400, NEEDS_PROTO.encode()))
        self.assertEqual(gateway.upstream_requests, [])


class PreflightTests(SynchronousTestCase):
    """
    OPTIONS requests and Access-Control-Allow-Origin.
    """

    def test_options(self) -> None:
        """
        Every OPTIONS request is answered 200 C{OK} with Kong's CORS
        headers; the service is not called.
        """
        gateway = harness()
        response = self.successResultOf(gateway.request("OPTIONS", "/hello.HelloService/SayHello", headers={
            "Origin": "https://app.test", "Access-Control-Request-Method": "POST"}))
        self.assertEqual((response.status, response.body), (200, b"OK"))
        self.assertEqual(response.header("content-type"), "application/grpc-web-text+proto")
        self.assertEqual(response.header("access-control-allow-origin"), "*")
        self.assertEqual(response.header("access-control-allow-methods"), "POST")
        self.assertEqual(response.header("access-control-allow-headers"), "content-type,x-grpc-web,x-user-agent")
        self.assertEqual(gateway.upstream_requests, [])

    def test_allowOriginHeader(self) -> None:
        """
        C{allow_origin_header} is the preflight's and the answers'
        C{Access-Control-Allow-Origin}.
        """
        gateway = harness(allow_origin_header="https://app.test")
        preflight = self.successResultOf(gateway.request("OPTIONS", "/x"))
        response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertEqual(preflight.header("access-control-allow-origin"), "https://app.test")
        self.assertEqual(response.header("access-control-allow-origin"), "https://app.test")


class OtherAnswerTests(SynchronousTestCase):
    """
    Answers that are not the service's are not translated.
    """

    def assertUntranslated(self, response: HarnessResponse, status: int) -> None:
        self.assertEqual(response.status, status)
        self.assertNotIn(b"\x80", response.body)
        self.assertFalse((response.header("content-type") or "").startswith("application/grpc-web"))
        self.assertEqual(response.header("access-control-allow-origin"), "*")

    def test_exit(self) -> None:
        """
        A later plugin's answer (request-termination) keeps its body and
        type.
        """
        gateway = harness(plugins=[RequestTermination()], configs=[("request-termination", {"status_code": 503})])
        response = self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST))
        self.assertUntranslated(response, 503)

    def test_upstreamFailure(self) -> None:
        """
        The gateway's own error answer (the service failed) is not
        translated.
        """
        def broken(request: UpstreamRequestSeen) -> UpstreamAnswer:
            raise RuntimeError("down")

        response = self.successResultOf(call(harness(broken), "application/grpc-web", HELLO_REQUEST))
        self.assertUntranslated(response, 502)


class PathTests(SynchronousTestCase):
    """
    The path the service gets.
    """

    def test_httpService(self) -> None:
        """
        An http service gets the path after the route's C{strip_path}, as
        Kong sends it.
        """
        gateway = harness(route={"paths": ["/prefix"]})
        self.successResultOf(call(gateway, "application/grpc-web", HELLO_REQUEST,
                                  path="/prefix/hello.HelloService/SayHello"))
        self.assertEqual(gateway.upstream_requests[0].path, "/hello.HelloService/SayHello")

    def grpc_harness(self, **config: Any) -> GatewayHarness:
        # (text calls: the harness's fake upstream cannot take the
        # streamed body a grpc service gets from a binary call yet)
        try:
            return GatewayHarness([GrpcWeb()], configs=[(NAME, config)], upstream=grpc_service(),
                                  route={"paths": ["/prefix"]}, service={"protocol": "grpc"})
        except SchemaViolation:
            raise SkipTest("services cannot have protocol grpc yet") from None

    def test_grpcService(self) -> None:
        """
        A grpc service gets the client's path (Kong's C{grpc_pass}).
        """
        gateway = self.grpc_harness()
        self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT,
                                  path="/prefix/hello.HelloService/SayHello"))
        self.assertEqual(gateway.upstream_requests[0].path, "/prefix/hello.HelloService/SayHello")

    def test_passStrippedPath(self) -> None:
        """
        With C{pass_stripped_path}, a grpc service gets the path after the
        route's C{strip_path}.
        """
        gateway = self.grpc_harness(pass_stripped_path=True)
        self.successResultOf(call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT,
                                  path="/prefix/hello.HelloService/SayHello"))
        self.assertEqual(gateway.upstream_requests[0].path, "/hello.HelloService/SayHello")


class WireTests(TestCase):
    """
    The request on the wire, through echogate's HTTP/1.1 client to a real
    server on 127.0.0.1.
    """

    async def test_decodedLength(self) -> None:
        """
        A decoded text body goes with its own Content-Length, not the
        client's, and the client's C{TE} is replaced.
        """
        upstream, port = start_upstream(self)
        client = LeanUpstreamClient(reactor)
        self.addCleanup(client.close)
        gateway = GatewayHarness([GrpcWeb()], configs=[(NAME, {})], upstream=client,
                                 service={"host": "127.0.0.1", "port": port})
        response = await call(gateway, "application/grpc-web-text", HELLO_REQUEST_TEXT, TE="gzip")
        self.assertEqual(response.status, 200)
        [seen] = upstream.seen
        self.assertEqual((seen["method"], seen["body"].encode("latin-1")), ("POST", HELLO_REQUEST))
        self.assertEqual(seen["headers"]["content-length"], [str(len(HELLO_REQUEST))])
        self.assertEqual(seen["headers"]["content-type"], ["application/grpc"])
        self.assertEqual(seen["headers"]["te"], ["trailers"])


class HeadTests(SynchronousTestCase):
    """
    A HEAD request's answer has no body, so no trailer frame either.
    """

    def test_head(self) -> None:
        """
        The answer to HEAD has the gRPC-Web type and no body.
        """
        gateway = harness()
        response = self.successResultOf(call(gateway, "application/grpc-web", b"", method="HEAD"))
        self.assertEqual((response.status, response.body), (200, b""))
        self.assertEqual(response.header("content-type"), "application/grpc-web")


class JsonModeTests(SynchronousTestCase):
    """
    Kong's JSON types, transcoded with a C{.proto} file.
    """

    def test_framedJson(self) -> None:
        """
        application/grpc-web+json: a frame of JSON goes to the service as a
        frame of protobuf; its replies come back as frames of JSON, then the
        trailer frame.
        """
        gateway = harness(proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/grpc-web+json", frame(HELLO_JSON)))
        [seen] = gateway.upstream_requests
        self.assertEqual((seen.body, seen.header("content-type")), (HELLO_REQUEST, "application/grpc"))
        self.assertEqual(response.body, frame(REPLY_JSON) + trailer_frame(OK_TRAILERS))
        self.assertEqual(response.header("content-type"), "application/grpc-web+json")

    def test_textJson(self) -> None:
        """
        application/grpc-web-text+json: the same, in base64.
        """
        gateway = harness(proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/grpc-web-text+json",
                                             base64.b64encode(frame(HELLO_JSON))))
        self.assertEqual(gateway.upstream_requests[0].body, HELLO_REQUEST)
        self.assertEqual(decode_text(response.body), frame(REPLY_JSON) + trailer_frame(OK_TRAILERS))

    def test_plainJson(self) -> None:
        """
        application/json: one bare JSON message each way, no trailer frame;
        the trailers are left to the gateway.
        """
        watch = TrailerWatch()
        gateway = harness(plugins=[watch], configs=[("trailer-watch", {})], proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON))
        self.assertEqual(gateway.upstream_requests[0].body, HELLO_REQUEST)
        self.assertEqual(response.body, REPLY_JSON)
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(watch.seen, [OK_TRAILERS])

    def test_streamedReplies(self) -> None:
        """
        Replies cut anywhere come back whole, one JSON frame each, with the
        fields' names as in the C{.proto}.
        """
        body = HELLO_REPLY + frame(b"\x0a\x03bye\x12\x02me")
        gateway = harness(grpc_service(chunks=[body[:3], body[3:16], body[16:]]), proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/grpc-web+json", frame(HELLO_JSON)))
        replies = frame(REPLY_JSON) + frame(b'{"reply":"bye","reply_from":"me"}')
        self.assertEqual(response.body, replies + trailer_frame(OK_TRAILERS))

    def test_unknownPath(self) -> None:
        """
        A path the file does not declare is answered 400 (Kong's message).
        """
        gateway = harness(proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON, path="/hello.HelloService/Nope"))
        self.assertEqual((response.status, response.body), (400, b'Unknown path "/hello.HelloService/Nope"'))
        self.assertEqual(gateway.upstream_requests, [])

    def test_passStrippedPath(self) -> None:
        """
        The method is looked up by the client's path, or with
        C{pass_stripped_path} by the path after C{strip_path}.
        """
        path = "/prefix/hello.HelloService/SayHello"
        gateway = harness(route={"paths": ["/prefix"]}, proto=HELLO_PROTO)
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON, path=path))
        self.assertEqual((response.status, response.body), (400, f'Unknown path "{path}"'.encode()))
        gateway = harness(route={"paths": ["/prefix"]}, proto=HELLO_PROTO, pass_stripped_path=True)
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON, path=path))
        self.assertEqual((response.status, response.body), (200, REPLY_JSON))

    def test_badRequests(self) -> None:
        """
        JSON that does not fit the request type, or a framed body that is
        not one whole frame, is answered 400; the service is not called.
        """
        for content_type, body, message in (
                ("application/json", b'{"greeting": 3}', b"the request body is not a valid hello.HelloRequest: "),
                ("application/json", b"{", b"the request body is not a valid hello.HelloRequest: "),
                ("application/json", b"\xff", b"the request body is not a valid hello.HelloRequest: "),
                ("application/grpc-web+json", frame(HELLO_JSON)[:-1], NO_MESSAGE.encode()),
                ("application/grpc-web+json", b"\x01" + frame(HELLO_JSON)[1:], NO_MESSAGE.encode())):
            gateway = harness(proto=HELLO_PROTO)
            response = self.successResultOf(call(gateway, content_type, body))
            self.assertEqual(response.status, 400, body)
            self.assertTrue(response.body.startswith(message), response.body)
            self.assertEqual(gateway.upstream_requests, [])

    def test_noProtoFile(self) -> None:
        """
        A C{proto} that cannot be read is answered 500 and logged.
        """
        gateway = harness(proto=HELLO_PROTO + ".missing")
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON))
        self.assertEqual((response.status, response.json()), (500, {"message": "An unexpected error occurred"}))
        self.assertEqual(gateway.upstream_requests, [])

    def test_noGrpcTools(self) -> None:
        """
        Without grpcio-tools, JSON calls are answered 500.
        """
        def unavailable(path: str) -> dict[str, Method]:
            raise TranscodingUnavailable("JSON transcoding needs the grpcio-tools package")

        gateway = GatewayHarness([GrpcWeb(ProtoFiles(unavailable))], configs=[(NAME, {"proto": HELLO_PROTO})],
                                 upstream=grpc_service())
        response = self.successResultOf(call(gateway, "application/json", HELLO_JSON))
        self.assertEqual(response.status, 500)

    def test_compiledOnce(self) -> None:
        """
        A file is compiled once, and a failure is not kept.
        """
        calls = []

        def compiling(path: str) -> dict[str, Method]:
            calls.append(path)
            if len(calls) == 1:
                raise ProtoError("not yet")
            return methods_of(path)

        protos = ProtoFiles(compiling)
        self.assertRaises(ProtoError, protos.methods, HELLO_PROTO)
        self.assertIs(protos.methods(HELLO_PROTO), protos.methods(HELLO_PROTO))
        self.assertEqual(calls, [HELLO_PROTO, HELLO_PROTO])
