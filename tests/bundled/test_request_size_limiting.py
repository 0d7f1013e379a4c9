"""
Tests for the bundled request-size-limiting plugin
(L{echogate.bundled.request_size_limiting}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.request_size_limiting import RequestSizeLimiting
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, HarnessResponse, _parse_response

NAME = "request-size-limiting"


def harness(**config: Any) -> GatewayHarness:
    return GatewayHarness([RequestSizeLimiting()], configs=[(NAME, config)])


def send_raw(gateway: GatewayHarness, head: str, body: bytes = b"") -> HarnessResponse:
    """
    Send a request written by hand (for chunked bodies and missing lengths,
    which L{GatewayHarness.request} does not write) and parse the answer.
    """
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    protocol = gateway.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    protocol.dataReceived(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
    raw = transport.value()
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    return _parse_response(raw[len(interim):] if raw.startswith(interim) else raw)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


class RequestSizeLimitingTests(SynchronousTestCase):
    """
    request-size-limiting answers 413 for bodies over the limit.
    """

    def request(self, gateway: GatewayHarness, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.successResultOf(gateway.request("POST", "/", headers=headers, body=body))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        plugin = RequestSizeLimiting()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 951))

    def test_underLimit(self) -> None:
        """
        A body of exactly the limit goes to the service.
        """
        gateway = harness(allowed_payload_size=10, size_unit="bytes")
        response = self.request(gateway, b"x" * 10)
        self.assertEqual(response.status, 200)
        self.assertEqual(gateway.upstream_requests[0].body, b"x" * 10)

    def test_overLimit(self) -> None:
        """
        One byte more is refused with 413 and Kong's message, and the
        service is not called.
        """
        gateway = harness(allowed_payload_size=10, size_unit="bytes")
        response = self.request(gateway, b"x" * 11)
        self.assertEqual(response.status, 413)
        self.assertEqual(response.json(), {"message": "Request size limit exceeded"})
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(gateway.upstream_requests, [])

    def test_units(self) -> None:
        """
        Kilobytes and megabytes are binary units (1024 and 1024 * 1024 bytes).
        """
        for unit, size in [("kilobytes", 1024), ("megabytes", 1024 * 1024)]:
            gateway = harness(allowed_payload_size=1, size_unit=unit)
            self.assertEqual(self.request(gateway, b"x" * size).status, 200, unit)
            self.assertEqual(self.request(gateway, b"x" * (size + 1)).status, 413, unit)

    def test_defaultLimit(self) -> None:
        """
        The default limit (128 megabytes) lets a one-megabyte body through.
        """
        gateway = harness()
        self.assertEqual(self.request(gateway, b"x" * 1024 * 1024).status, 200)

    def test_nullLimit(self) -> None:
        """
        A null C{allowed_payload_size} limits nothing.
        """
        gateway = harness(allowed_payload_size=None, size_unit="bytes")
        self.assertEqual(self.request(gateway, b"x" * 100).status, 200)

    def test_expectContinue(self) -> None:
        """
        A client that sent C{Expect: 100-continue} gets 417 instead, as in Kong.
        """
        gateway = harness(allowed_payload_size=1, size_unit="bytes")
        head = "POST / HTTP/1.1\nHost: g\nContent-Length: 2\nExpect: 100-continue\n"
        response = send_raw(gateway, head, b"ab")
        self.assertEqual(response.status, 417)
        self.assertEqual(response.json(), {"message": "Request size limit exceeded"})

    def test_chunkedByReceivedSize(self) -> None:
        """
        A chunked body (no Content-Length) is judged by the size received.
        """
        gateway = harness(allowed_payload_size=5, size_unit="bytes")
        head = "POST / HTTP/1.1\nHost: g\nTransfer-Encoding: chunked\n"
        self.assertEqual(send_raw(gateway, head, chunked(b"abc", b"de")).status, 200)
        self.assertEqual(len(gateway.upstream_requests), 1)
        response = send_raw(gateway, head, chunked(b"abc", b"def"))
        self.assertEqual(response.status, 413)
        self.assertEqual(len(gateway.upstream_requests), 1)

    def test_requireContentLength(self) -> None:
        """
        With C{require_content_length}, a request with neither a length nor
        a chunked body is refused with 411.
        """
        gateway = harness(require_content_length=True)
        response = send_raw(gateway, "GET / HTTP/1.1\nHost: g\n")
        self.assertEqual(response.status, 411)
        self.assertEqual(response.json(), {"message": "A valid Content-Length header is required"})

    def test_requireContentLengthAcceptsChunked(self) -> None:
        """
        A chunked request satisfies C{require_content_length}, as in Kong.
        """
        gateway = harness(require_content_length=True)
        head = "POST / HTTP/1.1\nHost: g\nTransfer-Encoding: chunked\n"
        self.assertEqual(send_raw(gateway, head, chunked(b"abc")).status, 200)

    def test_requireContentLengthAcceptsLength(self) -> None:
        """
        A request with Content-Length (even 0) satisfies C{require_content_length}.
        """
        gateway = harness(require_content_length=True)
        self.assertEqual(send_raw(gateway, "GET / HTTP/1.1\nHost: g\nContent-Length: 0\n").status, 200)

    def test_noBodyPasses(self) -> None:
        """
        Without C{require_content_length}, a request without a body passes.
        """
        gateway = harness(allowed_payload_size=0, size_unit="bytes")
        self.assertEqual(send_raw(gateway, "GET / HTTP/1.1\nHost: g\n").status, 200)


class RequestSizeLimitingSchemaTests(SynchronousTestCase):
    """
    request-size-limiting's config schema.
    """

    schema = RequestSizeLimiting.config_schema

    def violation(self, config: dict) -> dict:
        return self.assertRaises(SchemaViolation, self.schema.validate, config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults: 128 megabytes, Content-Length not required.
        """
        self.assertEqual(self.schema.validate({}), {"allowed_payload_size": 128, "size_unit": "megabytes",
                                                    "require_content_length": False})

    def test_allowedPayloadSizeType(self) -> None:
        """
        C{allowed_payload_size} is an integer.
        """
        self.assertEqual(self.violation({"allowed_payload_size": "10"}),
                         {"allowed_payload_size": "expected an integer"})
        self.assertEqual(self.violation({"allowed_payload_size": 1.5}), {"allowed_payload_size": "expected an integer"})

    def test_sizeUnit(self) -> None:
        """
        C{size_unit} is one of Kong's three units, and cannot be null.
        """
        self.assertEqual(self.violation({"size_unit": "gigabytes"}),
                         {"size_unit": "expected one of: megabytes, kilobytes, bytes"})
        self.assertEqual(self.violation({"size_unit": None}), {"size_unit": "required field missing"})

    def test_requireContentLength(self) -> None:
        """
        C{require_content_length} is a boolean, and cannot be null.
        """
        self.assertEqual(self.violation({"require_content_length": "yes"}),
                         {"require_content_length": "expected a boolean"})
        self.assertEqual(self.violation({"require_content_length": None}),
                         {"require_content_length": "required field missing"})

    def test_unknownField(self) -> None:
        """
        An unknown field is refused.
        """
        self.assertEqual(self.violation({"limit": 1}), {"limit": "unknown field"})
