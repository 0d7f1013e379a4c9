"""
A request body may hold any bytes, whichever piece of the connection's
data it comes in: the channel's bare-LF check (L{echogate.proxy.channel})
reads the head's lines only.
"""
from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen

HEAD = b"POST /x HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: %d\r\n"


def echo_body(request: UpstreamRequestSeen) -> UpstreamAnswer:
    return UpstreamAnswer(200, {"Content-Type": "application/octet-stream"}, request.body)


class BodyLineFeedTests(SynchronousTestCase):
    """
    Line feeds without a carriage return in a body are data.
    """

    def send(self, *pieces: bytes) -> tuple[bytes, GatewayHarness]:
        """
        Send C{pieces} one after the other on one connection; what came
        back.
        """
        gateway = GatewayHarness([], upstream=echo_body)
        channel = gateway.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        for piece in pieces:
            channel.dataReceived(piece)
        self.addCleanup(channel.connectionLost)
        return transport.value(), gateway

    def test_bodyWithHead(self) -> None:
        """
        A body with bare LFs in the same piece as its head is passed on.
        """
        body = b"\x00\n\x04heya\n"
        data, gateway = self.send(HEAD % len(body) + b"\r\n" + body)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual([seen.body for seen in gateway.upstream_requests], [body])

    def test_bodyAfterLastLine(self) -> None:
        """
        A piece that starts with the head's blank line, then a body with
        bare LFs, is passed on.
        """
        body = b"a\nb\n"
        data, gateway = self.send(HEAD % len(body), b"\r\n" + body)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual([seen.body for seen in gateway.upstream_requests], [body])

    def test_bareLineFeedInHead(self) -> None:
        """
        A head line ended by a bare LF is still refused 400, also when a
        body comes with it.
        """
        for raw in (b"POST /x HTTP/1.1\nHost: gateway.test\r\nContent-Length: 1\r\n\r\na",
                    b"POST /x HTTP/1.1\r\nHost: gateway.test\nContent-Length: 1\r\n\r\na"):
            data, gateway = self.send(raw)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
            self.assertEqual(gateway.upstream_requests, [])
