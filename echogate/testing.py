"""
Testing plugins without sockets: a whole gateway (router, plugin runner,
proxy resource) built from the plugins and configs you give it, in front of
an upstream that is a Python function.

    from echogate.testing import GatewayHarness

    class HeaderEchoTests(unittest.TestCase):
        async def test_echo(self):
            gateway = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})])
            response = await gateway.request("GET", "/x", headers={"X-Request-Echo": "hi"})
            self.assertEqual(response.header("X-Response-Echo"), "hi")

Each request goes through a real L{echogate.proxy.site.GatewaySite} over an
in-memory transport, so what the plugin sees is what it would see in the
running gateway. Configs are validated with the plugin's C{config_schema}
(defaults filled in), as the Admin API does; so are the route and the
service (L{echogate.entities.writes.prepare_insert}): a field the Admin API
would refuse raises L{echogate.errors.SchemaViolation}. An
L{UpstreamAnswer} with C{chunks} streams its body to the gateway piece by
piece, with the back-pressure of a real connection.

Each plugin's C{node_service(node)} hook is called with a L{HarnessNode}
(C{gateway.node}) whose reactor is the harness's C{Clock} and whose
C{run_in_thread} runs in line (or as C{run_in_thread=} says), so a plugin's
timers move only when the test advances C{gateway.clock}.

With C{store=} (any L{echogate.interfaces.IStore}, such as
L{MemoryStore}) the harness keeps its configuration there: it writes its
service, route, entities and plugin configs into the store, serves what
C{store.load()} returns, and loads again whenever the store's
C{subscribe} callback fires, as a node does.

@since: 0.1.0
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.entities.writes import prepare_insert
from echogate.errors import BAD_UPSTREAM, ProxyError, SchemaViolation
from echogate.interfaces import IPluginNode, IStore, IUpstreamClient, IUpstreamResponse
from echogate.pdk.cache import Cache, Caches
from echogate.pdk.entities import declare_storage
from echogate.pdk.http import HTTPClient
from echogate.pdk.messages import headers_of
from echogate.proxy.configure import ConfigurePhase
from echogate.proxy.gateway import Gateway, GatewayResource
from echogate.proxy.request import GatewayRequest
from echogate.proxy.site import GatewaySite
from echogate.proxy.snapshot import Snapshot
from echogate.schema import ENTITY
from echogate.store.data import ConfigurationData
from echogate.store.memory import MemoryStore
from echogate.upstream.hop_by_hop import NOT_END_TO_END, listed_names

#: The harness's service's id.
#:
#: @since: 0.1.0
SERVICE_ID = "00000000-0000-4000-8000-000000000001"
#: The harness's route's id.
#:
#: @since: 0.1.0
ROUTE_ID = "00000000-0000-4000-8000-000000000002"
#: The harness node's id (L{HarnessNode.node_id}).
#:
#: @since: 0.1.0
NODE_ID = "00000000-0000-4000-8000-000000000003"

_log = Logger(namespace="echogate.testing")


def run_inline(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """
    Call C{f(*args, **kwargs)} now, on this thread: the harness node's
    default C{run_in_thread}.

    @return: a Deferred of its result (or of its failure).

    @since: 0.1.0
    """
    return maybeDeferred(f, *args, **kwargs)


@implementer(IPluginNode)
@attrs.frozen
class HarnessNode:
    """
    The node L{GatewayHarness} gives its plugins' C{node_service(node)}
    hooks: the harness's clock, no database, and work meant for the
    thread pool run by C{runner} (L{run_inline} unless the test gives
    its own, e.g. one that holds the calls until the test fires them).

    @since: 0.1.0
    """

    reactor: IReactorTime
    node_id: str = NODE_ID
    dsn: str | None = None
    runner: Callable[..., Any] = run_inline
    #: The plugins' L{echogate.pdk.http.HTTPClient}: in a harness, over
    #: its C{outbound} handler (L{GatewayHarness}).
    http: Any = None
    #: The node's L{echogate.pdk.cache.Caches}: invalidations stay here.
    caches: Caches = attrs.field(default=attrs.Factory(lambda node: Caches(node.reactor, node.node_id),
                                                       takes_self=True))

    def cache(self, name: str, ttl: float | None = 60.0, neg_ttl: float | None = None,
              max_size: int = 1000) -> Cache:
        """
        The node's cache called C{name} (see L{IPluginNode.cache}),
        its values dated by the harness's clock.
        """
        return self.caches.cache(name, ttl=ttl, neg_ttl=neg_ttl, max_size=max_size)

    def run_in_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        C{runner(f, *args, **kwargs)}, as a Deferred.
        """
        return maybeDeferred(self.runner, f, *args, **kwargs)


