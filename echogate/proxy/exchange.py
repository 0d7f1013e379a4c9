"""
One proxied request's way through the gateway: an L{Exchange}, modelled on
C{twisted.web._newclient.HTTP11ClientProtocol}: one object per request, a
documented state, and methods named for the events that move it on.
"""
from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from echogate.errors import NO_ROUTE, NO_SERVICE, ProxyError
from echogate.pdk.context import RequestContext, UpstreamRequest
from echogate.proxy.answers import error_answer, local_head, upstream_head
from echogate.proxy.forwarding import upstream_headers
from echogate.proxy.headers import RequestHeaders
from echogate.proxy.plan import Plan, Step
from echogate.proxy.request import UNEXPECTED, GatewayRequest
from echogate.proxy.runner import PluginFailure, call_phase, run_phase, run_steps
from echogate.proxy.streaming import BodyStreamer, Drain, RequestBody
from echogate.upstream.failures import describe

if TYPE_CHECKING:
    from echogate.proxy.site import Counters
    from echogate.upstream.interfaces import IUpstreamClient, IUpstreamResponse

#: The states of an L{Exchange}.
REWRITE = "rewrite"
ROUTING = "routing"
ACCESS = "access"
UPSTREAM = "upstream"
HEAD = "head"
STREAMING = "streaming"
ANSWERING = "answering"
FINISHED = "finished"
ABORTED = "aborted"

#: The states in which the request still waits for its body.
_WAITING = (REWRITE, ACCESS, UPSTREAM)


class Shared(typing.Protocol):
    """
    What every exchange shares with the others
    (L{echogate.proxy.gateway.Gateway} provides it).
    """

    clock: IReactorTime
    upstream: "IUpstreamClient"
    counters: "Counters"
    underscores_allowed: bool

    def report(self, failure: Failure) -> None:
        """Log C{failure}, naming the plugin that raised it."""

    def log_upstream_error(self, ctx: RequestContext, reason: str, status: int | None) -> None:
        """Log that the upstream failed."""


def _cancelled(failure: Failure) -> bool:
    """
    Whether C{failure} is a cancellation, as such or as what a plugin's
    phase failed with.
    """
    if failure.check(CancelledError):
        return True
    if failure.check(PluginFailure):
        inner = failure.value.error
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


