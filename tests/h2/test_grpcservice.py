"""
The gRPC test fixture itself (L{tests.h2.grpcservice}): a grpcio client
straight to the test service, plain and TLS, with no echogate between.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from twisted.trial import unittest

from tests.h2.grpcservice import EchoClient, GrpcServer, echo_modules, start_grpc_server
from tests.waiting import until

if TYPE_CHECKING:
    _Base = unittest.TestCase
else:
    _Base = object


class CompiledTests(unittest.TestCase):
    def test_modules(self) -> None:
        """The proto is compiled and imported: its messages and the stub of echotest.Echo."""
        messages, service = echo_modules()
        self.assertEqual(messages.DESCRIPTOR.package, "echotest")
        self.assertEqual([m.name for m in messages.DESCRIPTOR.services_by_name["Echo"].methods],
                         ["Unary", "ServerStream", "ClientStream", "Bidi"])
        self.assertTrue(hasattr(service, "EchoStub"))
        self.assertIs(echo_modules(), echo_modules())


class _Calls(_Base):
    """
    The calls, against C{self.client} (set by the concrete class).
    """

    client: EchoClient
    server: GrpcServer

    async def test_unary(self) -> None:
        """Unary: the message back, the metadata the service got, no deadline seen without one."""
        outcome = await self.client.unary(message="hello", metadata=[("x-asked", "yes")], timeout=None)
        self.assertEqual(outcome.code, grpc.StatusCode.OK)
        self.assertEqual(outcome.reply.message, "hello")
        self.assertEqual(outcome.reply.metadata["x-asked"], "yes")
        self.assertEqual(outcome.reply.time_remaining, -1.0)
        self.assertEqual(self.server.service.calls, ["Unary"])

    async def test_deadlineSeen(self) -> None:
        """
        A call with a deadline: the service sees the time left, positive
        and near the timeout (grpcio rounds the timeout it sends up).
        """
        outcome = await self.client.unary(message="x", timeout=30)
        self.assertTrue(0 < outcome.reply.time_remaining <= 31, outcome.reply.time_remaining)

    async def test_serverStream(self) -> None:
        """ServerStream: count replies, numbered."""
        outcome = await self.client.server_stream(message="s", count=5)
        self.assertEqual(outcome.code, grpc.StatusCode.OK)
        self.assertEqual([(r.message, r.index) for r in outcome.replies], [("s", i) for i in range(5)])

    async def test_clientStream(self) -> None:
        """ClientStream: the messages joined, the counts added up, how many came."""
        outcome = await self.client.client_stream([{"message": "a", "count": 1}, {"message": "b", "count": 2},
                                                   {"message": "c", "count": 3}])
        self.assertEqual((outcome.reply.message, outcome.reply.total, outcome.reply.index), ("a,b,c", 6, 3))

    async def test_bidi(self) -> None:
        """Bidi: each message echoed, in order, also in lockstep."""
        for lockstep in (False, True):
            outcome = await self.client.bidi([{"message": m} for m in "xyz"], lockstep=lockstep)
            self.assertEqual(outcome.code, grpc.StatusCode.OK)
            self.assertEqual([(r.message, r.index) for r in outcome.replies], [("x", 0), ("y", 1), ("z", 2)])

    async def test_status(self) -> None:
        """A status asked for: its code, message and the trailing metadata (text and binary)."""
        outcome = await self.client.unary(message="x", status=5, status_message="no such thing",
                                          trailing={"x-why": "because", "x-raw-bin": "\u00e9t\u00e9"})
        self.assertEqual((outcome.code, outcome.details), (grpc.StatusCode.NOT_FOUND, "no such thing"))
        self.assertEqual(outcome.replies, ())
        self.assertEqual(outcome.trailing["x-why"], "because")
        self.assertEqual(outcome.trailing["x-raw-bin"], "\u00e9t\u00e9".encode())

    async def test_trailingOnSuccess(self) -> None:
        """Trailing metadata on an OK call."""
        outcome = await self.client.unary(message="x", trailing={"x-done": "1"})
        self.assertEqual((outcome.code, outcome.trailing["x-done"]), (grpc.StatusCode.OK, "1"))

    async def test_streamThenStatus(self) -> None:
        """A server stream that ends with a status after its replies."""
        outcome = await self.client.server_stream(message="s", count=2, status=9, status_message="stop")
        self.assertEqual((len(outcome.replies), outcome.code, outcome.details),
                         (2, grpc.StatusCode.FAILED_PRECONDITION, "stop"))

    async def test_deadlineExceeded(self) -> None:
        """A delay past the client's deadline: DEADLINE_EXCEEDED, and the service learns the call ended."""
        outcome = await self.client.unary(message="x", delay=30, timeout=0.3)
        self.assertEqual(outcome.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        await until(lambda: self.server.service.cancelled == ["Unary"], message="the service saw the end")

    async def test_unknownMethod(self) -> None:
        """A method the server does not have: UNIMPLEMENTED."""
        outcome = await self.client.call_path("/nothing.Here/Call", b"")
        self.assertEqual(outcome.code, grpc.StatusCode.UNIMPLEMENTED)

    async def test_many(self) -> None:
        """100 calls in flight at once on the channel, each answered with its own message."""
        outcomes = await self.client.unary_many(100, message="n")
        self.assertEqual([o.code for o in outcomes], [grpc.StatusCode.OK] * 100)
        self.assertEqual([o.reply.message for o in outcomes], [f"n{i}" for i in range(100)])


class PlainTests(_Calls, unittest.TestCase):
    """
    The fixture over plain HTTP/2.
    """

    timeout = 60

    def setUp(self) -> None:
        self.server = start_grpc_server(self)
        self.client = EchoClient.insecure(self.server.port)
        self.addCleanup(self.client.close)


class TLSTests(_Calls, unittest.TestCase):
    """
    The fixture over TLS, the client trusting the test CA.
    """

    timeout = 60

    def setUp(self) -> None:
        self.server = start_grpc_server(self, tls=True)
        self.client = EchoClient.secure(self.server.port)
        self.addCleanup(self.client.close)

    async def test_tlsOnly(self) -> None:
        """A plain client to the TLS server does not get through: UNAVAILABLE."""
        plain = EchoClient.insecure(self.server.port)
        self.addCleanup(plain.close)
        outcome = await plain.unary(message="x", timeout=5)
        self.assertEqual(outcome.code, grpc.StatusCode.UNAVAILABLE)
