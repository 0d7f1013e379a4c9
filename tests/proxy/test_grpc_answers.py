"""
The gateway's own answers to gRPC calls (L{echogate.pdk.grpc}, used by
L{echogate.proxy.answers.error_answer} and C{ctx.exit}), and a gRPC
route's refusals of requests it does not take
(L{echogate.proxy.answers.grpc_route_mismatch}), through
L{GatewayHarness}: Kong 3's C{kong.response} and runloop.

A harness request is told it came over HTTP/2 with C{version=b"HTTP/2"}.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.key_auth import KeyAuth
from echogate.bundled.rate_limiting import RateLimiting
from echogate.pdk.grpc import GRPC_NAMES, encode_grpc_answer, grpc_message, grpc_status
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, HarnessResponse, UpstreamAnswer, UpstreamRequestSeen

H2 = b"HTTP/2"
GRPC = {"Content-Type": "application/grpc"}


def _exits(status: int, body: Any = None, headers: dict[str, str] | None = None) -> GatewayPlugin:
    """
    A plugin that answers every request in access with C{ctx.exit(status,
    body, headers)}.
    """

    class Exits(GatewayPlugin):
        name = "exits"
        priority = 1000
        version = "1.0.0"
        config_schema = Record({})
        answer = (status, body, headers)

        def access(self, ctx: Any, config: Any) -> None:
            ctx.exit(*self.answer)

    return Exits()


class _Header(GatewayPlugin):
    """
    A plugin that adds C{x-seen: yes} to every response it sees.
    """

    name = "seen"
    priority = 10
    version = "1.0.0"
    config_schema = Record({})

    def header_filter(self, ctx: Any, config: Any) -> None:
        ctx.response.set_header("x-seen", "yes")


def _broken(request: UpstreamRequestSeen) -> UpstreamAnswer:
    raise ConnectionRefusedError()


class GrpcTestCase(SynchronousTestCase):
    """
    Helpers: a harness request, and what a gRPC answer must look like.
    """

    def call(self, harness: GatewayHarness, path: str = "/echo.Echo/Say", headers: dict[str, str] | None = None,
             version: bytes | None = H2, method: str = "POST", body: bytes = b"\0\0\0\0\0") -> HarnessResponse:
        sent = GRPC if headers is None else headers
        response: HarnessResponse = self.successResultOf(
            harness.request(method, path, headers=sent, body=body, version=version))
        return response

    def assertGrpcAnswer(self, response: HarnessResponse, status: int, code: int, message: str) -> None:
        """
        C{response} is a gRPC answer: C{status} kept, C{application/grpc},
        C{grpc-status} C{code} and C{grpc-message} C{message}, no body.
        """
        self.assertEqual(
            (response.status, response.header("content-type"), response.header("grpc-status"),
             response.header("grpc-message"), response.header("content-length"), response.body),
            (status, "application/grpc", str(code), message, "0", b""))


class ErrorAnswerTests(GrpcTestCase):
    """
    The gateway's errors, answered to a gRPC call.
    """

    def test_noRoute(self) -> None:
        """
        No route: 404, C{grpc-status} 5 (NOT_FOUND), the message as
        C{grpc-message}.
        """
        harness = GatewayHarness([], route={"paths": ["/other"]})
        self.assertGrpcAnswer(self.call(harness), 404, 5, "no Route matched with those values")

    def test_badUpstream(self) -> None:
        """
        A service that cannot be reached: 502, C{grpc-status} 14
        (UNAVAILABLE, as gRPC maps 502; Kong's table lacks it).
        """
        harness = GatewayHarness([], upstream=_broken)
        self.assertGrpcAnswer(self.call(harness), 502, 14,
                              "An invalid response was received from the upstream server")

    def test_plainRequestGetsJson(self) -> None:
        """
        The same error to an ordinary request is Kong's JSON.
        """
        harness = GatewayHarness([], route={"paths": ["/other"]})
        response = self.call(harness, headers={})
        self.assertEqual((response.status, response.json(), response.header("grpc-status")),
                         (404, {"message": "no Route matched with those values"}, None))

    def test_notHttp2(self) -> None:
        """
        A gRPC content type over HTTP/1.1 is not a gRPC call (Kong asks for
        HTTP/2 too): JSON.
        """
        harness = GatewayHarness([], route={"paths": ["/other"]})
        response = self.call(harness, version=None)
        self.assertEqual((response.status, response.header("grpc-status"), response.json()),
                         (404, None, {"message": "no Route matched with those values"}))

    def test_contentTypeRule(self) -> None:
        """
        Kong's rule is a case-sensitive prefix test of the first
        C{Content-Type}: C{application/grpc+proto} and even
        C{application/grpcfoo} are gRPC calls; C{Application/GRPC},
        C{text/plain; application/grpc} and none are not.
        """
        harness = GatewayHarness([], route={"paths": ["/other"]})
        for value, grpc in [("application/grpc+proto", True), ("application/grpcfoo", True),
                            ("application/grpc-web", True), ("Application/GRPC", False),
                            ("text/plain; application/grpc", False), (" ", False)]:
            response = self.call(harness, headers={"Content-Type": value})
            self.assertEqual(response.header("grpc-status"), "5" if grpc else None, value)
        response = self.call(harness, headers={})
        self.assertIsNone(response.header("grpc-status"))


class ExitTests(GrpcTestCase):
    """
    A plugin's C{ctx.exit} to a gRPC call, as Kong's C{kong.response.exit}.
    """

    def test_keyAuth(self) -> None:
        """
        key-auth without a key on a gRPC route: 401, C{grpc-status} 16
        (UNAUTHENTICATED), its message as C{grpc-message}; its
        C{WWW-Authenticate} kept.
        """
        harness = GatewayHarness([KeyAuth()], [("key-auth", {})],
                                 route={"protocols": ["grpc"], "paths": ["/"]})
        response = self.call(harness)
        self.assertGrpcAnswer(response, 401, 16, "No API key found in request")
        self.assertEqual(response.header("www-authenticate"), "Key")
        self.assertEqual(harness.upstream_requests, [])

    def test_rateLimiting(self) -> None:
        """
        rate-limiting over its limit: 429, C{grpc-status} 8
        (RESOURCE_EXHAUSTED).
        """
        harness = GatewayHarness([RateLimiting()], [("rate-limiting", {"minute": 1, "policy": "local"})],
                                 route={"protocols": ["grpc"], "paths": ["/"]})
        first = self.call(harness)
        self.assertEqual(first.status, 200, first.body)
        self.assertGrpcAnswer(self.call(harness), 429, 8, "API rate limit exceeded")

    def test_filtersRun(self) -> None:
        """
        The plugins' C{header_filter} still runs on a gRPC exit.
        """
        harness = GatewayHarness([_exits(403, {"message": "go away"}), _Header()],
                                 [("exits", {}), ("seen", {})])
        response = self.call(harness)
        self.assertGrpcAnswer(response, 403, 7, "go away")
        self.assertEqual(response.header("x-seen"), "yes")

    def test_textBody(self) -> None:
        """
        A text body is the C{grpc-message}, not a body.
        """
        harness = GatewayHarness([_exits(503, "down for a while")], [("exits", {})])
        self.assertGrpcAnswer(self.call(harness), 503, 14, "down for a while")

    def test_noBody(self) -> None:
        """
        Without a body, the C{grpc-message} is the code's name.
        """
        harness = GatewayHarness([_exits(418)], [("exits", {})])
        self.assertGrpcAnswer(self.call(harness), 418, 3, "InvalidArgument")

    def test_ownGrpcStatus(self) -> None:
        """
        A C{grpc-status} the plugin sets is kept, with its own message.
        """
        harness = GatewayHarness([_exits(200, None, {"grpc-status": "9", "grpc-message": "later"})],
                                 [("exits", {})])
        self.assertGrpcAnswer(self.call(harness), 200, 9, "later")

    def test_plainRequest(self) -> None:
        """
        The same exit to an ordinary request is JSON.
        """
        harness = GatewayHarness([_exits(403, {"message": "go away"})], [("exits", {})])
        response = self.call(harness, headers={})
        self.assertEqual((response.status, response.json(), response.header("grpc-status")),
                         (403, {"message": "go away"}, None))


class RouteMismatchTests(GrpcTestCase):
    """
    Kong's router picks a route without looking at the request's protocol;
    a gRPC route then refuses what it does not take.
    """

    def test_grpcCall(self) -> None:
        """
        A gRPC call over HTTP/2 on a C{grpc} route goes to the service,
        its path whole (a gRPC route does not strip).
        """
        harness = GatewayHarness([], route={"protocols": ["grpc"], "paths": ["/echo.Echo"]})
        response = self.call(harness)
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual([seen.path for seen in harness.upstream_requests], ["/echo.Echo/Say"])

    def test_notGrpc(self) -> None:
        """
        An ordinary request on a gRPC route: 415 C{{"message": "Non-gRPC
        request matched gRPC route"}}, also with a content type that is
        gRPC's but for its case.
        """
        harness = GatewayHarness([], route={"protocols": ["grpc", "grpcs"], "paths": ["/"]})
        for headers in ({}, {"Content-Type": "Application/GRPC"}, {"Content-Type": "application/json"}):
            response = self.call(harness, headers=headers)
            self.assertEqual((response.status, response.json()),
                             (415, {"message": "Non-gRPC request matched gRPC route"}), headers)
        self.assertEqual(harness.upstream_requests, [])

    def test_notHttp2(self) -> None:
        """
        A gRPC call over HTTP/1.1 on a gRPC route: 426 asking for HTTP/2.
        """
        harness = GatewayHarness([], route={"protocols": ["grpc"], "paths": ["/"]})
        response = self.call(harness, version=None)
        self.assertEqual((response.status, response.json(), response.header("upgrade")),
                         (426, {"message": "Please use HTTP2 protocol"}, "HTTP/2"))
        self.assertEqual(harness.upstream_requests, [])

    def test_grpcsOverPlain(self) -> None:
        """
        A gRPC call over plain HTTP on a C{grpcs}-only route: 200 with
        C{grpc-status} 1 (CANCELLED) and Kong's message.
        """
        harness = GatewayHarness([], route={"protocols": ["grpcs"], "paths": ["/"]})
        self.assertGrpcAnswer(self.call(harness), 200, 1, "gRPC request matched gRPCs route")
        self.assertEqual(harness.upstream_requests, [])

    def test_httpRouteTakesGrpc(self) -> None:
        """
        An http route takes a gRPC call (Kong does not refuse it).
        """
        harness = GatewayHarness([], route={"paths": ["/"]})
        self.assertEqual(self.call(harness).status, 200)


class MappingTests(SynchronousTestCase):
    """
    L{grpc_status}, L{grpc_message} and L{encode_grpc_answer} alone.
    """

    def test_table(self) -> None:
        """
        Kong's table, and its fallbacks by class.
        """
        self.assertEqual({s: grpc_status(s) for s in (200, 400, 401, 403, 404, 409, 429, 499, 500, 501, 503, 504)},
                         {200: 0, 400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 500: 13, 501: 12,
                          503: 14, 504: 4})
        self.assertEqual([grpc_status(s) for s in (502, 599, 413, 426, 204, 301, 100)], [14, 13, 3, 3, 0, 2, 2])
        self.assertEqual((GRPC_NAMES[16], GRPC_NAMES[1]), ("Unauthenticated", "Canceled"))

    def test_messageEncoding(self) -> None:
        """
        Printable ASCII stays; C{%}, control characters and non-ASCII are
        percent-encoded (so no header can be split).
        """
        self.assertEqual(grpc_message("No API key found"), "No API key found")
        self.assertEqual(grpc_message("100% é\r\nx"), "100%25 %C3%A9%0D%0Ax")

    def test_grpcOutput(self) -> None:
        """
        An exit that names a gRPC content type keeps its bytes body, and a
        table body there is refused, as in Kong.
        """
        headers = {"content-type": "application/grpc+proto"}
        self.assertEqual(encode_grpc_answer(200, b"\0\0\0\0\0", headers, False), b"\0\0\0\0\0")
        self.assertEqual(headers, {"content-type": "application/grpc+proto", "grpc-status": "0",
                                   "grpc-message": "OK"})
        with self.assertRaises(ValueError):
            encode_grpc_answer(200, {"a": 1}, {"Content-Type": "application/grpc"}, False)

    def test_otherContentType(self) -> None:
        """
        On a gRPC call, an exit that names another content type is an
        ordinary answer.
        """
        self.assertIsNone(encode_grpc_answer(403, {"message": "x"}, {"Content-Type": "text/html"}, True))
        self.assertIsNone(encode_grpc_answer(403, {"message": "x"}, {}, False))

    def test_tableWithoutMessage(self) -> None:
        """
        A table body without a string message is dropped: the code's name.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_grpc_answer(401, {"message": 5}, headers, True), b"")
        self.assertEqual(headers["grpc-message"], "Unauthenticated")