class Exchange:
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

    __slots__ = ("_gateway", "request", "ctx", "state", "plan", "snapshot", "_configs", "pending",
                 "peer_trusted", "_streamer", "_logged")

    def __init__(self, gateway: Shared, request: GatewayRequest, ctx: RequestContext, snapshot: Any,
                 peer_trusted: bool):
        self._gateway = gateway
        self.request = request
        self.ctx = ctx
        self.snapshot = snapshot
        self.peer_trusted = peer_trusted
        self.state = REWRITE
        self.plan: Plan = snapshot.plugins.global_steps
        self._configs: dict[str, Any] | None = None
        self.pending: Deferred | None = None
        self._streamer: BodyStreamer | None = None
        self._logged = False

    @property
    def clock(self) -> IReactorTime:
        """
        The gateway's clock (for the streamer's read timeout).
        """
        return self._gateway.clock

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
        match = self.snapshot.router.match(ctx.request.method, host[0].decode("latin-1") if host else None,
                                           ctx.request.path, RequestHeaders(request.requestHeaders),
                                           scheme=ctx.request.scheme)
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
        ctx.upstream = UpstreamRequest(
            upstream_headers(request.requestHeaders, service=service,
                             preserve_host=route.get("preserve_host", False), client_ip=ctx.request.client_ip,
                             peer_trusted=self.peer_trusted, scheme=ctx.request.scheme,
                             listener_port=request.getHost().port, path=ctx.request.path,
                             stripped=match.removed_prefix, underscores=self._gateway.underscores_allowed),
            match.upstream_path, ctx.request.query, ctx.request.method)
        self.state = ACCESS
        if request.holding and any(_reads_body(step, ctx) for step in self.plan.access_steps):
            # A plugin reads the body in access: read it first, then access.
            request.continue_body()
            return
        self._access()

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

    def config(self, step: Step) -> Any:
        """
        The config of C{step} for this request (most specific scope, the
        consumer's once one is known), remembered for the later phases;
        C{None} when none applies.
        """
        configs = self._configs
        if configs is not None and step.name in configs:
            entry = configs[step.name]
        else:
            entry = step.entry
            ctx = self.ctx
            if step.by_consumer and ctx.consumer is not None:
                route = ctx.route["id"] if ctx.route else None
                service = ctx.service["id"] if ctx.service else None
                entry = self.snapshot.plugins.resolve(step.name, route, service, ctx.consumer.get("id"))
            if configs is not None:
                configs[step.name] = entry
        return entry.config if entry is not None else None

    def authorised(self) -> None:
        """
        Access is over: answer the exit a plugin made, or read the body
        (when the head was taken first) and send the request on.
        """
        if self.ctx.exit is not None:
            self._answer_exit()
            return
        self.state = UPSTREAM
        if self.request.holding:
            self.request.continue_body()
            return
        self._send()

    # -- the upstream ----------------------------------------------------------

    def _send(self) -> None:
        ctx = self.ctx
        upstream = ctx.upstream
        target = upstream.path.encode("latin-1")
        if upstream.query:
            target += b"?" + upstream.query.encode("latin-1")
        ctx.upstream_started = self._gateway.clock.seconds()
        body = RequestBody(data=upstream.body) if upstream.body is not None else RequestBody.of_request(self.request)
        sent = self._gateway.upstream.send(ctx.service, upstream.method.encode("ascii"), target, upstream.as_is(),
                                           body, self.response_received, self._upstream_failed)
        if not sent.called:
            self.pending = sent

    def _upstream_failed(self, failure: Failure) -> None:
        self.pending = None
        if self.request.client_gone:
            return
        if failure.check(ProxyError):
            self._gateway.log_upstream_error(self.ctx, describe(failure.value.__cause__), failure.value.status)
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
                                                     ctx.service.get("read_timeout", 60000) / 1000.0, length)
            response.deliverBody(streamer)
            streamer.started()

        if pending is None:
            send()
        else:
            def failed(failure: Failure) -> None:
                response.deliverBody(Drain())
                self.failed(failure)

            pending.addCallbacks(send, failed)

    # -- the body (the streamer's side) ---------------------------------------

    def chunk(self, data: bytes, steps: tuple[Step, ...] | None = None) -> bytes | Deferred:
        """
        Pass C{data} through every C{body_filter} in order (C{steps}: the
        rest of them, after one went asynchronous).
        """
        if steps is None:
            steps = self.plan.body_filter_steps
        ctx = self.ctx
        static = self.plan.static
        for index, step in enumerate(steps):
            config = step.entry.config if static else self.config(step)
            if config is None:
                continue
            result = call_phase(step.name, "body_filter", step.body_filter, ctx.view(step.name), config, data)
            # (bytes and None first: isinstance with the generic Deferred is slow)
            if result is not None and type(result) is not bytes and isinstance(result, Deferred):
                rest = steps[index + 1:]
                return result.addCallback(lambda out, d=data: self.chunk(d if out is None else out, rest))
            if result is not None:
                data = result
        return data

    def last_chunk(self) -> bytes | Deferred:
        """
        The body is over: C{body_filter} runs once more with C{eof} set
        and an empty chunk, for what the filters held back.
        """
        self.ctx.response.eof = True
        return self.chunk(b"")

    def body_done(self) -> None:
        """
        The response was written whole: finish it and run C{log}.
        """
        request = self.request
        if not request.client_gone and not request.finished:
            request.finish()
        self.state = FINISHED
        self._log()

    def broke(self, reason: Failure) -> None:
        """
        The service's response stopped before its end: the client's
        connection is cut, the error logged, with the access log line the
        request would have had.
        """
        if self.state == ABORTED:
            return  # the connection was cut first (cut, client_gone)
        request = self.request
        if not request.client_gone:
            self._gateway.log_upstream_error(self.ctx, f"closed the response early ({describe(reason.value)})",
                                             None)
            site = getattr(request, "site", None)
            if site is not None:
                site.log(request)
            request.loseConnection()
        self.state = ABORTED
        self._log()

    def cut(self, failure: Failure) -> None:
        """
        A body filter failed mid-body (C{failure}): the streamer cut the
        client's connection; log the failure and run C{log}.
        """
        self.report(failure)
        self.state = ABORTED
        self._log()

    def report(self, failure: Failure) -> None:
        """
        Log C{failure}, naming the plugin when a plugin raised it.
        """
        self._gateway.report(failure)

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

    # -- answering -------------------------------------------------------------

    def failed(self, failure: Failure, close: bool = False) -> None:
        """
        Something went wrong; what is done depends on the state. An
        L{ProxyError} is answered with its status; anything else is logged
        (naming the plugin) and answered 500 if nothing was written yet.
        Once the head was written, the connection is cut; once the client
        is gone, only C{log} runs.
        """
        self.pending = None
        request = self.request
        state = self.state
        if state in (FINISHED, ABORTED):
            if not failure.check(ProxyError):
                self.report(failure)
            return
        error = failure.value if failure.check(ProxyError) else None
        if error is None:
            self.report(failure)
        if request.client_gone:
            self.state = ABORTED
            self._log()
            return
        if request.startedWriting:
            request.loseConnection()
            self.state = ABORTED
            self._log()
            return
        filters = True
        if error is None:
            error = ProxyError(500, UNEXPECTED)
            # A filter that failed is not run again on the error, nor on a
            # failing error answer.
            filters = not (failure.check(PluginFailure) and failure.value.phase in ("header_filter", "body_filter")
                           ) and self.ctx.response.source != "error"
        status, body, headers = error_answer(error, close)
        self._answer(status, body, headers, "error", filters)

    def _answer_exit(self) -> None:
        exit = self.ctx.exit
        self._answer(exit.status, exit.body, exit.headers, "exit")

    def _answer(self, status: int, body: bytes, headers: Any, source: str, filters: bool = True) -> None:
        """
        Answer with a response the gateway (or a plugin) made, running the
        plugins' C{header_filter}, C{body_filter} and C{log}.
        """
        request = self.request
        if request.client_gone:
            self.state = ABORTED
            self._log()
            return
        self.state = ANSWERING
        if request.body_pending or headers.get("Connection", "").lower() == "close":
            # Answered before its body was read (or told to close): the
            # body is never read, and the connection closes after this.
            request.channel.close_after_response()
            headers = {**headers, "Connection": "close"}
        local_head(self.ctx, status, headers, source, self._gateway.clock.seconds())
        if not filters:
            self._write_whole(body)
            return
        try:
            pending = self._header_filter()
        except BaseException:
            self.failed(Failure())
            return
        if pending is None:
            self._filter_whole(body)
        else:
            pending.addCallbacks(lambda _: self._filter_whole(body), self.failed)

    def _filter_whole(self, body: bytes) -> None:
        if not self.plan.body_filter_steps:
            self._write_whole(body)
            return
        try:
            first = self.chunk(body)
            if isinstance(first, Deferred):
                first.addCallback(self._filter_tail).addErrback(self.failed)
                return
            result = self._filter_tail(first)
        except BaseException:
            self.failed(Failure())
            return
        if isinstance(result, Deferred):
            result.addErrback(self.failed)

    def _filter_tail(self, data: bytes) -> Deferred | None:
        tail = self.last_chunk()
        if isinstance(tail, Deferred):
            return tail.addCallback(lambda t: self._write_whole(data + t))
        self._write_whole(data + tail)
        return None

    def _write_whole(self, body: bytes) -> None:
        request = self.request
        if request.client_gone:
            self.state = ABORTED
            self._log()
            return
        response = self.ctx.response
        response.set_header("Content-Length", b"%d" % len(body))
        request.respond(response.status, response.as_is())
        if body:
            request.write(body)
        self.body_done()

    # -- phases after the upstream ------------------------------------------

    def _run_phase(self, phase: str, steps: tuple[Step, ...]) -> Deferred | None:
        """
        Run C{phase} (C{header_filter} or C{log}) of C{steps} with the
        config that applies to this request.
        """
        if self.plan.static:
            return run_phase(self.ctx, steps, phase)
        return run_phase(self.ctx, steps, phase, self.config)

    def _header_filter(self) -> Deferred | None:
        steps = self.plan.header_filter_steps
        return self._run_phase("header_filter", steps) if steps else None

    def _log(self) -> None:
        """
        Run the C{log} phase, once, then let go of the request.
        """
        if self._logged:
            return
        self._logged = True
        self._gateway.counters.active_requests -= 1
        steps = self.plan.log_steps
        if not steps:
            self._release()
            return
        try:
            pending = self._run_phase("log", steps)
        except BaseException:
            self.report(Failure())
            self._release()
            return
        if pending is None:
            self._release()
        else:
            pending.addErrback(self.report)
            pending.addBoth(lambda _: self._release())

    def _release(self) -> None:
        """
        The request is over (after C{log}): break the reference cycles
        between the request, this exchange, the context, its plugin views
        and the streamer, so that reference counting frees them at once
        instead of the cyclic garbage collector, which would otherwise run
        often and walk the whole configuration each time.
        """
        request = self.request
        if request.exchange is self:
            request.exchange = None
        self.pending = None
        self._streamer = None
        self.ctx.release()
