"""
The gateway's side of a proxied request, where it does Twisted's work
itself or remembers what repeats: the request's constructor, the channel's
end of a request, C{finish}, the Host and X-Forwarded-Host headers, the
path's normal form and the client's address. Each answers as Twisted (or
the code it replaced) does.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from echogate.proxy import forwarding, gateway
from echogate.proxy.forwarding import upstream_headers
from echogate.proxy.request import GatewayRequest
from echogate.proxy.site import GatewaySite
from echogate.testing import GatewayHarness
from tests.proxy.test_site import _Pending


def _connect(resource: Resource) -> tuple[Any, StringTransport]:
    site = GatewaySite(resource, reactor=Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    channel.makeConnection(transport)
    return channel, transport


def _comparable(value: Any) -> Any:
    return sorted(value.getAllRawHeaders()) if isinstance(value, Headers) else value


class ConstructorTests(SynchronousTestCase):
    """
    L{GatewayRequest}'s constructor makes the attributes Twisted's
    constructors make.
    """

    def test_sameAsTwisted(self) -> None:
        """
        The same attributes, with the same values, as C{server.Request}'s
        constructor gives, for each way a request is made.
        """
        channel, _ = _connect(_Pending())
        for args, kw in (((0,), {}), ((), {"queued": False}), ((), {}), ((1,), {"parsePOSTFormSubmission": True})):
            ours = GatewayRequest(channel, *args, **kw)
            twisted = GatewayRequest.__new__(GatewayRequest)
            server.Request.__init__(twisted, channel, *args, **kw)
            self.assertEqual(sorted(vars(ours)), sorted(vars(twisted)), f"row args={args!r} kw={kw!r}")
            for name, value in vars(twisted).items():
                self.assertEqual(_comparable(getattr(ours, name)), _comparable(value),
                                 f"row args={args!r} kw={kw!r} name={name!r}")


class _Answer(Resource):
    """
    Answers every request at once.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"ok"


class ChannelTests(SynchronousTestCase):
    """
    The channel's end of a request (C{allContentReceived},
    C{requestDone}), done as C{HTTPChannel} does it.
    """

    def test_firstLineAgain(self) -> None:
        """
        After a request read line by line, the next one's first line is
        its request line again (HTTPChannel's private C{__first_line},
        which the channel resets as HTTPChannel does).
        """
        self.assertTrue(hasattr(http.HTTPChannel, "_HTTPChannel__first_line"))
        channel, transport = _connect(_Answer())
        for path in (b"/1", b"/2", b"/3"):
            channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\n")
            channel.dataReceived(b"Host: a\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 3, transport.value())
        self.assertFalse(transport.disconnecting)

    def test_requestLineKept(self) -> None:
        """
        The request line's parts stay on the channel after its request
        (HTTPChannel deletes them, which makes PyPy's JIT give up on the
        channel's reads), and the next request has its own.
        """
        resource = _Pending()
        channel, _ = _connect(resource)
        for path in (b"/1", b"/2"):
            channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            request = resource.requests[-1]
            self.assertEqual((request.uri, channel._path), (path, path))
            request.respond(200, [(b"Content-Length", b"0")])
            request.finish()
            self.assertEqual([vars(channel).get(name) for name in ("_command", "_path", "_version")],
                             [b"GET", path, b"HTTP/1.1"])

    def test_pipelined(self) -> None:
        """
        Requests that came behind one being answered are read once it is
        done, in order.
        """
        resource = _Pending()
        channel, transport = _connect(resource)
        channel.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual([r.uri for r in resource.requests], [b"/1"])
        first = resource.requests[0]
        first.respond(200, [(b"Content-Length", b"1")])
        first.write(b"1")
        first.finish()
        self.assertEqual([r.uri for r in resource.requests], [b"/1", b"/2"])
        self.assertRaises(TypeError, channel.requestDone, first)

    def test_idleTimerAfterEachRequest(self) -> None:
        """
        The idle timeout runs again from the end of each request.
        """
        channel, transport = _connect(_Answer())
        clock = channel.callLater.__self__
        channel.setTimeout(10)
        for _ in range(2):
            clock.advance(9)
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertFalse(transport.disconnecting)
        clock.advance(9.5)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.5)
        self.assertTrue(transport.disconnecting)


