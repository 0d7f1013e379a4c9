"""
A gRPC test service and its clients, for the HTTP/2 and gRPC tests.

The service is C{tests/h2/echo.proto} (package C{echotest}, service
C{Echo}), compiled with C{grpc_tools.protoc} into a temporary directory
the first time L{echo_modules} is called and imported from there (no
generated code is committed). L{EchoService} implements its four methods:

  - C{Unary}: one reply, the request's message;
  - C{ServerStream}: C{count} replies, C{index} 0, 1, ...;
  - C{ClientStream}: one reply, the messages joined by C{","}, the counts
    added up in C{total}, C{index} the number of requests;
  - C{Bidi}: one reply per request, as it comes.

Every reply carries the metadata the service received and the time left
before the call's deadline as the service saw it. A request asks for a
status (C{status}, C{status_message}: the call ends with it), trailing
metadata (C{trailing}) and a wait before the answer (C{delay}); for the
streaming-request methods, the last request's instructions hold (for
C{Bidi}, a request's C{status} ends the call after its reply).

L{GrpcServer} runs it in a C{grpc.server} (a thread pool) on 127.0.0.1,
plain or TLS (L{SERVER_PAIR}, signed by L{TEST_CA}); L{start_grpc_server}
starts one for a test and stops it at the test's end. L{EchoClient} makes
calls on one grpcio channel in threads and answers L{CallOutcome}s in
Deferreds, never raising for a status.
"""
from __future__ import annotations

import functools
import importlib
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import attrs
import grpc
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread

from tests.certs import KeyPair, make_ca, make_leaf

__all__ = [
    "CallOutcome",
    "EchoClient",
    "EchoService",
    "GrpcServer",
    "SERVER_NAME",
    "SERVER_PAIR",
    "TEST_CA",
    "echo_modules",
    "start_grpc_server",
]

PROTO = Path(__file__).with_name("echo.proto")

#: The name the TLS server's certificate is for (a client overrides the
#: target name with it).
SERVER_NAME = "grpc.echotest.example"

#: The CA of the test certificates, and the servers' certificate (for
#: L{SERVER_NAME}, C{localhost} and 127.0.0.1).
TEST_CA = make_ca("echogate gRPC test CA", kind="ec")
SERVER_PAIR = make_leaf(TEST_CA, [SERVER_NAME, "localhost", "127.0.0.1"], kind="ec")

