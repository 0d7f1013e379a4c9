"""
gRPC end to end through a whole node: the real PostgreSQL, real listeners
on 127.0.0.1 (a plain one with the C{http2} flag, for h2c with prior
knowledge, and an C{http2 ssl} one offering h2 by ALPN), a C{grpc} service and a
route for C{/echotest.Echo/} made through the Admin API as Kong's docs
show, and grpcio clients calling the test service of
L{tests.h2.grpcservice} through the node.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import grpc
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.protocols import portforward
from twisted.trial import unittest

from echogate.errors import BAD_UPSTREAM, NO_ROUTE
from tests.balancer.test_node import refusing_port
from tests.certs import write_pair
from tests.gateway import RunningGateway, start_gateway
from tests.h2.grpcservice import SERVER_PAIR, TEST_CA, CallOutcome, EchoClient, GrpcServer, start_grpc_server
from tests.waiting import until

OK = grpc.StatusCode.OK

if TYPE_CHECKING:
    _Base = unittest.TestCase
else:
    _Base = object

#: The route's path: every method of the test service.
ROUTE_PATH = "/echotest.Echo/"


async def start_grpc_node(testcase: unittest.TestCase) -> tuple[RunningGateway, int, int]:
    """
    Start a node with a plain HTTP/2 listener (C{http2} flag: h2c with
    prior knowledge) and a TLS one (C{http2 ssl}: h2 by ALPN) whose
    certificate is the test CA's L{SERVER_PAIR}.

    @return: the node, the h2c port and the TLS port.
    """
    directory = testcase.mktemp()
    os.makedirs(directory)
    cert, key = write_pair(SERVER_PAIR, directory, "proxy")
    gw = await start_gateway(testcase, settings={
        "proxy_listen": "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl",
        "ssl_cert": str(cert), "ssl_cert_key": str(key)})
    ports = {"ssl" in description.split(): int(address.port)
             for description, address in gw.service.listening("proxy")}
    return gw, ports[False], ports[True]


class _CountingForwarder(portforward.ProxyFactory):
    """
    A TCP forwarder on 127.0.0.1 that counts the connections it accepts
    (each forwarded to the node as it is).
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.accepted = 0
        self.servers: list[portforward.ProxyServer] = []

    def buildProtocol(self, address: Any) -> portforward.ProxyServer:
        self.accepted += 1
        protocol: portforward.ProxyServer = super().buildProtocol(address)
        self.servers.append(protocol)
        return protocol


def forwarder(testcase: unittest.TestCase, port: int) -> tuple[_CountingForwarder, int]:
    """
    A L{_CountingForwarder} to 127.0.0.1:C{port}, stopped (and its
    connections cut) at the test's end.
    """
    factory = _CountingForwarder("127.0.0.1", port)
    factory.noisy = False
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def stop() -> Deferred[Any]:
        for server in factory.servers:
            if server.transport is not None:
                server.transport.abortConnection()
            if server.peer is not None and server.peer.transport is not None:
                server.peer.transport.abortConnection()
        return Deferred.fromCoroutine(_stopped(listening))

    testcase.addCleanup(stop)
    return factory, listening.getHost().port


async def _stopped(listening: Any) -> None:
    await listening.stopListening()