@attrs.frozen
class UpstreamRequestSeen:
    """
    A request as the fake upstream received it.

    @since: 0.1.0
    """

    method: str
    path: str
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@attrs.frozen
class UpstreamAnswer:
    """
    What the fake upstream answers: a status, headers and a body.

    @ivar body: the whole body, handed over at once (with its length, as
        echogate's client hands over a small response).
    @ivar chunks: instead of C{body}, a body streamed in pieces: an
        iterable (a generator works) of C{bytes}, or of Deferreds firing
        with C{bytes} for a piece that comes later (failing, for an
        upstream that breaks off). The gateway gets the pieces one by one,
        and the next piece is taken only while the gateway has not paused
        the upstream (its C{BodyStreamer} pauses it while an asynchronous
        C{body_filter} works and when the client does not keep up). The
        length is unknown unless C{headers} has a Content-Length.
    @ivar trailers: the trailers that follow the body, C{(name, value)}
        byte pairs (an HTTP/2 service's: gRPC's C{grpc-status}...), given
        to the gateway as the response's C{trailers}; C{None}: none.

    @since: 0.1.0
    """

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    chunks: Iterable[Any] | None = attrs.field(default=None, eq=False)
    trailers: Sequence[tuple[bytes, bytes]] | None = None

    def __attrs_post_init__(self) -> None:
        if self.chunks is not None and self.body:
            raise ValueError("an UpstreamAnswer has a body or chunks, not both")


def no_outbound(request: UpstreamRequestSeen) -> UpstreamAnswer:
    """
    The default C{outbound} handler of L{GatewayHarness}: a plugin's call
    to another service fails (L{echogate.pdk.http.CallFailed}) saying the
    test gave none.

    @since: 0.1.0
    """
    raise ProxyError(502, f"the harness has no outbound service for {request.method} {request.path}:"
                          " pass GatewayHarness(outbound=handler)")


def echo_upstream(request: UpstreamRequestSeen) -> UpstreamAnswer:
    """
    The default fake upstream: answers 200 with the request it saw as JSON.

    @since: 0.1.0
    """
    body = json.dumps({"method": request.method, "path": request.path,
                       "headers": {k: v for k, v in request.headers.items()},
                       "body": request.body.decode("utf-8", "replace")}).encode()
    return UpstreamAnswer(200, {"Content-Type": "application/json"}, body)


@attrs.frozen
class HarnessResponse:
    """
    A response the gateway sent to the client.

    @since: 0.1.0
    """

    status: int
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """
        The first value of response header C{name}, or C{None}.
        """
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class _BodyProducer:
    """
    The fake upstream connection as the gateway's body protocol sees it
    (its C{transport}): delivers the body's pieces one by one, honouring
    C{pauseProducing}, C{resumeProducing} and C{stopProducing} as a real
    connection does.
    """

    def __init__(self, pieces: Iterable[Any], protocol: Any):
        self._pieces = iter(pieces)
        self._protocol = protocol
        self._paused = False
        self._running = False
        self._waiting = False
        self._ended = False
        self._arrived_piece: bytes | None = None
        self.stopped = False

    def start(self) -> None:
        self._protocol.makeConnection(self)
        self._run()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._run()

    def stopProducing(self) -> None:
        if self.stopped or self._ended:
            return
        self.stopped = True
        if not self._running:
            self._end(_stopped())
        # else: the delivery under way returns first, as with a connection,
        # whose abort is reported after the data being handled.

    def _end(self, reason: Failure) -> None:
        if not self._ended:
            self._ended = True
            self._protocol.connectionLost(reason)

    def _run(self) -> None:
        if self._running:
            return  # the loop under way goes on
        self._running = True
        try:
            while not (self._ended or self.stopped):
                if self._arrived_piece is not None:
                    if self._paused:
                        break
                    piece, self._arrived_piece = self._arrived_piece, None
                    self._deliver(piece)
                    continue
                if self._paused or self._waiting:
                    break
                try:
                    piece = next(self._pieces)
                except StopIteration:
                    self._end(Failure(ResponseDone()))
                    break
                except Exception:  # the upstream breaks off mid-body
                    self._end(Failure())
                    break
                if isinstance(piece, Deferred):
                    self._waiting = True
                    piece.addCallbacks(self._arrived, self._broke)
                else:
                    self._deliver(piece)
        finally:
            self._running = False
        if self.stopped:
            self._end(_stopped())

    def _deliver(self, piece: bytes) -> None:
        if piece and not (self._ended or self.stopped):
            self._protocol.dataReceived(bytes(piece))

    def _arrived(self, piece: bytes) -> None:
        # A piece that comes while the gateway has paused the upstream is
        # held until it resumes, as a paused connection holds its data.
        self._waiting = False
        if not self._ended:
            self._arrived_piece = piece if piece is not None else b""
            self._run()

    def _broke(self, failure: Failure) -> None:
        self._waiting = False
        self._end(failure)


