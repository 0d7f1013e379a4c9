"""
The upstream clients' contract: both clients provide L{IUpstreamClient}
and both kinds of response L{IUpstreamResponse}; the Agent client's
C{send} delivers an L{AgentResponse} (end-to-end headers computed once,
no whole body), over a real upstream on 127.0.0.1.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.resource import Resource
from zope.interface.verify import verifyClass, verifyObject

from echogate.interfaces import IUpstreamClient, IUpstreamResponse
from echogate.upstream.agent import AgentResponse, UpstreamClient
from echogate.upstream.lean import LeanUpstreamClient
from echogate.upstream.response import UpstreamResponse


class _AgentLikeResponse:
    """
    What Agent delivers (an L{twisted.web.iweb.IResponse}), as far as
    L{AgentResponse} reads it.
    """

    def __init__(self, headers: Headers, length: Any = UNKNOWN_LENGTH, code: int = 200):
        self.code = code
        self.headers = headers
        self.length = length
        self.delivered: list[Any] = []

    def deliverBody(self, protocol: Any) -> None:
        self.delivered.append(protocol)


class _Connection:
    """
    The connection an L{UpstreamResponse} arrived on, as far as it reads it.
    """

    transport = None
    _paused = False

    def abort(self) -> None:
        pass


class ProvidesTests(SynchronousTestCase):
    """
    Both clients and both responses provide the upstream interfaces.
    """

    def test_lean_client(self) -> None:
        """
        L{LeanUpstreamClient} provides L{IUpstreamClient}.
        """
        self.assertTrue(verifyClass(IUpstreamClient, LeanUpstreamClient))
        self.assertTrue(verifyObject(IUpstreamClient, LeanUpstreamClient(MemoryReactorClock())))

    def test_agent_client(self) -> None:
        """
        L{UpstreamClient} (Agent's) provides L{IUpstreamClient}.
        """
        self.assertTrue(verifyClass(IUpstreamClient, UpstreamClient))
        self.assertTrue(verifyObject(IUpstreamClient, UpstreamClient(MemoryReactorClock())))

    def test_lean_response(self) -> None:
        """
        L{UpstreamResponse} provides L{IUpstreamResponse}.
        """
        response = UpstreamResponse(_Connection(), 200, b"OK", 1, [(b"X-A", b"1")], 0, [(b"X-A", b"1")])
        self.assertTrue(verifyClass(IUpstreamResponse, UpstreamResponse))
        self.assertTrue(verifyObject(IUpstreamResponse, response))

    def test_agent_response(self) -> None:
        """
        L{AgentResponse} provides L{IUpstreamResponse}.
        """
        self.assertTrue(verifyClass(IUpstreamResponse, AgentResponse))
        self.assertTrue(verifyObject(IUpstreamResponse, AgentResponse(_AgentLikeResponse(Headers()))))


class AgentResponseTests(SynchronousTestCase):
    """
    L{AgentResponse} adapts Agent's response once.
    """

    def test_end_to_end(self) -> None:
        """
        C{end_to_end} is every header line but the hop-by-hop ones (and
        Content-Length), as pairs; C{raw_headers} keeps them all.
        """
        headers = Headers({b"X-One": [b"1", b"2"], b"Proxy-Authenticate": [b"Basic"], b"Trailer": [b"X-T"],
                           b"Content-Type": [b"text/plain"]})
        response = AgentResponse(_AgentLikeResponse(headers))
        self.assertEqual(sorted(response.end_to_end),
                         [(b"Content-Type", b"text/plain"), (b"X-One", b"1"), (b"X-One", b"2")])
        self.assertIs(response.raw_headers, headers)

    def test_via(self) -> None:
        """
        C{via} says whether the service sent a Via header.
        """
        self.assertTrue(AgentResponse(_AgentLikeResponse(Headers({b"Via": [b"1.1 cache"]}))).via)
        self.assertFalse(AgentResponse(_AgentLikeResponse(Headers({b"X-A": [b"1"]}))).via)

    def test_length(self) -> None:
        """
        A declared length is an C{int}; Agent's C{UNKNOWN_LENGTH} is C{None}.
        """
        self.assertEqual(AgentResponse(_AgentLikeResponse(Headers(), 12)).length, 12)
        self.assertIsNone(AgentResponse(_AgentLikeResponse(Headers())).length)

    def test_body(self) -> None:
        """
        C{whole_body} is always C{None}; C{deliverBody} hands the protocol
        to Agent's response.
        """
        agent_response = _AgentLikeResponse(Headers(), 3)
        response = AgentResponse(agent_response)
        protocol = Protocol()
        self.assertIsNone(response.whole_body())
        response.deliverBody(protocol)
        self.assertEqual(agent_response.delivered, [protocol])


class _Recorder:
    """
    Records the calls of C{send}'s callbacks.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, tuple]] = []
        self.done: Deferred = Deferred()

    def response(self, response: Any, *args: Any) -> None:
        self.calls.append(("response", response, args))
        self.done.callback(response)

    def failure(self, failure: Failure, *args: Any) -> None:
        self.calls.append(("failure", failure, args))
        self.done.errback(failure)


class _StubTLS:
    """
    Stands for the lean client's Agent client: records C{send}.
    """

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, *arguments: Any) -> str:
        self.sent.append(arguments)
        return "handle"