class _Node(_Base):
    """
    Set-up shared by the test classes: a node, the test service behind a
    C{grpc} service and a route for its methods (C{grpc} and C{grpcs}).
    """

    gw: RunningGateway
    upstream: GrpcServer
    h2c_port: int
    tls_port: int
    last: Any = None

    async def start_node(self) -> None:
        self.upstream = start_grpc_server(self)
        self.gw, self.h2c_port, self.tls_port = await start_grpc_node(self)

    async def admin(self, method: str, path: str, body: dict[str, Any], code: int = 201) -> dict[str, Any]:
        """
        Call the Admin API; the entity answered (the answer's code checked).
        """
        answer = await self.gw.admin(method, path, json=body)
        self.assertEqual(answer.code, code, answer)
        found: dict[str, Any] = answer.json() if answer.body else {}
        return found

    async def grpc_service(self, protocol: str = "grpc", port: int | None = None, **fields: Any) -> None:
        """
        The C{echo} service (C{protocol} to the test server) and its route
        C{echo} (paths L{ROUTE_PATH}, protocols grpc and grpcs).
        """
        await self.admin("POST", "/services", {"name": "echo", "protocol": protocol, "host": "127.0.0.1",
                                               "port": port or self.upstream.port, **fields})
        await self.admin("POST", "/services/echo/routes", {"name": "echo", "protocols": ["grpc", "grpcs"],
                                                           "paths": [ROUTE_PATH]})

    async def served(self, client: EchoClient, metadata: Any = ()) -> None:
        """
        Wait until a unary call through C{client} is answered OK.
        """
        async def ok() -> bool:
            self.last = await client.unary(message="ready", metadata=metadata, timeout=5)
            return bool(self.last.code == OK)

        try:
            await until(ok, timeout=10, interval=0.1, message="a call through the node answered OK")
        except AssertionError:
            self.fail(f"no call answered through the node: {self.last}")