def _stopped() -> Failure:
    return Failure(ConnectionLost("the gateway stopped the upstream body"))


@implementer(IUpstreamResponse)
class _FakeResponse:
    """
    The fake upstream's answer, handed over as echogate's own client hands
    over a response: the end-to-end header lines as wire pairs (hop-by-hop
    ones and the names Connection lists left out), the length apart, and a
    body that is all there (C{UpstreamAnswer.body}) or that streams
    (C{UpstreamAnswer.chunks}).
    """

    #: HTTP/1.1 responses carry no trailers (L{IUpstreamResponse.trailers}).
    trailers: list[tuple[bytes, bytes]] | None = None

    def __init__(self, answer: UpstreamAnswer):
        self.code = answer.status
        self.phrase = b"OK"
        self.version = (b"HTTP", 1, 1)
        self.raw_headers = [(name.encode("latin-1"), str(value).encode("latin-1"))
                            for name, value in answer.headers.items()]
        listed = listed_names(v for n, v in self.raw_headers if n.lower() == b"connection")
        self.end_to_end = [(n, v) for n, v in self.raw_headers
                           if n.lower() not in NOT_END_TO_END and n.lower() not in listed]
        self.via = any(n.lower() == b"via" for n, _ in self.end_to_end)
        self._body: bytes | None
        self._chunks: Iterable[Any] | None
        if answer.chunks is None:
            self.length: int | None = len(answer.body)
            self._body, self._chunks = answer.body, None
        else:
            declared = [v for n, v in self.raw_headers if n.lower() == b"content-length"]
            self.length = int(declared[0]) if declared else None
            self._body, self._chunks = None, answer.chunks
        self.producer: _BodyProducer | None = None
        if answer.trailers is not None:
            self.trailers = list(answer.trailers)

    @property
    def headers(self) -> Headers:
        return headers_of(self.end_to_end)

    def whole_body(self) -> bytes | None:
        body, self._body = self._body, None
        return body

    def deliverBody(self, protocol: Any) -> None:
        if self._chunks is not None:
            pieces, self._chunks = self._chunks, ()
        else:
            body, self._body = self._body, None
            pieces = [body] if body else []
        self.producer = _BodyProducer(pieces, protocol)
        self.producer.start()


@implementer(IUpstreamClient)
class FunctionUpstream:
    """
    An upstream that calls C{handler(UpstreamRequestSeen)}; the handler
    returns an L{UpstreamAnswer} (or a Deferred of one), or raises to make
    the gateway answer 502.

    @since: 0.1.0
    """

    def __init__(self, handler: Callable[[UpstreamRequestSeen], Any]):
        self._handler = handler
        self.seen: list[UpstreamRequestSeen] = []

    def request(self, service: dict, method: bytes, target: bytes, headers: Any,
                body: Any = None) -> Deferred:
        if not isinstance(headers, Headers):
            headers = headers_of(headers)
        seen = UpstreamRequestSeen(
            method=method.decode("latin-1"),
            path=target.decode("latin-1"),
            headers={k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
                     for k, vs in headers.getAllRawHeaders()},
            body=body.read() if body is not None else b"",
        )
        self.seen.append(seen)
        d = maybeDeferred(self._handler, seen)
        d.addErrback(lambda f: Failure(ProxyError(502, BAD_UPSTREAM)) if not f.check(ProxyError) else f)
        return d.addCallback(_FakeResponse)

    def send(self, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
             callback: Callable[..., object], errback: Callable[..., object], args: tuple = ()) -> Deferred:
        """
        L{request} with the gateway's callbacks (see
        L{echogate.upstream.interfaces.IUpstreamClient.send}).
        """
        d = self.request(service, method, target, headers, body)
        d.addCallbacks(callback, errback, callbackArgs=args, errbackArgs=args)
        return d

    def close(self) -> Deferred:
        return succeed(None)


