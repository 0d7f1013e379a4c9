"""
The proxy listener's site and requests, over Twisted's test doubles.
"""
from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from echogate.site import GatewayChannel, GatewayRequest, GatewaySite


class ContentFileTests(SynchronousTestCase):
    def request(self, site: GatewaySite) -> GatewayRequest:
        channel = DummyChannel()
        channel.site = site
        return GatewayRequest(channel)

    def test_hookDefined(self) -> None:
        """
        The site defines Twisted's C{getContentFile} hook (without it Twisted
        raises and catches an AttributeError for every request): small
        bodies of known length in memory, others in a temporary file.
        """
        site = GatewaySite(Resource())
        small = site.getContentFile(0)
        self.assertIsInstance(small, io.BytesIO)
        self.assertIsInstance(site.getContentFile(99_999), io.BytesIO)
        for length in (100_000, None):
            spooled = site.getContentFile(length)
            self.addCleanup(spooled.close)
            self.assertNotIsInstance(spooled, io.BytesIO)
            self.assertTrue(hasattr(spooled, "fileno"))

    def test_requestUsesTheSite(self) -> None:
        """
        A request's body file comes from its site's hook.
        """
        site = GatewaySite(Resource())
        marker = io.BytesIO()
        site.getContentFile = lambda length: marker  # type: ignore[method-assign]
        request = self.request(site)
        request.gotLength(10)
        self.assertIs(request.content, marker)

    def test_tooLargeDiscarded(self) -> None:
        """
        A body announced larger than C{max_body_size} is not kept at all.
        """
        request = self.request(GatewaySite(Resource(), max_body_size=5))
        request.gotLength(6)
        self.assertTrue(request._too_large)
        self.assertNotIsInstance(request.content, io.BytesIO)


class _CountingTransport(StringTransport):
    hosts = 0
    peers = 0

    def getHost(self) -> Any:
        self.hosts += 1
        return super().getHost()

    def getPeer(self) -> Any:
        self.peers += 1
        return super().getPeer()


class ChannelTests(SynchronousTestCase):
    def test_addressesOncePerConnection(self) -> None:
        """
        The site's connections are GatewayChannels, which ask the transport
        for its addresses once, however many requests they carry.
        """
        site = GatewaySite(Resource())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.assertIsInstance(channel, GatewayChannel)
        transport = _CountingTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, None)
        expected = transport.getHost()
        for _ in range(3):
            request = GatewayRequest(channel)
            self.assertEqual(request.getHost(), expected)
            self.assertEqual(request.getClientAddress(), StringTransport().getPeer())
        self.assertEqual((transport.hosts - 1, transport.peers), (1, 1))

    def test_securityOncePerConnection(self) -> None:
        """
        Whether the connection is TLS is found out once (the HTTPS listener
        test in tests.test_proxy covers a TLS connection).
        """
        channel = GatewaySite(Resource()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        channel.makeConnection(StringTransport())
        self.addCleanup(channel.connectionLost, None)
        asked: list[Any] = []
        original = http.HTTPChannel.isSecure

        def counting(this: Any) -> bool:
            asked.append(this)
            return original(this)

        self.patch(http.HTTPChannel, "isSecure", counting)
        for _ in range(3):
            self.assertFalse(GatewayRequest(channel).isSecure())
        self.assertEqual(len(asked), 1)
