"""
How the channel makes and starts a request on its one-step path: the
request factory's C{__init__} called from Python (not through C{type}),
the site's C{empty_content} for a request without a body, and the
resource's C{serve} called without C{process}. Each gives what the calls
they replace gave.
"""
from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from echogate.proxy.request import GatewayRequest
from echogate.proxy.site import GatewaySite
from echogate.testing import GatewayHarness
from tests.proxy.test_request_path import _comparable

_GET = b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n"


class _Serving(Resource):
    """
    A resource with C{serve}, as the proxy's: keeps each request, or
    raises when told to.
    """

    isLeaf = True

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.requests: list[Any] = []
        self.fail = fail

    def serve(self, request: Any) -> None:
        self.requests.append(request)
        if self.fail:
            raise RuntimeError("serve failed")


def _connect(site: GatewaySite) -> tuple[Any, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    channel.makeConnection(transport)
    return channel, transport


class RequestFactoryTests(SynchronousTestCase):
    """
    The channel makes each request as its C{requestFactory} would.
    """

    def test_sameAsCalled(self) -> None:
        """
        A request made on the one-step path has the attributes a call of
        the factory gives (the head's own aside).
        """
        resource = _Serving()
        channel, _ = _connect(GatewaySite(resource, reactor=Clock()))
        channel.dataReceived(_GET)
        [made] = resource.requests
        called = GatewayRequest(channel, 0)
        for name in ("client", "host", "queued", "_parsePOSTFormSubmission", "cookies", "received_cookies",
                     "responseHeaders", "notifications", "transport", "_adapterCache"):
            self.assertEqual(_comparable(getattr(made, name)), _comparable(getattr(called, name)), name)
        self.assertIs(type(made), GatewayRequest)
        self.assertEqual(list(made.requestHeaders.getAllRawHeaders()), [(b"Host", [b"a.example"])])

    def test_notAClass(self) -> None:
        """
        A factory that is not a class is called with the channel and
        C{0}, as Twisted calls it.
        """
        resource = _Serving()
        channel, _ = _connect(GatewaySite(resource, reactor=Clock()))
        calls: list[tuple[Any, Any]] = []

        def factory(ch: Any, queued: Any) -> GatewayRequest:
            calls.append((ch, queued))
            return GatewayRequest(ch, queued)

        channel.requestFactory = factory
        channel.dataReceived(_GET)
        self.assertEqual(calls, [(channel, 0)])
        self.assertEqual(len(resource.requests), 1)


class EmptyContentTests(SynchronousTestCase):
    """
    A request without a body reads from what the site's C{empty_content}
    makes: C{getContentFile(0)}'s, without its call.
    """

    def test_sameAsContentFile(self) -> None:
        """
        L{GatewaySite.empty_content} makes what C{getContentFile(0)} gives:
        an empty file in memory.
        """
        site = GatewaySite(_Serving(), reactor=Clock())
        made, given = site.empty_content(), site.getContentFile(0)
        self.assertEqual((type(made), made.getvalue()), (type(given), given.getvalue()))
        self.assertIs(type(made), io.BytesIO)

    def test_used(self) -> None:
        """
        The request's content is what C{empty_content} made.
        """
        resource = _Serving()
        site = GatewaySite(resource, reactor=Clock())
        files: list[io.BytesIO] = []

        def empty() -> io.BytesIO:
            files.append(io.BytesIO())
            return files[-1]

        site.empty_content = empty  # type: ignore[method-assign]
        channel, _ = _connect(site)
        channel.dataReceived(_GET)
        [request] = resource.requests
        self.assertEqual(len(files), 1)
        self.assertIs(request.content, files[0])


class ServeTests(SynchronousTestCase):
    """
    A resource's C{serve} is given the request as C{process} gave it.
    """

    def test_served(self) -> None:
        """
        C{serve} gets the request with its site set and empty C{prepath}
        and C{postpath}.
        """
        resource = _Serving()
        site = GatewaySite(resource, reactor=Clock())
        channel, _ = _connect(site)
        channel.dataReceived(_GET)
        [request] = resource.requests
        self.assertEqual((request.site, request.prepath, request.postpath, request.path), (site, [], [], b"/x"))

    def test_serveFails(self) -> None:
        """
        A C{serve} that raises is answered 500, the error logged.
        """
        resource = _Serving(fail=True)
        channel, transport = _connect(GatewaySite(resource, reactor=Clock()))
        channel.dataReceived(_GET)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "), transport.value())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RoutingHeadersTests(SynchronousTestCase):
    """
    The router is given the request's headers when a route matches on
    them (else a mapping it never reads).
    """

    def test_headerRoute(self) -> None:
        """
        A route that matches on a header takes the requests that have it,
        and only those.
        """
        harness = GatewayHarness([], route={"paths": ["/"], "headers": {"x-version": ["2"]}})
        matched = self.successResultOf(harness.request("GET", "/x", headers={"X-Version": "2"}))
        unmatched = self.successResultOf(harness.request("GET", "/x", headers={"X-Version": "1"}))
        self.assertEqual((matched.status, unmatched.status), (200, 404))

    def test_noHeaderRoute(self) -> None:
        """
        Without such a route, requests are routed whatever their headers.
        """
        harness = GatewayHarness([], route={"paths": ["/"]})
        response = self.successResultOf(harness.request("GET", "/x", headers={"X-Version": "2"}))
        self.assertEqual(response.status, 200)