class FinishTests(SynchronousTestCase):
    """
    L{GatewayRequest.finish} ends a request as Twisted's does.
    """

    def request(self) -> tuple[Any, Any, StringTransport]:
        resource = _Pending()
        channel, transport = _connect(resource)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        return resource.requests[-1], channel, transport

    def test_ends(self) -> None:
        """
        The request is finished, its body file closed, its channel let go
        of, and those who asked are told.
        """
        request, channel, transport = self.request()
        content = request.content
        told: list[None] = []
        request.notifyFinish().addCallback(told.append)
        request.respond(200, [(b"Content-Length", b"2")])
        request.write(b"ok")
        request.finish()
        self.assertEqual((request.finished, told, content.closed), (1, [None], True))
        self.assertFalse(hasattr(request, "channel"))
        self.assertIsNone(request.content)
        self.assertEqual(channel.requests, [])
        self.assertTrue(transport.value().endswith(b"\r\n\r\nok"))

    def test_twistedWayOtherwise(self) -> None:
        """
        Finishing twice warns, finishing after the connection was lost
        raises, and a producer left registered is logged and unregistered,
        as Twisted's finish does.
        """
        request, _, _ = self.request()
        request.respond(200, [(b"Content-Length", b"0")])
        request.finish()
        request.finish()
        self.assertEqual(len(self.flushWarnings()), 1)
        request, channel, _ = self.request()
        request.connectionLost(Exception("gone"))
        self.assertRaises(RuntimeError, request.finish)
        request, channel, _ = self.request()

        class Producer:
            def stopProducing(self) -> None:
                pass

        request.registerProducer(Producer(), True)
        request.respond(200, [(b"Content-Length", b"0")])
        request.finish()
        self.assertIsNone(request.producer)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ForwardingTests(SynchronousTestCase):
    """
    The Host header of each service and the X-Forwarded-Host of each Host
    value are worked out once, and are those of the service and the value
    at hand.
    """

    def headers(self, service: dict, host: bytes = b"client.test:8000") -> dict[bytes, bytes]:
        request = Headers({b"Host": [host]})
        pairs = upstream_headers(request, service, False, "10.0.0.1", False, "http", 8000, "/", "")
        return dict(pairs)

    def test_hostOfEachService(self) -> None:
        """
        Each service's own Host; a service record replaced by another (a
        new snapshot) gets the new one's, and the remembered ones are
        bounded.
        """
        one = {"id": "s", "host": "one.test", "port": 80, "protocol": "http"}
        two = {"id": "s", "host": "two.test", "port": 8080, "protocol": "http"}
        for _ in range(2):
            self.assertEqual(self.headers(one)[b"Host"], b"one.test")
            self.assertEqual(self.headers(two)[b"Host"], b"two.test:8080")
        services = [{"host": f"h{i}.test", "port": 80} for i in range(1100)]
        for i, service in enumerate(services):
            self.assertEqual(self.headers(service)[b"Host"], b"h%d.test" % i)
        self.assertLessEqual(len(forwarding._HOST_HEADERS), 1024)

    def test_forwardedHostOfEachValue(self) -> None:
        """
        X-Forwarded-Host is each request's Host without its port.
        """
        service = {"host": "s.test", "port": 80}
        for host, name in ((b"a.test:8000", b"a.test"), (b"b.test", b"b.test"), (b"[::1]:80", b"[::1]"),
                           (b"a.test:8000", b"a.test"), (b"x" * 400 + b":1", b"x" * 400)):
            self.assertEqual(self.headers(service, host)[b"X-Forwarded-Host"], name, f"row host={host!r}")
        self.assertNotIn(b"x" * 400 + b":1", forwarding._HOST_NAMES)


class GatewayTests(SynchronousTestCase):
    """
    The path's normal form, remembered, and the client's address without
    trusted networks.
    """

    def test_paths(self) -> None:
        """
        The route sees each path's normal form, a path without one is
        answered 400 each time, and long paths are not remembered.
        """
        harness = GatewayHarness([])
        for path, status, seen in (("/a/./b//c", 200, "/a/b/c"), ("/a/./b//c", 200, "/a/b/c"),
                                   ("/%zz", 400, None), ("/%zz", 400, None),
                                   ("/" + "x" * 300 + "/..", 200, "/")):
            response = self.successResultOf(harness.request("GET", path))
            self.assertEqual(response.status, status, f"row path={path!r}")
            if seen is not None:
                self.assertEqual(harness.upstream_requests[-1].path, seen, f"row path={path!r}")
        self.assertEqual(gateway._NORMAL[b"/%zz"], "")
        self.assertNotIn(b"/" + b"x" * 300 + b"/..", gateway._NORMAL)

    def test_mappedPeer(self) -> None:
        """
        A peer named as an IPv4-mapped IPv6 address is the client in its
        IPv4 form.
        """
        harness = GatewayHarness([])
        response = self.successResultOf(harness.request("GET", "/", client_ip="::ffff:10.0.0.7"))
        self.assertEqual(response.status, 200)
        self.assertEqual(harness.upstream_requests[-1].header("X-Real-IP"), "10.0.0.7")