class _Calls(_Node):
    """
    Every call kind, its metadata, statuses and deadlines, through the
    node, with a client made by L{connect}.
    """

    client: EchoClient

    def connect(self, port: int | None = None) -> EchoClient:
        raise NotImplementedError()

    @property
    def port(self) -> int:
        raise NotImplementedError()

    async def setUp(self) -> None:
        await self.start_node()
        await self.grpc_service()
        self.client = self.connect()
        self.addCleanup(self.client.close)
        await self.served(self.client)
        self.upstream.service.calls.clear()

    async def test_unary(self) -> None:
        """Unary: the reply through the node, request metadata (text and binary) reaching the service."""
        outcome = await self.client.unary(message="hello", metadata=[("x-asked", "yes"),
                                                                     ("x-raw-bin", b"\x00\xff\x01")])
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual(outcome.reply.message, "hello")
        self.assertEqual(outcome.reply.metadata["x-asked"], "yes")
        self.assertEqual(outcome.reply.metadata["x-raw-bin"], "00ff01")
        self.assertEqual(self.upstream.service.calls, ["Unary"])

    async def test_serverStream(self) -> None:
        """ServerStream: every reply, in order, then OK."""
        outcome = await self.client.server_stream(message="s", count=50)
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual([(r.message, r.index) for r in outcome.replies],
                         [("s", i) for i in range(50)])

    async def test_clientStream(self) -> None:
        """ClientStream: the service gets every request (joined, summed)."""
        outcome = await self.client.client_stream([{"message": str(i), "count": i} for i in range(20)])
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual((outcome.reply.message, outcome.reply.total, outcome.reply.index),
                         (",".join(str(i) for i in range(20)), sum(range(20)), 20))

    async def test_bidi(self) -> None:
        """Bidi: each message echoed, in order."""
        outcome = await self.client.bidi([{"message": f"m{i}"} for i in range(20)])
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual([r.message for r in outcome.replies], [f"m{i}" for i in range(20)])

    async def test_bidiLockstep(self) -> None:
        """
        Bidi in lockstep (each message sent only once the reply to the one
        before came): the node forwards each message and each reply as it
        comes, holding neither stream back.
        """
        outcome = await self.client.bidi([{"message": f"m{i}"} for i in range(10)], lockstep=True, timeout=20)
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual([r.message for r in outcome.replies], [f"m{i}" for i in range(10)])

    async def test_bigMessages(self) -> None:
        """A 1 MB message each way (past the HTTP/2 windows): whole."""
        text = "abcdefghij" * 100_000
        outcome = await self.client.unary(message=text)
        self.assertEqual(outcome.code, OK, outcome.code)
        self.assertEqual(outcome.reply.message, text)

    async def test_trailingMetadata(self) -> None:
        """An OK call's trailing metadata (text and binary) reaches the client."""
        outcome = await self.client.unary(message="x", trailing={"x-done": "yes", "x-sum-bin": "\u00e9"})
        self.assertEqual(outcome.code, OK, outcome)
        self.assertEqual((outcome.trailing.get("x-done"), outcome.trailing.get("x-sum-bin")),
                         ("yes", "\u00e9".encode()))

    async def test_errorStatus(self) -> None:
        """The service's error status, its message and trailing metadata pass through."""
        outcome = await self.client.unary(message="x", status=5, status_message="no such thing here",
                                          trailing={"x-why": "gone"})
        self.assertEqual((outcome.code, outcome.details),
                         (grpc.StatusCode.NOT_FOUND, "no such thing here"), outcome)
        self.assertEqual(outcome.trailing.get("x-why"), "gone")

    async def test_streamThenStatus(self) -> None:
        """A server stream's replies, then its error status."""
        outcome = await self.client.server_stream(message="s", count=3, status=9, status_message="stop")
        self.assertEqual((len(outcome.replies), outcome.code, outcome.details),
                         (3, grpc.StatusCode.FAILED_PRECONDITION, "stop"))

    async def test_deadlinePropagated(self) -> None:
        """
        The client's deadline (grpc-timeout) reaches the service: it sees
        a deadline near it (grpcio rounds the timeout it sends up, by a
        tenth of a second or so), where without it it sees none.
        """
        outcome = await self.client.unary(message="x", timeout=30)
        self.assertEqual(outcome.code, OK, outcome)
        self.assertTrue(0 < outcome.reply.time_remaining <= 31, outcome.reply.time_remaining)

    async def test_deadlineExceeded(self) -> None:
        """A client deadline shorter than the service's delay: DEADLINE_EXCEEDED."""
        outcome = await self.client.unary(message="x", delay=20, timeout=0.5)
        self.assertEqual(outcome.code, grpc.StatusCode.DEADLINE_EXCEEDED, outcome)

    async def test_cancelReachesService(self) -> None:
        """
        A call the client gives up on (its deadline past) ends at the
        service too: the node resets the stream it opened upstream.
        """
        outcome = await self.client.unary(message="x", delay=20, timeout=0.5)
        self.assertEqual(outcome.code, grpc.StatusCode.DEADLINE_EXCEEDED, outcome)
        await until(lambda: self.upstream.service.cancelled == ["Unary"], timeout=10,
                    message="the service saw the call end")

    async def test_latencyHeaders(self) -> None:
        """The response's metadata has the node's latency headers and Via, as over HTTP/1.1."""
        outcome = await self.client.unary(message="x")
        names = {name for name, _ in outcome.initial_metadata}
        self.assertTrue({"x-echogate-upstream-latency", "x-echogate-proxy-latency", "via"} <= names, names)

    async def test_noRoute(self) -> None:
        """
        A method no route matches: Kong's no-route answer the gRPC way
        (HTTP 200, grpc-status 5 NOT_FOUND, its message as grpc-message).
        """
        outcome = await self.client.call_path("/other.Service/Call", b"")
        self.assertEqual((outcome.code, outcome.details), (grpc.StatusCode.NOT_FOUND, NO_ROUTE), outcome)
        self.assertEqual(self.upstream.service.calls, [])

    async def test_keyAuth(self) -> None:
        """
        key-auth on the route: no key is UNAUTHENTICATED (the service not
        called); the key in the C{apikey} metadata gets through.
        """
        await self.admin("POST", "/routes/echo/plugins", {"name": "key-auth"})
        await self.admin("POST", "/consumers", {"username": "caller"})
        await self.admin("POST", "/consumers/caller/key-auth", {"key": "grpc-secret"})

        async def refused() -> CallOutcome | None:
            outcome = await self.client.unary(message="x", timeout=5)
            return outcome if outcome.code != OK else None

        outcome = await until(refused, message="the plugin in force")
        self.assertEqual(outcome.code, grpc.StatusCode.UNAUTHENTICATED, outcome)
        wrong = await self.client.unary(message="x", metadata=[("apikey", "not-it")])
        self.assertEqual(wrong.code, grpc.StatusCode.UNAUTHENTICATED, wrong)
        self.upstream.service.calls.clear()
        allowed = await self.client.unary(message="x", metadata=[("apikey", "grpc-secret")])
        self.assertEqual((allowed.code, allowed.reply.message), (OK, "x"))
        self.assertEqual(self.upstream.service.calls, ["Unary"])

    async def test_hundredConcurrent(self) -> None:
        """100 calls in flight at once on one channel: one connection to the node, every call OK."""
        counting, port = forwarder(self, self.port)
        client = self.connect(port)
        self.addCleanup(client.close)
        outcomes = await client.unary_many(100, message="n", delay=0.05)
        self.assertEqual([o.code for o in outcomes], [OK] * 100)
        self.assertEqual([o.reply.message for o in outcomes], [f"n{i}" for i in range(100)])
        self.assertEqual(counting.accepted, 1)


