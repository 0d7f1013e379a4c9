"""
One proxied request's way through the gateway: an L{Exchange}, modelled on
C{twisted.web._newclient.HTTP11ClientProtocol}: one object per request, a
documented state, and methods named for the events that move it on. Its
responding half (the phases after the upstream, the body's way out, the
gateway's own answers) is L{echogate.proxy.responding.Responding}.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from echogate.errors import NO_ROUTE, NO_SERVICE, ProxyError
from echogate.pdk.context import RequestContext, UpstreamRequest
from echogate.proxy import collecting, uploads
from echogate.proxy.answers import https_required, upstream_head
from echogate.proxy.balancing import Balanced
from echogate.proxy.forwarding import upstream_headers
from echogate.proxy.headers import RequestHeaders
from echogate.proxy.plan import Step
from echogate.proxy.responding import (
    ABORTED,
    ACCESS,
    ANSWERING,
    FINISHED,
    HEAD,
    REWRITE,
    ROUTING,
    STREAMING,
    UPSTREAM,
    Responding,
    Shared,
)
from echogate.proxy.runner import PluginFailure, call_phase, run_phase, run_steps
from echogate.proxy.streaming import BodyStreamer, Drain, RequestBody
from echogate.proxy.tunnel import start_tunnel, wants_tunnel
from echogate.upstream.failures import describe

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

__all__ = ["ABORTED", "ACCESS", "ANSWERING", "FINISHED", "HEAD", "REWRITE", "ROUTING", "STREAMING", "UPSTREAM",
           "Exchange", "Shared"]

#: The states in which the request still waits for its body.
_WAITING = (REWRITE, ACCESS, UPSTREAM)


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


class Exchange(Responding):
    """
    One request through the gateway, from its head to its log phase.

    States (C{state}), in the order a proxied request passes them:

      - C{REWRITE}: the global C{rewrite} phase (or waiting for the body,
        when a global plugin reads it there).
      - C{ROUTING}: matching a route on the snapshot taken at the start.
      - C{ACCESS}: the C{access} phase of the plugins of the route's plan
        (or waiting for the body one of them reads).
      - C{UPSTREAM}: the request is on its way to the service (or waits
        for its body, after the head was authorised).
      - C{HEAD}: the service's head arrived; C{header_filter} runs.
      - C{STREAMING}: the body is passed on, through C{body_filter}, by a
        L{BodyStreamer}.
      - C{ANSWERING}: a response the gateway or a plugin made (an exit, an
        error) goes through C{header_filter} and C{body_filter}.
      - C{TUNNEL} (L{echogate.proxy.tunnel}): a WebSocket handshake was
        answered 101; bytes pass both ways until either side closes.
      - C{FINISHED}: the response was written whole; C{log} ran.
      - C{ABORTED}: the client went away, or the connection was cut after
        the head was sent; C{log} ran.

    Events: L{start}, L{body_arrived}, L{routed}, L{authorised},
    L{response_received}, L{chunk} and L{last_chunk} (for the streamer),
    L{body_done}, L{broke}, L{client_gone}, L{failed}. A failure is
    answered by what the state allows: an error response before anything
    was written, a cut connection after.

    @ivar ctx: the request's L{RequestContext}, which the plugins see.
    @ivar pending: the Deferred the exchange waits on, if any: cancelled
        when the client goes away.
    """

    __slots__ = ()

    # -- events before the upstream ------------------------------------------

    def start(self, path_ok: bool) -> None:
        """
        The request (or its head, when it has a body) is here.
        """
        request = self.request
        if request.too_large:
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
        self._rewrite()

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
        host = request.requestHeaders.getRawHeaders(b"host")
        host_name = host[0].decode("latin-1") if host else None
        router = self.snapshot.router
        tls = ctx.request.tls if router.uses_snis else None
        match = router.match(ctx.request.method, host_name, ctx.request.path, RequestHeaders(request.requestHeaders),
                             scheme=ctx.request.scheme, sni=tls.sni if tls is not None else None)
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
        upgrade = https_required(route, self._forwarded_proto(), host_name, request.uri)
        if upgrade is not None:
            self._answer(*upgrade, source="exit")
            return
        ctx.upstream = UpstreamRequest(
            upstream_headers(request.requestHeaders, service=service,
                             preserve_host=route.get("preserve_host", False), client_ip=ctx.request.client_ip,
                             peer_trusted=self.peer_trusted, scheme=ctx.request.scheme,
                             listener_port=request.getHost().port, path=ctx.request.path,
                             stripped=match.removed_prefix, underscores=self._gateway.underscores_allowed),
            match.upstream_path, ctx.request.query, ctx.request.method)
        self.state = ACCESS
        request.streams_body = request.holding and uploads.streams(route)
        if request.holding and any(_reads_body(step, ctx) for step in self.plan.access_steps):
            # A plugin reads the body in access: read it first, then access
            # (and the request is buffered, even on a streaming route).
            request.streams_body = False
            request.continue_body()
            return
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
            pending = run_phase(ctx, access, "access", until_exit=True) if access else None
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
        if wants_tunnel(self):
            # A WebSocket handshake: passed on by a tunnel (proxy/tunnel.py).
            start_tunnel(self)
            return
        # (a streamed body is read once the upstream connection is made)
        self._send()

    # -- the upstream ----------------------------------------------------------

    def _send(self) -> None:
        ctx = self.ctx
        # (routed made it, and found the route's service, before the state
        # became UPSTREAM: ctx.route and ctx.service are set too)
        upstream: UpstreamRequest = ctx.upstream  # type: ignore[assignment]
        target = upstream.path.encode("latin-1")
        if upstream.query:
            target += b"?" + upstream.query.encode("latin-1")
        ctx.upstream_started = self._gateway.clock.seconds()
        body: Any = (RequestBody(data=upstream.body) if upstream.body is not None
                     else uploads.StreamedBody(self.request) if self.request.holding
                     else RequestBody.of_request(self.request))
        client: Any = self._gateway.upstream
        balancers = self._gateway.balancers
        if balancers is not None:
            balancer = balancers.get(ctx.service["host"])  # type: ignore[index]
            if balancer is not None:
                # The service's host names an upstream: its balancer picks
                # the peer of each try.
                client = Balanced(balancers, balancer, client, ctx, self._gateway.clock)
                host_header = balancer.upstream.get("host_header")
                if host_header and not ctx.route.get("preserve_host"):  # type: ignore[union-attr]
                    upstream.set_header("Host", host_header)
        service: Any = ctx.service
        if service["protocol"] == "https" and self.snapshot.tls_policies is not None:
            # With how the service's certificate is verified (and the
            # client certificate it is shown), resolved once per snapshot.
            service = self.snapshot.tls_policies.with_policy(service)
        sent = client.send(service, upstream.method.encode("ascii"), target, upstream.as_is(),
                           body, self.response_received, self._upstream_failed)
        if not sent.called:
            self.pending = sent

    def _upstream_failed(self, failure: Failure) -> None:
        self.pending = None
        if self.request.client_gone:
            return
        error = failure.value
        if isinstance(error, ProxyError):
            self._gateway.log_upstream_error(self.ctx, describe(error.__cause__), error.status)
        self.failed(failure)

    def response_received(self, response: "IUpstreamResponse") -> None:
        """
        The service's head is here: run C{header_filter}, then write the
        head and pass the body on.
        """
        self.pending = None
        ctx = self.ctx
        ctx.upstream_responded = self._gateway.clock.seconds()
        if self.request.client_gone:
            # Not expected (the client's going cancels the exchange), but a
            # response nobody will read is dropped.
            response.deliverBody(Drain())
            return
        self.state = HEAD
        upstream_head(ctx, response, self.request.method)
        uploads.response_started(self.request)
        if collecting.wanted(self, response):
            # A plugin asked for the whole body before header_filter.
            collecting.collect(self, response)
            return
        try:
            pending = self._header_filter()
        except BaseException:
            response.deliverBody(Drain())
            self.failed(Failure())
            return

        def send(_: Any = None) -> None:
            self.request.respond(ctx.response.status, ctx.response.as_is())
            filters = self.plan.body_filter_steps
            whole = None if filters else response.whole_body()
            if whole is not None:
                # It all came with the head: written now, without a streamer.
                if whole:
                    self.request.write(whole)
                self.body_done()
                return
            self.state = STREAMING
            length = response.length if isinstance(response.length, int) else None
            streamer = self._streamer = BodyStreamer(self, self.request, filters,
                                                     ctx.service.get(  # type: ignore[union-attr]  # (routed)
                                                         "read_timeout", 60000) / 1000.0, length)
            response.deliverBody(streamer)
            streamer.started()

        if pending is None:
            send()
        else:
            def failed(failure: Failure) -> None:
                response.deliverBody(Drain())
                self.failed(failure)

            pending.addCallbacks(send, failed)

    def client_gone(self) -> None:
        """
        The client's connection was lost: cancel what the exchange waits
        on, stop the service's body, and run C{log}.
        """
        pending, self.pending = self.pending, None
        if pending is not None and not pending.called:
            pending.cancel()
        streamer = self._streamer
        if streamer is not None:
            streamer.stop()
        if self.state != FINISHED:
            self.state = ABORTED
        self._log()
