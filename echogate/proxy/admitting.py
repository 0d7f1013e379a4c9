"""
The half of an L{echogate.proxy.exchange.Exchange} before the upstream
(L{Admitting}): the global C{rewrite} phase, routing, the C{access}
phase, and the body read first when a plugin reads it there (or answered
early when it is too large or too slow).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from echogate.errors import NO_ROUTE, NO_SERVICE, ProxyError
from echogate.pdk.context import RequestContext, UpstreamRequest
from echogate.pdk.rawheaders import DIRECT, stored_name
from echogate.proxy import uploads
from echogate.proxy.answers import grpc_route_mismatch, https_required
from echogate.proxy.forwarding import upstream_headers
from echogate.proxy.headers import RequestHeaders
from echogate.proxy.plan import Step
from echogate.proxy.responding import ACCESS, REWRITE, ROUTING, UPSTREAM, Responding
from echogate.proxy.runner import PluginFailure, call_phase, run_phase, run_steps
from echogate.proxy.tunnel import start_tunnel, wants_tunnel
from echogate.upstream.byprotocol import GRPC_PROTOCOLS

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

#: The states in which the request still waits for its body.
_WAITING = (REWRITE, ACCESS, UPSTREAM)
_HOST = stored_name(b"host")
_UPGRADE = stored_name(b"upgrade")
_NEW = object.__new__
#: The headers a router that reads none is given.
_NO_HEADERS: Mapping[str, list[str]] = MappingProxyType({})


def _cancelled(failure: Failure) -> bool:
    """
    Whether C{failure} is a cancellation, as such or as what a plugin's
    phase failed with.
    """
    if failure.check(CancelledError):
        return True
    error = failure.value
    if isinstance(error, PluginFailure):
        inner = error.error
        value = inner.value if isinstance(inner, Failure) else inner
        return isinstance(value, CancelledError)
    return False


def _reads_body(step: Step, ctx: RequestContext) -> bool:
    """
    Whether C{step}'s plugin reads the request body in the phase about to
    run, for this request: its C{reads_body} (a boolean, or called with
    the config and C{ctx.request}). A plugin that does not say is taken to
    read it (plugins written before bodies were read after access), unless
    it is a L{echogate.plugin.GatewayPlugin}, whose default is C{False}.
    """
    reads = getattr(step.plugin, "reads_body", True)
    if not callable(reads):
        return bool(reads)
    entry = step.entry
    if entry is None or step.by_consumer:
        return True
    return bool(reads(entry.config, ctx.request))


class Admitting(Responding):
    """
    What an exchange does before the upstream: the events L{start},
    L{body_arrived}, L{answer_early}, L{routed} and L{authorised} (see
    L{echogate.proxy.exchange.Exchange} for the states).
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Exchange's: sends the request on, and takes the service's head.
        def _send(self) -> None: ...

        def response_received(self, response: IUpstreamResponse) -> None: ...

    def start(self, path_ok: bool) -> None:
        """
        The request (or its head, when it has a body) is here.
        """
        request = self.request
        if request._too_large:  # (too_large)
            self.failed(Failure(ProxyError(413, "Request size limit exceeded")), close=True)
            return
        if not path_ok:
            self.failed(Failure(ProxyError(400, "Bad request")))
            return
        if request.holding and any(_reads_body(step, self.ctx) for step in self.snapshot.rewrite_steps):
            # A global plugin reads the body in rewrite: everything waits
            # for it (routing included).
            request.continue_body()
            return
        if self.snapshot.rewrite_steps:
            self._rewrite()
            return
        try:
            self.routed()  # (_rewrite's, with nothing to run)
        except BaseException:
            self.failed(Failure())

    def body_arrived(self) -> None:
        """
        The body of a request whose head was taken first is whole: run
        what waited for it.
        """
        state = self.state
        try:
            if state == REWRITE:
                self._rewrite()
            elif state == ACCESS:
                self._access()
            elif state == UPSTREAM:
                self._send()
        except BaseException:
            self.failed(Failure())

    def answer_early(self, status: int) -> None:
        """
        Answer C{status} (413, 408) before the body is all read, and close.
        """
        if self.state not in _WAITING or self.request.client_gone:
            self.request.channel.refuse(status)
            return
        message = "Request size limit exceeded" if status == 413 else "Request timeout" if status == 408 else None
        pending = self.pending
        if self.state == UPSTREAM and pending is not None:
            # A streamed body stopped mid-way: the upstream request is cut.
            self.pending = None
            pending.cancel()
        self.failed(Failure(ProxyError(status, message or "Bad request")), close=True)

    def _rewrite(self) -> None:
        steps = self.snapshot.rewrite_steps
        if steps:
            try:
                pending = run_phase(self.ctx, steps, "rewrite", until_exit=True)
            except BaseException:
                self.failed(Failure())
                return
            if pending is not None:
                self._wait(pending, self.routed)
                return
        try:
            self.routed()
        except BaseException:
            self.failed(Failure())

    def _wait(self, pending: Deferred, next_step: Callable[[], None]) -> None:
        """
        Go on with C{next_step} once C{pending} fires; while it waits, a
        client that goes away cancels it (a queued password check, a
        rate-limit round trip).
        """
        self.pending = pending

        def fired(_: Any) -> None:
            self.pending = None
            if self.request.client_gone:
                self._log()
                return
            next_step()

        def failed(failure: Failure) -> None:
            self.pending = None
            if self.request.client_gone and _cancelled(failure):
                return  # cancelled because the client went away: logged there
            self.failed(failure)

        # (failed also takes what next_step raises)
        pending.addCallback(fired).addErrback(failed)

    def routed(self) -> None:
        """
        Rewrite is over: match the route, then run access.
        """
        ctx = self.ctx
        if ctx.exit is not None:
            self._answer_exit()
            return
        self.state = ROUTING
        request = self.request
        headers = request.requestHeaders
        host = (headers._rawHeaders.get(_HOST) if DIRECT and type(headers) is Headers
                else headers.getRawHeaders(b"host"))
        host_name = host[0].decode("latin-1") if host else None
        router = self.snapshot.router
        client = ctx.request
        # (a router none of whose routes match on headers never reads them)
        seen = RequestHeaders(headers) if router.reads_headers else _NO_HEADERS
        if router.uses_snis:
            tls = client.tls
            match = router.match(client.method, host_name, client.path, seen,
                                 scheme=client.scheme, sni=tls.sni if tls is not None else None)
        else:
            match = router.match(client.method, host_name, client.path, seen, scheme=client.scheme)
        if match is None:
            self.failed(Failure(ProxyError(404, NO_ROUTE)))
            return
        route = ctx.route = match.route
        service = ctx.service = match.service
        ctx.match = match
        self.plan = self.snapshot.plugins.plan(route["id"], service["id"] if service else None)
        if service is None:
            self.failed(Failure(ProxyError(503, NO_SERVICE)))
            return
        protocols = route.get("protocols")
        if protocols is not None and "http" not in protocols:
            # (Only an https-only or a gRPC route has more to check: most have http.)
            scheme = self._forwarded_proto()
            upgrade = (https_required(route, scheme, host_name, request.uri)
                       or grpc_route_mismatch(route, request, scheme))
            if upgrade is not None:
                self._answer(*upgrade, source="exit")
                return
        # (upstream_headers's arguments in order: a call with keywords costs more)
        upstream = _NEW(UpstreamRequest)  # (UpstreamRequest(...): see Gateway.handle)
        upstream.__init__(  # type: ignore[misc]
            upstream_headers(headers, service, route.get("preserve_host", False), client.client_ip,
                             self.peer_trusted, client.scheme, request.host.port, client.path,
                             match.removed_prefix, self._gateway.underscores_allowed),
            match.upstream_path, client.query, client.method)
        ctx.upstream = upstream
        self.state = ACCESS
        # (A gRPC call's messages go to the service as they come: client
        # and bidirectional streaming need it.)
        request.streams_body = request.holding and (uploads.streams(route)
                                                    or service.get("protocol") in GRPC_PROTOCOLS)
        if request.holding and any(_reads_body(step, ctx) for step in self.plan.access_steps):
            # A plugin reads the body in access: read it first, then access
            # (and the request is buffered, even on a streaming route).
            request.streams_body = False
            request.continue_body()
            return
        plan = self.plan
        if plan.static and not plan.access_steps:
            self.authorised()  # (_access, with nothing to run)
        else:
            self._access()

    def _forwarded_proto(self) -> str:
        """
        The request's scheme: C{https} over TLS, or when a trusted peer
        says so in C{X-Forwarded-Proto}.
        """
        scheme = self.ctx.request.scheme
        if scheme != "https" and self.peer_trusted:
            values = self.request.requestHeaders.getRawHeaders(b"x-forwarded-proto")
            if values and values[0].strip().lower() == b"https":
                return "https"
        return scheme

    def _access(self) -> None:
        plan = self.plan
        ctx = self.ctx
        if plan.static:
            # Every config is its step's entry's: no lookups to remember.
            access = plan.access_steps
            # (config_of and until_exit positional: a call with a keyword costs more)
            pending = run_phase(ctx, access, "access", None, True) if access else None
        else:
            # Configs are resolved in plan order, each with the consumer
            # known by then, and remembered for the later phases.
            self._configs = {}
            pending = run_steps(plan, self._access_step, lambda: ctx.exit is not None)
        if pending is not None:
            self._wait(pending, self.authorised)
        else:
            self.authorised()

    def _access_step(self, step: Step) -> Any:
        config = self.config(step)
        if config is None or step.access is None:
            return None
        return call_phase(step.name, "access", step.access, self.ctx.view(step.name), config)

    def authorised(self) -> None:
        """
        Access is over: answer the exit a plugin made, or read the body
        (when the head was taken first) and send the request on.
        """
        if self.ctx.exit is not None:
            self._answer_exit()
            return
        self.state = UPSTREAM
        request = self.request
        if request.holding and not (request.streams_body and self.ctx.upstream.body is None):  # type: ignore[union-attr]
            request.continue_body()
            return
        headers = request.requestHeaders
        # (wants_tunnel's own first look, inline: most requests have no Upgrade header)
        if (not DIRECT or type(headers) is not Headers or _UPGRADE in headers._rawHeaders) and wants_tunnel(self):
            # A WebSocket handshake: passed on by a tunnel (proxy/tunnel.py).
            start_tunnel(self)
            return
        # (a streamed body is read once the upstream connection is made)
        self._send()