#: Metadata as grpcio gives and takes it: (key, value) pairs, a value
#: being bytes for a key ending in C{-bin}.
Metadata = Sequence[tuple[str, Union[str, bytes]]]

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@functools.lru_cache(maxsize=None)
def echo_modules() -> tuple[ModuleType, ModuleType]:
    """
    Compile C{echo.proto} into a temporary directory and import its
    modules (once per process; the directory is removed once imported).

    @return: the messages module (C{echo_pb2}) and the service's
        (C{echo_pb2_grpc}).
    @raise RuntimeError: protoc failed.
    """
    from grpc_tools import protoc

    where = tempfile.mkdtemp(prefix="echogate-grpc-")
    try:
        status = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={where}",
                              f"--grpc_python_out={where}", str(PROTO)])
        if status != 0:
            raise RuntimeError(f"protoc could not compile {PROTO} (status {status})")
        sys.path.insert(0, where)
        try:
            messages = importlib.import_module("echo_pb2")
            service = importlib.import_module("echo_pb2_grpc")
        finally:
            sys.path.remove(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return messages, service


def _status(number: int) -> grpc.StatusCode:
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


def _shown(metadata: Iterable[Any]) -> dict[str, str]:
    """
    Received metadata as text: a binary value hex-encoded.
    """
    return {item.key: item.value.hex() if isinstance(item.value, bytes) else item.value for item in metadata}


class EchoService:
    """
    The C{echotest.Echo} service (see the module's docstring).

    @ivar calls: the methods called, in order of arrival.
    @ivar cancelled: the methods whose call ended (cancelled by the
        client, its deadline past) while the service waited.
    @ivar peers: the peer of each call (where the caller connected from).
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.peers: list[str] = []
        self._messages, _ = echo_modules()

    def _arrived(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        self.peers.append(context.peer())

    def _wait(self, method: str, seconds: float, context: grpc.ServicerContext) -> bool:
        """
        Wait C{seconds}, or until the call ends; C{False} (noted in
        L{cancelled}) when it ended.
        """
        if seconds <= 0:
            return context.is_active()
        ended = threading.Event()
        if not context.add_callback(ended.set) or ended.wait(seconds):
            self.cancelled.append(method)
            return False
        return True

    def _reply(self, context: grpc.ServicerContext, message: str, index: int, total: int = 0) -> Any:
        remaining = context.time_remaining()
        return self._messages.EchoReply(
            message=message, index=index, total=total, metadata=_shown(context.invocation_metadata()),
            time_remaining=-1.0 if remaining is None or remaining > 1e9 else remaining)

    def _end(self, request: Any, context: grpc.ServicerContext) -> None:
        """
        Set the trailing metadata C{request} asks for, and end the call
        with its status if it asks for one (raises, through C{abort}).
        """
        if request.trailing:
            context.set_trailing_metadata(tuple(
                (key, value.encode() if key.endswith("-bin") else value)
                for key, value in sorted(request.trailing.items())))
        if request.status:
            context.abort(_status(request.status), request.status_message)

    def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._arrived("Unary", context)
        if not self._wait("Unary", request.delay, context):
            return self._messages.EchoReply()
        self._end(request, context)
        return self._reply(context, request.message, 0)

    def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._arrived("ServerStream", context)
        for index in range(request.count):
            if not self._wait("ServerStream", request.delay, context):
                return
            yield self._reply(context, request.message, index)
        self._end(request, context)

    def ClientStream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        self._arrived("ClientStream", context)
        messages, total, last = [], 0, self._messages.EchoRequest()
        for request in requests:
            messages.append(request.message)
            total += request.count
            last = request
        if not self._wait("ClientStream", last.delay, context):
            return self._messages.EchoReply()
        self._end(last, context)
        return self._reply(context, ",".join(messages), len(messages), total)

    def Bidi(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        self._arrived("Bidi", context)
        last = self._messages.EchoRequest()
        for index, request in enumerate(requests):
            if not self._wait("Bidi", request.delay, context):
                return
            yield self._reply(context, request.message, index)
            last = request
            if request.status:
                break
        self._end(last, context)


class GrpcServer:
    """
    L{EchoService} in a C{grpc.server} on 127.0.0.1, on a port of its
    own, plain or TLS.

    @ivar service: the service (what it saw).
    @ivar port: the port, once started.
    @ivar tls: whether it speaks TLS.
    """

    def __init__(self, tls: KeyPair | None = None, workers: int = 32) -> None:
        """
        @param tls: the certificate to serve TLS with (with its chain),
            or C{None} for plain HTTP/2.
        @param workers: the thread pool's size: the most calls the service
            handles at once (others wait).
        """
        _, service_module = echo_modules()
        self.service = EchoService()
        self.tls = tls is not None
        self._server = grpc.server(ThreadPoolExecutor(max_workers=workers),
                                   options=[("grpc.so_reuseport", 0)])
        service_module.add_EchoServicer_to_server(self.service, self._server)
        if tls is None:
            self.port: int = self._server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_pem.encode(), tls.chain_pem.encode())])
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        if not self.port:
            raise RuntimeError("the gRPC server could not bind 127.0.0.1")

    def start(self) -> GrpcServer:
        """
        Start serving.
        """
        self._server.start()
        return self

    def stop(self) -> Deferred[None]:
        """
        Stop at once (calls in progress are cancelled); fires when stopped.
        """
        stopped = self._server.stop(grace=0)
        return deferToThread(stopped.wait, 10).addCallback(lambda _: None)


def start_grpc_server(testcase: Any, tls: bool = False) -> GrpcServer:
    """
    Start a L{GrpcServer} (TLS with L{SERVER_PAIR} if C{tls}), stopped at
    the end of C{testcase}.
    """
    server = GrpcServer(SERVER_PAIR if tls else None).start()
    testcase.addCleanup(server.stop)
    return server


@attrs.frozen
class CallOutcome:
    """
    How one call ended, as the client saw it.

    @ivar code: its status.
    @ivar details: the status's message (C{grpc-message}), if any.
    @ivar replies: the reply messages received, in order.
    @ivar initial_metadata: the response's metadata (its headers).
    @ivar trailing_metadata: its trailing metadata.
    """

    code: grpc.StatusCode
    details: str | None
    replies: tuple[Any, ...]
    initial_metadata: tuple[tuple[str, str | bytes], ...]
    trailing_metadata: tuple[tuple[str, str | bytes], ...]

    @property
    def trailing(self) -> dict[str, str | bytes]:
        """
        The trailing metadata as a mapping (the last value of a key).
        """
        return dict(self.trailing_metadata)

    @property
    def reply(self) -> Any:
        """
        The only reply (of a call with one).
        """
        (one,) = self.replies
        return one


def _outcome(call: Any, replies: Sequence[Any]) -> CallOutcome:
    return CallOutcome(code=call.code(), details=call.details() or None, replies=tuple(replies),
                       initial_metadata=tuple(call.initial_metadata() or ()),
                       trailing_metadata=tuple(call.trailing_metadata() or ()))


class EchoClient:
    """
    Calls to an C{echotest.Echo} service on one grpcio channel (one
    HTTP/2 connection): each call made in a thread of the reactor's pool,
    its L{CallOutcome} answered in a Deferred.

    A request is given as keyword arguments (the fields of
    C{EchoRequest}), a stream of them as a sequence of mappings.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        messages, service_module = echo_modules()
        self.channel = channel
        self._messages = messages
        self._stub = service_module.EchoStub(channel)

    @staticmethod
    def _options(extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
        # No proxy from the environment, and no connection shared with
        # another channel of the process: this channel's calls are alone
        # on its connection.
        return [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1), *extra]

    @classmethod
    def insecure(cls, port: int, host: str = "127.0.0.1") -> EchoClient:
        """
        A client over plain HTTP/2 (h2c, prior knowledge) to C{host:port}.
        """
        return cls(grpc.insecure_channel(f"{host}:{port}", options=cls._options()))

    @classmethod
    def secure(cls, port: int, ca: KeyPair = TEST_CA, server_name: str = SERVER_NAME,
               host: str = "127.0.0.1") -> EchoClient:
        """
        A client over TLS (ALPN h2) to C{host:port}, trusting C{ca}, that
        checks the server's certificate for C{server_name} (sent as SNI
        and as the C{:authority}).
        """
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.encode())
        options = cls._options([("grpc.ssl_target_name_override", server_name),
                                ("grpc.default_authority", server_name)])
        return cls(grpc.secure_channel(f"{host}:{port}", credentials, options=options))

    def close(self) -> None:
        """
        Close the channel (calls in progress are cancelled).
        """
        self.channel.close()

    def request(self, **fields: Any) -> Any:
        """
        An C{EchoRequest} of C{fields}.
        """
        return self._messages.EchoRequest(**fields)

    def _in_thread(self, work: Callable[[], CallOutcome]) -> Deferred[CallOutcome]:
        return deferToThread(work)

    def unary(self, *, metadata: Metadata = (), timeout: float | None = 30.0,
              **fields: Any) -> Deferred[CallOutcome]:
        """
        Call C{Unary}.
        """
        request = self.request(**fields)

        def call() -> CallOutcome:
            try:
                reply, state = self._stub.Unary.with_call(request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as e:
                return _outcome(e, ())
            return _outcome(state, (reply,))

        return self._in_thread(call)

    def server_stream(self, *, metadata: Metadata = (), timeout: float | None = 30.0,
                      **fields: Any) -> Deferred[CallOutcome]:
        """
        Call C{ServerStream}, reading every reply.
        """
        request = self.request(**fields)
        return self._in_thread(lambda: self._read(self._stub.ServerStream(request, metadata=metadata,
                                                                          timeout=timeout)))

    def client_stream(self, requests: Sequence[Mapping[str, Any]], *, metadata: Metadata = (),
                      timeout: float | None = 30.0) -> Deferred[CallOutcome]:
        """
        Call C{ClientStream} with C{requests}.
        """
        messages = [self.request(**fields) for fields in requests]

        def call() -> CallOutcome:
            try:
                reply, state = self._stub.ClientStream.with_call(iter(messages), metadata=metadata,
                                                                 timeout=timeout)
            except grpc.RpcError as e:
                return _outcome(e, ())
            return _outcome(state, (reply,))

        return self._in_thread(call)

    def bidi(self, requests: Sequence[Mapping[str, Any]], *, metadata: Metadata = (),
             timeout: float | None = 30.0, lockstep: bool = False) -> Deferred[CallOutcome]:
        """
        Call C{Bidi} with C{requests}, reading every reply.

        @param lockstep: send each request only once the reply to the one
            before has come (else they are sent as the channel takes them).
        """
        messages = [self.request(**fields) for fields in requests]
        if not lockstep:
            return self._in_thread(lambda: self._read(self._stub.Bidi(iter(messages), metadata=metadata,
                                                                      timeout=timeout)))

        def call() -> CallOutcome:
            answered = threading.Semaphore(0)

            def paced() -> Iterator[Any]:
                for index, message in enumerate(messages):
                    if index and not answered.acquire(timeout=30):
                        return
                    yield message

            replies = []
            state = self._stub.Bidi(paced(), metadata=metadata, timeout=timeout)
            try:
                for reply in state:
                    replies.append(reply)
                    answered.release()
            except grpc.RpcError:
                pass
            return _outcome(state, replies)

        return self._in_thread(call)

    def call_path(self, path: str, payload: bytes = b"", *, metadata: Metadata = (),
                  timeout: float | None = 30.0) -> Deferred[CallOutcome]:
        """
        A unary call of any method, C{path} (C{/package.Service/Method}),
        with C{payload} as the request message's bytes; the replies are
        bytes.
        """
        method = self.channel.unary_unary(path)

        def call() -> CallOutcome:
            try:
                reply, state = method.with_call(payload, metadata=metadata, timeout=timeout)
            except grpc.RpcError as e:
                return _outcome(e, ())
            return _outcome(state, (reply,))

        return self._in_thread(call)

    @staticmethod
    def _read(state: Any) -> CallOutcome:
        replies = []
        try:
            for reply in state:
                replies.append(reply)
        except grpc.RpcError:
            pass
        return _outcome(state, replies)

    def unary_many(self, count: int, *, metadata: Metadata = (), timeout: float | None = 60.0,
                   **fields: Any) -> Deferred[list[CallOutcome]]:
        """
        Start C{count} C{Unary} calls at once on the channel (all in
        flight together, not one per thread), C{message} suffixed with each
        call's number; fires with their outcomes in order.
        """
        message = fields.pop("message", "")
        outcomes: list[Deferred[CallOutcome]] = []
        for number in range(count):
            future = self._stub.Unary.future(self.request(message=f"{message}{number}", **fields),
                                             metadata=metadata, timeout=timeout)
            done: Deferred[CallOutcome] = Deferred()
            future.add_done_callback(functools.partial(_settled, done))
            outcomes.append(done)
        return gatherResults(outcomes)


def _settled(done: Deferred[CallOutcome], future: Any) -> None:
    """
    Fire C{done}, in the reactor's thread, with how C{future} ended.
    """
    try:
        outcome = _outcome(future, (future.result(),))
    except grpc.RpcError as e:
        outcome = _outcome(e, ())
    except Exception as e:  # noqa: BLE001 -- a cancelled future: its code says so
        outcome = CallOutcome(grpc.StatusCode.CANCELLED, repr(e), (), (), ())
    reactor.callFromThread(done.callback, outcome)