class H2CTests(_Calls, unittest.TestCase):
    """
    gRPC to the node's plain listener with the C{http2} flag (h2c, prior
    knowledge).
    """

    timeout = 60

    def connect(self, port: int | None = None) -> EchoClient:
        return EchoClient.insecure(port or self.h2c_port)

    @property
    def port(self) -> int:
        return self.h2c_port


class TLSTests(_Calls, unittest.TestCase):
    """
    gRPC over TLS to the node's C{http2 ssl} listener (ALPN h2), the client
    checking the node's certificate.
    """

    timeout = 60

    def connect(self, port: int | None = None) -> EchoClient:
        return EchoClient.secure(port or self.tls_port)

    @property
    def port(self) -> int:
        return self.tls_port


class ServiceKindTests(_Node, unittest.TestCase):
    """
    The service side: a C{grpcs} service, and a service that is down.
    """

    timeout = 60

    async def setUp(self) -> None:
        await self.start_node()

    async def test_grpcsService(self) -> None:
        """A grpcs service (TLS to the service, h2 by ALPN): calls get through."""
        secure = start_grpc_server(self, tls=True)
        # Verified (upstream_tls_verify is on) against the test CA.
        answer = await self.gw.admin("POST", "/ca_certificates", json={"cert": TEST_CA.cert_pem})
        self.assertEqual(answer.code, 201, answer.body)
        await self.grpc_service("grpcs", secure.port, ca_certificates=[answer.json()["id"]])
        client = EchoClient.insecure(self.h2c_port)
        self.addCleanup(client.close)
        await self.served(client)
        outcome = await client.bidi([{"message": "a"}, {"message": "b"}])
        self.assertEqual([r.message for r in outcome.replies], ["a", "b"])
        self.assertEqual(self.upstream.service.calls, [])
        self.assertIn("Bidi", secure.service.calls)

    async def test_serviceDown(self) -> None:
        """
        A service whose port refuses: the node's 502 answered the gRPC way
        (grpc-status 14 UNAVAILABLE, the answer's message as grpc-message).
        """
        await self.grpc_service("grpc", await refusing_port(self))
        client = EchoClient.insecure(self.h2c_port)
        self.addCleanup(client.close)

        async def answered() -> CallOutcome | None:
            outcome = await client.unary(message="x", timeout=5)
            return outcome if outcome.code != grpc.StatusCode.NOT_FOUND else None

        outcome = await until(answered, message="the route in force")
        self.assertEqual((outcome.code, outcome.details), (grpc.StatusCode.UNAVAILABLE, BAD_UPSTREAM), outcome)