class AgentSendUnitTests(SynchronousTestCase):
    """
    C{send} of the Agent client, without sockets.
    """

    def test_cancel(self) -> None:
        """
        A cancelled request calls neither callback.
        """
        client = UpstreamClient(MemoryReactorClock())
        recorder = _Recorder()
        handle = client.send({"host": "127.0.0.1", "port": 9}, b"GET", b"/", [], None,
                             recorder.response, recorder.failure, ("a",))
        self.assertFalse(handle.called)
        handle.cancel()
        self.assertEqual(recorder.calls, [])

    def test_lean_https(self) -> None:
        """
        The lean client hands an https request to its Agent client's
        C{send}, so that it too delivers an L{IUpstreamResponse}.
        """
        client = LeanUpstreamClient(MemoryReactorClock())
        client._tls = stub = _StubTLS()  # type: ignore[assignment]
        service = {"protocol": "https", "host": "127.0.0.1", "port": 443}
        handle = client.send(service, b"GET", b"/", [], None, print, print, ("a",))
        self.assertEqual(handle, "handle")
        self.assertEqual(stub.sent, [(service, b"GET", b"/", [], None, print, print, ("a",))])


class _HopResource(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setHeader(b"proxy-authenticate", b"Basic")
        request.setHeader(b"trailer", b"x-checksum")
        request.setHeader(b"via", b"1.0 cache-a")
        request.setHeader(b"x-end-to-end", b"passes")
        return b"hop"


class _Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.ended: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.ended.callback([reason])


class AgentSendTests(TestCase):
    """
    C{send} of the Agent client over a real upstream on 127.0.0.1.
    """

    def setUp(self) -> None:
        site = server.Site(_HopResource())
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.service = {"protocol": "http", "host": "127.0.0.1", "port": port.getHost().port, "retries": 0}
        self.client = UpstreamClient(reactor)
        self.addCleanup(self.client.close)

    async def test_delivers_agent_response(self) -> None:
        """
        C{send} calls back with an L{AgentResponse} (and C{args}) whose
        C{end_to_end} has no hop-by-hop header, whose C{via} is set, and
        whose body arrives through C{deliverBody}.
        """
        recorder = _Recorder()
        self.client.send(self.service, b"GET", b"/hop", [(b"Host", b"upstream")], None,
                         recorder.response, recorder.failure, ("a", "b"))
        response = await recorder.done
        self.assertIsInstance(response, AgentResponse)
        self.assertEqual(recorder.calls[0][2], ("a", "b"))
        names = {name.lower() for name, _ in response.end_to_end}
        self.assertIn(b"x-end-to-end", names)
        self.assertNotIn(b"proxy-authenticate", names)
        self.assertNotIn(b"trailer", names)
        self.assertNotIn(b"content-length", names)
        self.assertTrue(response.raw_headers.hasHeader(b"proxy-authenticate"))
        self.assertTrue(response.via)
        self.assertEqual(response.length, 3)
        self.assertIsNone(response.whole_body())
        body = _Collect()
        response.deliverBody(body)
        [reason] = await body.ended
        self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(body.data, b"hop")


class HarnessUpstreamTests(SynchronousTestCase):
    """
    L{echogate.testing.GatewayHarness} takes any L{IUpstreamClient}.
    """

    def test_client(self) -> None:
        """
        An L{IUpstreamClient} given as C{upstream} is the one the gateway's
        requests go to.
        """
        from echogate.testing import FunctionUpstream, GatewayHarness, UpstreamAnswer

        client = FunctionUpstream(lambda seen: UpstreamAnswer(201, body=b"mine"))
        harness = GatewayHarness([], upstream=client)
        response = self.successResultOf(harness.request("GET", "/x"))
        self.assertIs(harness.upstream, client)
        self.assertEqual((response.status, response.body), (201, b"mine"))
        self.assertEqual([seen.path for seen in client.seen], ["/x"])
