"""
Plain HTTP/2 end to end through a whole node: httpx clients (h2 over TLS
by ALPN, and h2c with prior knowledge on a listener with the C{http2}
flag) to an http service (the suite's upstream server), and a raw h2
client that opens and resets streams in a loop (the "rapid reset"
attack).
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
from h2.errors import ErrorCodes
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from echogate._version import __version__
from echogate.errors import NO_ROUTE
from tests.gateway import RunningGateway
from tests.h2.grpcservice import TEST_CA
from tests.h2.test_grpc_e2e import start_grpc_node
from tests.upstream_server import UpstreamResource, start_upstream

if TYPE_CHECKING:
    _Base = unittest.TestCase
else:
    _Base = object

#: The most streams the rapid-reset client opens and resets.
RESETS = 5000


def _trusting() -> ssl.SSLContext:
    """
    A client TLS context trusting the test CA.
    """
    return ssl.create_default_context(cadata=TEST_CA.cert_pem)


def fetch(method: str, url: str, *, http1: bool = True, http2: bool = True, **kw: Any) -> Deferred[httpx.Response]:
    """
    One request with a new httpx client, in a thread; the response, read
    whole.
    """
    def call() -> httpx.Response:
        with httpx.Client(http1=http1, http2=http2, verify=_trusting(), trust_env=False, timeout=20) as client:
            response = client.request(method, url, **kw)
            response.read()
            return response

    return deferToThread(call)


def rapid_reset(port: int, count: int = RESETS, authority: str = "127.0.0.1") -> tuple[str, int]:
    """
    Over h2c (prior knowledge) to 127.0.0.1:C{port}: open a stream (a
    whole GET) and reset it at once, again and again, at most C{count}
    times, until the server sends GOAWAY or closes; then wait (at most 10
    s) for either.

    @return: how it ended (C{"goaway"}, C{"closed"}, or C{"open"} when
        neither came) and the streams opened.
    """
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    ended = "open"

    def send() -> None:
        nonlocal ended
        try:
            sock.sendall(connection.data_to_send())
        except OSError:
            ended = "closed"

    def receive(wait: float) -> None:
        nonlocal ended
        while ended == "open" and select.select([sock], [], [], wait)[0]:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                ended = "closed"
                return
            try:
                events = connection.receive_data(data)
            except h2.exceptions.ProtocolError:
                ended = "closed"
                return
            if any(isinstance(event, h2.events.ConnectionTerminated) for event in events):
                ended = "goaway"
            send()
            wait = 0

    opened = 0
    try:
        send()
        while ended == "open" and opened < count:
            stream = connection.get_next_available_stream_id()
            try:
                connection.send_headers(stream, [(":method", "GET"), (":scheme", "http"),
                                                 (":authority", authority), (":path", "/api/reset")],
                                        end_stream=True)
                connection.reset_stream(stream, ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                break
            opened += 1
            if opened % 50 == 0:
                send()
                receive(0)
        send()
        deadline = time.monotonic() + 10
        while ended == "open" and time.monotonic() < deadline:
            receive(0.1)
    finally:
        sock.close()
    return ended, opened


class _WebNode(_Base):
    """
    A node with an http service (the upstream server) on a route
    C{/api}; the concrete classes say how the client speaks HTTP/2
    (L{request}).
    """

    gw: RunningGateway
    upstream: UpstreamResource
    upstream_port: int
    h2c_port: int
    tls_port: int

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.gw, self.h2c_port, self.tls_port = await start_grpc_node(self)
        answer = await self.gw.admin("POST", "/services", json={"name": "web",
                                                                 "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.assertEqual(answer.code, 201, answer)
        answer = await self.gw.admin("POST", "/services/web/routes", json={"name": "web", "paths": ["/api"]})
        self.assertEqual(answer.code, 201, answer)

    def request(self, method: str, path: str, **kw: Any) -> Deferred[httpx.Response]:
        raise NotImplementedError()


class _HTTP2(_WebNode):
    """
    Requests over HTTP/2 through the node.
    """

    async def test_get(self) -> None:
        """
        A GET over HTTP/2: the upstream's answer; the upstream sees the
        request as over HTTP/1.1 (the path stripped, the service's host).
        """
        response = await self.request("GET", "/api/things?a=1", headers={"x-asked": "yes"})
        self.assertEqual((response.http_version, response.status_code), ("HTTP/2", 200))
        seen = response.json()
        self.assertEqual((seen["method"], seen["uri"]), ("GET", "/things?a=1"))
        self.assertEqual(seen["headers"]["x-asked"], ["yes"])
        self.assertEqual(seen["headers"]["host"], [f"127.0.0.1:{self.upstream_port}"])

    async def test_post(self) -> None:
        """A POST with a 200 kB body over HTTP/2 (past the windows): the upstream gets it whole."""
        body = bytes(range(256)) * 800
        response = await self.request("POST", "/api/upload", content=body,
                                      headers={"content-type": "application/octet-stream"})
        self.assertEqual(response.status_code, 200)
        seen = response.json()
        self.assertEqual((seen["method"], seen["body_length"]), ("POST", len(body)))
        self.assertEqual(seen["body"].encode("latin-1"), body)

    async def test_bigResponse(self) -> None:
        """A 2 MB answer, streamed by the upstream: whole over HTTP/2."""
        response = await self.request("GET", "/api/big?size=2000000")
        self.assertEqual((response.status_code, len(response.content)), (200, 2_000_000))

    async def test_latencyAndVia(self) -> None:
        """The node's latency headers and its Via, as on HTTP/1.1."""
        response = await self.request("GET", "/api/x")
        self.assertEqual(response.status_code, 200)
        for name in ("x-echogate-upstream-latency", "x-echogate-proxy-latency"):
            self.assertTrue(response.headers.get(name, "").isdigit(), (name, response.headers))
        self.assertTrue(response.headers.get("via", "").endswith(f"echogate/{__version__}"), response.headers)

    async def test_noRoute(self) -> None:
        """A path no route matches: Kong's 404 and its JSON body."""
        response = await self.request("GET", "/elsewhere")
        self.assertEqual((response.http_version, response.status_code, response.json()),
                         ("HTTP/2", 404, {"message": NO_ROUTE}))
        self.assertEqual(self.upstream.seen, [])


class TLSTests(_HTTP2, unittest.TestCase):
    """
    HTTP/2 by ALPN on the node's C{ssl} listener.
    """

    timeout = 60

    def request(self, method: str, path: str, **kw: Any) -> Deferred[httpx.Response]:
        return fetch(method, f"https://127.0.0.1:{self.tls_port}{path}", **kw)

    async def test_http11Still(self) -> None:
        """A client offering only HTTP/1.1 by ALPN gets HTTP/1.1, with the same headers."""
        response = await fetch("GET", f"https://127.0.0.1:{self.tls_port}/api/x", http2=False)
        self.assertEqual((response.http_version, response.status_code), ("HTTP/1.1", 200))
        self.assertTrue(response.headers["via"].endswith(f"echogate/{__version__}"))
        self.assertIn("x-echogate-upstream-latency", response.headers)


class H2CTests(_HTTP2, unittest.TestCase):
    """
    HTTP/2 with prior knowledge on the plain listener with the C{http2}
    flag.
    """

    timeout = 60

    def request(self, method: str, path: str, **kw: Any) -> Deferred[httpx.Response]:
        return fetch(method, f"http://127.0.0.1:{self.h2c_port}{path}", http1=False, **kw)


class RapidResetTests(_WebNode, unittest.TestCase):
    """
    Streams opened and reset in a loop (CVE-2023-44487): the node ends
    the connection, and keeps serving others.
    """

    timeout = 120

    def request(self, method: str, path: str, **kw: Any) -> Deferred[httpx.Response]:
        return fetch(method, f"http://127.0.0.1:{self.h2c_port}{path}", http1=False, **kw)

    async def test_rapidReset(self) -> None:
        """
        A client that opens and resets up to 5000 streams gets GOAWAY (or
        its connection closed), and the node still answers a new client.
        (When it notices depends on the socket buffers: often only after
        sending them all.)
        """
        ended, opened = await deferToThread(rapid_reset, self.h2c_port)
        self.assertIn(ended, ("goaway", "closed"), f"still open after {opened} streams")
        response = await self.request("GET", "/api/after")
        self.assertEqual(response.status_code, 200)

    async def test_fewResets(self) -> None:
        """A client that resets a few streams (20) keeps its connection."""
        ended, opened = await deferToThread(rapid_reset, self.h2c_port, 20)
        self.assertEqual((ended, opened), ("open", 20))
