"""
grpc-web (L{echogate.bundled.grpc_web}) in front of a real gRPC service:
a gRPC-Web client over HTTP/1.1 (L{GatewayHarness}), echogate's HTTP/2
client (L{H2UpstreamClient}) and the grpcio test service of
L{tests.h2.grpcservice} on 127.0.0.1.
"""
from __future__ import annotations

import base64
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from echogate.bundled.grpc_web import GrpcWeb, decode_text
from echogate.testing import GatewayHarness, HarnessResponse
from echogate.upstream.h2client import H2UpstreamClient
from tests.h2.grpcservice import echo_modules, start_grpc_server

UNARY = "/echotest.Echo/Unary"


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """
    The gRPC-Web frames of C{body}: (flag, payload) pairs.
    """
    out = []
    while body:
        length = int.from_bytes(body[1:5], "big")
        out.append((body[0], body[5:5 + length]))
        body = body[5 + length:]
    return out


class GrpcWebServiceTests(unittest.TestCase):
    """
    Calls through grpc-web reach the service as gRPC, and its replies and
    trailers come back as gRPC-Web.
    """

    def setUp(self) -> None:
        self.messages, _ = echo_modules()
        server = start_grpc_server(self)
        client = H2UpstreamClient(reactor)
        self.addCleanup(client.close)
        self.gateway = GatewayHarness([GrpcWeb()], configs=[("grpc-web", {})], upstream=client,
                                      service={"protocol": "grpc", "host": "127.0.0.1", "port": server.port},
                                      route={"paths": ["/echotest.Echo/"], "strip_path": False})

    async def call(self, content_type: str, request: Any) -> HarnessResponse:
        data = request.SerializeToString()
        body = b"\x00" + len(data).to_bytes(4, "big") + data
        if "text" in content_type:
            body = base64.b64encode(body)
        response: HarnessResponse = await self.gateway.request("POST", UNARY, headers={"Content-Type": content_type},
                                                               body=body)
        return response

    async def test_binary(self) -> None:
        """
        A binary call: the reply's frame, then the service's trailers
        (status and trailing metadata) in a trailer frame.
        """
        request = self.messages.EchoRequest(message="hi", trailing={"x-meta": "v"})
        response = await self.call("application/grpc-web+proto", request)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "application/grpc-web+proto")
        [(flag, reply), (end, trailers)] = frames(response.body)
        self.assertEqual((flag, end), (0, 0x80))
        self.assertEqual(self.messages.EchoReply.FromString(reply).message, "hi")
        lines = trailers.split(b"\r\n")
        self.assertIn(b"grpc-status:0", lines)
        self.assertIn(b"x-meta:v", lines)

    async def test_textError(self) -> None:
        """
        A text call that the service ends with an error status: its
        status and message in the trailer frame, base64-encoded.
        """
        request = self.messages.EchoRequest(message="x", status=5, status_message="no such thing")
        response = await self.call("application/grpc-web-text", request)
        self.assertEqual(response.header("content-type"), "application/grpc-web-text")
        [(end, trailers)] = frames(decode_text(response.body))
        self.assertEqual(end, 0x80)
        lines = trailers.split(b"\r\n")
        self.assertIn(b"grpc-status:5", lines)
        self.assertIn(b"grpc-message:no such thing", lines)