class _ClientTransport(StringTransport):
    """
    The client's side of a harness request: tells C{on_cut} when the
    gateway closes or aborts the connection.
    """

    on_cut: Callable[[], None] | None = None

    def loseConnection(self) -> None:
        super().loseConnection()
        self._cut()

    def abortConnection(self) -> None:
        super().abortConnection()
        self._cut()

    def _cut(self) -> None:
        on_cut, self.on_cut = self.on_cut, None
        if on_cut is not None:
            on_cut()


def _plugin_record(plugin: Any, config: Mapping[str, Any], scope: Mapping[str, Any]) -> dict:
    validated = plugin.config_schema.validate(dict(config))
    record = {"id": str(uuid.uuid4()), "name": plugin.name, "config": validated, "enabled": True,
              "service": None, "route": None, "consumer": None}
    for key in ("service", "route", "consumer"):
        value = scope.get(key)
        if value is not None:
            record[key] = {"id": value}
    return record


def _raw_request(method: str, path: str, headers: Mapping[str, str] | None, body: bytes) -> bytes:
    """
    The bytes a harness request sends: C{Host: gateway.test} unless
    C{headers} has a Host, and a Content-Length with a body (or with a
    method that has one).
    """
    hdrs = {"Host": "gateway.test"}
    hdrs.update(headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parse_response(raw: bytes) -> HarnessResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode("latin-1").strip().lower(), []).append(value.decode("latin-1").strip())
    if headers.get("transfer-encoding", [""])[0].lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
    else:
        body = rest
    return HarnessResponse(status, headers, body)


