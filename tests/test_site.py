"""
The proxy listener's site and requests, over Twisted's test doubles.
"""
from __future__ import annotations

import io

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from echogate.site import GatewayRequest, GatewaySite


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