class GatewayHarness:
    """
    A gateway for tests: one service (C{http://upstream.test}) and one
    route (C{paths=["/"]} unless you pass C{route}), the given plugins
    enabled, the given plugin configs stored.

    @param plugins: plugin objects to enable.
    @param configs: C{(plugin_name, config)} or C{(plugin_name, config,
        scope)} where C{scope} may name C{"route"}, C{"service"} or
        C{"consumer"} ids (L{ROUTE_ID}, L{SERVICE_ID}); no scope means
        global.
    @param upstream: the fake upstream's handler (default
        L{echo_upstream}), or any L{IUpstreamClient} (such as
        L{echogate.upstream.lean.LeanUpstreamClient} for a real service):
        the gateway sends its requests there instead
        (L{upstream_requests} is then only a L{FunctionUpstream}'s).
    @param route: route fields to use instead of the default route's.
    @param service: service fields to use instead of the default service's.
        The route and the service are completed and validated as the
        Admin API completes and validates a POSTed one (its defaults:
        C{strip_path} is on).
    @param entities: other stored entities by collection, such as
        C{{"consumers": [{"username": "alice"}], "keyauth_credentials":
        [{"consumer": {"id": ...}, "key": "k"}]}}: each is completed and
        validated as the Admin API does (ids, timestamps, defaults,
        generated keys, hashed passwords). L{set_entities} changes them
        between requests.
    @param clock: the gateway's clock, also the plugins' node's reactor
        (a new C{Clock} by default).
    @param run_in_thread: how the plugins' node (L{HarnessNode}) runs
        work meant for its thread pool: in line by default.
    @param outbound: where the plugins' calls to other services
        (C{node.http}) go: a handler as C{upstream} takes one (it sees
        each call as an L{UpstreamRequestSeen}, its C{path} the URL's
        path and query, its C{Host} header the URL's host), or any
        L{IUpstreamClient} (a L{echogate.upstream.lean.LeanUpstreamClient}
        reaches real services); by default L{no_outbound}.
        L{outbound_requests} lists a handler's calls.
    @param store: where the configuration lives, any L{IStore} (such as
        L{MemoryStore}); C{None} (the default): nowhere, the harness
        serves its records as it made them. With a store, the harness
        writes its service, route, C{entities} and plugin configs into it
        (one C{write} of upserts), serves a snapshot of what
        C{store.load()} returns, and loads again each time the store's
        C{subscribe} callback fires (a change written by the test, or by
        L{set_entities}). Until the first load answers it serves its own
        records. A failed load is logged (trial then fails the test).
    @raise SchemaViolation: if C{route} or C{service} has a field the Admin
        API would refuse (the message names it).

    @ivar node: the L{HarnessNode} given to every plugin's
        C{node_service(node)} hook, at construction.
    @ivar services: the services those hooks returned, started; L{stop}
        stops them.
    @ivar loading: with a store, a Deferred of the latest load (firing
        with C{None} once its snapshot is served); without one, a fired
        Deferred.

    @since: 0.1.0
    """

    def __init__(self, plugins: Iterable[Any], configs: Sequence[tuple] = (),
                 upstream: Callable[[UpstreamRequestSeen], Any] | IUpstreamClient = echo_upstream,
                 route: Mapping[str, Any] | None = None, service: Mapping[str, Any] | None = None,
                 clock: Clock | None = None, run_in_thread: Callable[..., Any] | None = None,
                 entities: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 store: IStore | None = None,
                 outbound: Callable[[UpstreamRequestSeen], Any] | IUpstreamClient = no_outbound):
        from echogate.registry import check_plugin

        self.plugins = {p.name: p for p in plugins}
        for plugin in self.plugins.values():
            check_plugin(plugin)
        self.clock = clock or Clock()
        self.outbound: IUpstreamClient = (outbound if IUpstreamClient.providedBy(outbound)
                                          else FunctionUpstream(outbound))
        self.node = HarnessNode(self.clock, runner=run_in_thread or run_inline,
                                http=HTTPClient(self.outbound, self.clock))
        self.services = MultiService()
        for plugin in self.plugins.values():
            node_service = getattr(plugin, "node_service", None)
            if callable(node_service):
                child = node_service(self.node)
                if child is not None:
                    child.setServiceParent(self.services)
        self.services.startService()
        service_record = self._entity("service", "services", {"id": SERVICE_ID, "name": "upstream",
                                                              "host": "upstream.test"}, service)
        route_record = self._entity("route", "routes", {"id": ROUTE_ID, "name": "default", "paths": ["/"],
                                                        "service": {"id": SERVICE_ID}}, route)
        records = self._plugin_records(configs)
        self._config_ids = [r["id"] for r in records]
        self._data = ConfigurationData(version=1, services=(service_record,), routes=(route_record,),
                                       plugins=tuple(records))
        self.snapshot = Snapshot.build(self._data, self.plugins)
        self._store = store
        if store is not None:
            # Where the plugins' own entities live in the store (as the
            # node's live configuration tells it).
            declare_storage(store, self.plugins)
        self._served_version = -1
        self._stored_ids: dict[str, list[str]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self.loading: Deferred[None] = succeed(None)
        if store is None:
            if entities:
                self.set_entities(entities)
        else:
            stored = self._complete(entities or {})
            self._stored_ids = {name: [r["id"] for r in rs] for name, rs in stored.items()}
            operations: list[tuple[str, str, Mapping[str, Any]]] = [
                ("upsert", "services", service_record), ("upsert", "routes", route_record)]
            operations += [("upsert", name, r) for name, rs in stored.items() for r in rs]
            operations += [("upsert", "plugins", r) for r in records]
            self._unsubscribe = store.subscribe(self._store_changed)
            self.loading = store.write(operations).addCallback(lambda _: self._load())
            self.loading.addErrback(self._load_failed)
        if IUpstreamClient.providedBy(upstream):
            self.upstream: IUpstreamClient = upstream
        else:
            self.upstream = FunctionUpstream(upstream)
        self.gateway = Gateway(clock=self.clock, snapshot=lambda: self.snapshot, upstream=self.upstream)
        self.site = GatewaySite(GatewayResource(self.gateway), reactor=self.clock)
        #: The plugins' C{configure} phase: called now with the configs
        #: served, then whenever a newly served snapshot changes them.
        self.configure_phase = ConfigurePhase(self.plugins)
        self.configure_phase.start(self.snapshot.plugins)

    def _plugin_records(self, configs: Sequence[tuple]) -> list[dict[str, Any]]:
        records = []
        for item in configs:
            name, config = item[0], item[1]
            scope = item[2] if len(item) > 2 else {}
            if name not in self.plugins:
                raise ValueError(f"plugin {name!r} is not among the harness's plugins")
            records.append(_plugin_record(self.plugins[name], config, scope))
        return records

    def _switch(self, snapshot: Snapshot) -> None:
        """
        Serve C{snapshot}, and run the C{configure} phase of the plugins
        whose configs it changed.
        """
        self.snapshot = snapshot
        phase = getattr(self, "configure_phase", None)
        if phase is not None:
            phase.switched(snapshot.plugins)

    def set_configs(self, configs: Sequence[tuple]) -> None:
        """
        Replace the plugin configs (given as the constructor's C{configs})
        and serve them from the next request on; the plugins whose configs
        changed have their C{configure} called. With a store, the configs
        the harness wrote are deleted there and these written; they are
        served once the store's notification has been loaded.
        """
        records = self._plugin_records(configs)
        old_ids, self._config_ids = self._config_ids, [r["id"] for r in records]
        if self._store is None:
            self._data = attrs.evolve(self._data, version=self._data.version + 1, plugins=tuple(records))
            self._switch(Snapshot.build(self._data, self.plugins))
            return
        for old in old_ids:
            self._store.delete("plugins", old).addErrback(self._load_failed)
        if records:
            self._store.write([("upsert", "plugins", r) for r in records]).addErrback(self._load_failed)

    @property
    def outbound_requests(self) -> list[UpstreamRequestSeen]:
        """
        Every call the plugins made to other services through
        C{node.http}, oldest first, as the C{outbound} handler saw them.

        @raise AttributeError: C{outbound} was an L{IUpstreamClient}.
        """
        if not isinstance(self.outbound, FunctionUpstream):
            raise AttributeError("outbound_requests: the harness's outbound is not a handler")
        return self.outbound.seen

    def _load(self) -> Deferred[None]:
        """
        Read the store's configuration and serve it (unless a newer one is
        served already: loads may answer out of order).
        """
        assert self._store is not None
        return self._store.load().addCallback(self._serve)

    def _serve(self, data: ConfigurationData) -> None:
        if data.version < self._served_version:
            return
        self._served_version = data.version
        self._data = data
        self._switch(Snapshot.build(data, self.plugins, previous=self.snapshot))

    def _store_changed(self, version: int | None) -> None:
        """
        The store's C{subscribe} callback: load again.
        """
        self.loading = self._load()
        self.loading.addErrback(self._load_failed)

    def _load_failed(self, failure: Failure) -> None:
        _log.failure("the harness could not load its store's configuration", failure)

    def stop(self) -> Deferred:
        """
        Stop the plugins' services (L{services}), as a node stops them, and
        stop following the store.
        """
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        return maybeDeferred(self.services.stopService)

    def _entity(self, what: str, collection: str, default: dict[str, Any],
                overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """
        The harness's service or route: C{default} with C{overrides},
        completed and validated as the Admin API does a POST.

        @raise SchemaViolation: naming the bad fields (the message says
            whether the harness's route or service has them).
        """
        fields = dict(default)
        if overrides:
            if not isinstance(overrides, Mapping):
                raise SchemaViolation({ENTITY: ["expected a record"]}, f"harness {what}: expected a record")
            if overrides.get("url") is not None:
                fields.pop("host")  # the url stands for protocol, host, port and path
            fields.update(overrides)
        try:
            return prepare_insert(collection, fields, plugins=self.plugins,
                                  now=max(1, int(self.clock.seconds())), new_id=str(uuid.uuid4()))
        except SchemaViolation as e:
            raise SchemaViolation(e.fields or {}, f"harness {what}: {e}") from None

    def stored(self, collection: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        C{record} completed and validated as the Admin API stores a new
        entity of C{collection}.
        """
        from echogate.entities import credentials

        fields = credentials.fill_generated(collection, dict(record))
        complete = prepare_insert(collection, fields, plugins=self.plugins,
                                  now=max(1, int(self.clock.seconds())), new_id=str(uuid.uuid4()))
        return credentials.on_write(collection, complete, fields)

    def _complete(self, entities: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return {name: [self.stored(name, r) for r in records] for name, records in entities.items()}

    def set_entities(self, entities: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict]]:
        """
        Store these entities (by collection, replacing that collection's
        earlier ones) and serve them from the next request on. With a
        store, the earlier ones the harness wrote are deleted there and
        the new ones written (one C{write}); they are served once the
        store's notification has been loaded (at once with a
        L{MemoryStore}).

        @return: the stored records, by collection.
        """
        stored = self._complete(entities)
        if self._store is None:
            declared = {d.name for p in self.plugins.values() for d in getattr(p, "entities", ()) or ()
                        if getattr(d, "table", None) is None}
            core = {name: tuple(records) for name, records in stored.items() if name not in declared}
            owned = [row for row in self._data.plugin_entities if row["entity"] not in stored]
            owned += [{"entity": name, "record": r} for name, rs in stored.items() if name in declared for r in rs]
            self._data = attrs.evolve(self._data, version=self._data.version + 1,
                                      plugin_entities=tuple(owned), **core)
            self._switch(Snapshot.build(self._data, self.plugins))
            return stored
        for name, records in stored.items():
            kept = [r["id"] for r in records]
            for old in self._stored_ids.get(name, []):
                if old not in kept:
                    self._store.delete(name, old).addErrback(self._load_failed)
            self._stored_ids[name] = kept
        writes: list[tuple[str, str, Mapping[str, Any]]] = [
            ("upsert", name, r) for name, rs in stored.items() for r in rs]
        self._store.write(writes).addErrback(self._load_failed)
        return stored

    @property
    def upstream_requests(self) -> list[UpstreamRequestSeen]:
        """
        Every request the fake upstream received, oldest first.

        @raise AttributeError: the harness was given an L{IUpstreamClient}
            rather than a handler.
        """
        if not isinstance(self.upstream, FunctionUpstream):
            raise AttributeError("upstream_requests: the harness's upstream is not a FunctionUpstream")
        return self.upstream.seen

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"", client_ip: str = "127.0.0.1", version: bytes | None = None) -> Deferred:
        """
        Send one request through the gateway.

        @param version: the HTTP version the gateway is told the request
            came in (its C{clientproto}), such as C{b"HTTP/2"} for a gRPC
            call as the HTTP/2 listener hands it on; the bytes still
            travel as HTTP/1.1 in memory. C{None}: HTTP/1.1.
        @return: a Deferred firing with a L{HarnessResponse} once the
            response is finished.
        """
        captured: list[GatewayRequest] = []

        class CapturedRequest(GatewayRequest):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                captured.append(self)

            if version is not None:
                def head_received(self, command: bytes, path: bytes, _: bytes) -> None:
                    super().head_received(command, path, version or _)

                def requestReceived(self, command: bytes, path: bytes, _: bytes) -> None:
                    super().requestReceived(command, path, version or _)

        self.site.requestFactory = CapturedRequest
        protocol = self.site.buildProtocol(IPv4Address("TCP", client_ip, 40000))
        transport = _ClientTransport(peerAddress=IPv4Address("TCP", client_ip, 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        protocol.makeConnection(transport)
        protocol.dataReceived(_raw_request(method, path, headers, body))
        if not captured or (transport.disconnecting and not captured[0].finished):
            # The HTTP parser refused the request itself (e.g. a 400), or the
            # gateway cut the connection (e.g. a body_filter raised).
            if not transport.value():
                return fail(ConnectionLost("the gateway closed the connection without an answer"))
            return succeed(_parse_response(transport.value()))
        request = captured[0]
        outcome: Deferred = Deferred()

        def finished(_: Any) -> None:
            if not outcome.called:
                outcome.callback(_parse_response(transport.value()))

        def cut() -> None:
            # The gateway closed the connection before the response was
            # finished (e.g. the upstream broke off mid-body): the client
            # got a truncated response.
            if not request.finished and not outcome.called:
                outcome.errback(ConnectionLost("the gateway closed the connection before the response's end"))

        if request.finished:
            finished(None)
        else:
            transport.on_cut = cut
            request.notifyFinish().addCallbacks(finished, lambda f: None if outcome.called else outcome.errback(f))

        def cleanup(r: Any) -> Any:
            if not transport.disconnecting or request.finished:
                protocol.connectionLost(Failure(ConnectionError("harness closed")))
            return r

        return outcome.addBoth(cleanup)


__all__ = ["GatewayHarness", "HarnessResponse", "UpstreamAnswer", "UpstreamRequestSeen", "FunctionUpstream",
           "echo_upstream", "ROUTE_ID", "SERVICE_ID", "HarnessNode", "NODE_ID", "run_inline", "MemoryStore",
           "no_outbound"]
