"""
The responding half of an L{echogate.proxy.exchange.Exchange}: the
phases after the upstream (C{header_filter}, C{body_filter}, C{log}), the
events of the body's way to the client (the streamer's side), and the
answers the gateway or a plugin makes.
"""
from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from echogate.errors import ProxyError
from echogate.pdk.context import Exit, RequestContext
from echogate.proxy.answers import error_answer, local_head
from echogate.proxy.plan import Plan, Step
from echogate.proxy.request import UNEXPECTED, GatewayRequest
from echogate.proxy.runner import PluginFailure, call_phase, run_phase
from echogate.proxy.streaming import BodyStreamer
from echogate.proxy.uploads import response_over
from echogate.upstream.failures import describe

if TYPE_CHECKING:
    from echogate.balancer import Balancers
    from echogate.proxy.collecting import ResponseCollector
    from echogate.proxy.site import Counters
    from echogate.upstream.interfaces import IUpstreamClient

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
    balancers: "Balancers | None"
    counters: "Counters"
    underscores_allowed: bool
    #: The cap on a response body read whole (C{max_buffered_response}).
    max_buffered_response: int

    def report(self, failure: Failure) -> None:
        """Log C{failure}, naming the plugin that raised it."""

    def log_upstream_error(self, ctx: RequestContext, reason: str, status: int | None) -> None:
        """Log that the upstream failed."""



class Responding:
    """
    What an exchange does once it answers: see
    L{echogate.proxy.exchange.Exchange}, which is one, for the states.
    """

    __slots__ = ("_gateway", "request", "ctx", "state", "plan", "snapshot", "_configs", "pending",
                 "peer_trusted", "_streamer", "_logged", "_trailers")

    if TYPE_CHECKING:
        # Exchange's: what makes it its request's RequestEvents.
        def body_arrived(self) -> None: ...

        def client_gone(self) -> None: ...

        def answer_early(self, status: int) -> None: ...

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
        #: What reads the service's body: a streamer, or a collector when
        #: a plugin enabled buffering (L{echogate.proxy.collecting}).
        self._streamer: BodyStreamer | ResponseCollector | None = None
        self._logged = False
        #: The service's response, whose trailers
        #: (L{IUpstreamResponse.trailers}) the body's end hands to
        #: C{ctx.response.trailers}.
        self._trailers: Any = None

    @property
    def clock(self) -> IReactorTime:
        """
        The gateway's clock (for the streamer's read timeout).
        """
        return self._gateway.clock

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
            config = step.config if static else self.config(step)
            if config is None:
                continue
            # (every step of body_filter_steps has a body_filter)
            result = call_phase(step.name, "body_filter", step.body_filter,
                                ctx.view(step.name), config, data)
            # (bytes and None first: isinstance with the generic Deferred is slow)
            if result is not None and type(result) is not bytes and isinstance(result, Deferred):
                def go_on(out: bytes | None, d: bytes = data,
                          r: tuple[Step, ...] = steps[index + 1:]) -> bytes | Deferred[Any]:
                    return self.chunk(d if out is None else out, r)
                return result.addCallback(go_on)
            if result is not None:
                data = result
        return data

    def last_chunk(self) -> bytes | Deferred:
        """
        The body is over: C{body_filter} runs once more with C{eof} set
        and an empty chunk, for what the filters held back.
        """
        response = self.ctx.response
        response.eof = True
        self._take_trailers()
        return self.chunk(b"")

    def _take_trailers(self) -> None:
        """
        The body is over: the service's trailers (if any) become
        C{ctx.response.trailers}, for the last C{body_filter} call and the
        client.
        """
        response = self._trailers
        if response is not None:
            self._trailers = None
            trailers = response.trailers
            if trailers and self.ctx.response.trailers is None:
                self.ctx.response.trailers = list(trailers)

    def body_done(self) -> None:
        """
        The response was written whole: finish it and run C{log}.
        """
        request = self.request
        if not request._disconnected and not request.finished:  # (client_gone)
            if request.head_first:
                response_over(request)  # (a streamed body not all read: close)
            self._take_trailers()
            trailers = self.ctx.response.trailers
            if trailers:
                request.send_trailers(trailers)
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
        value = failure.value
        error = value if isinstance(value, ProxyError) else None
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
            filters = not (isinstance(value, PluginFailure) and value.phase in ("header_filter", "body_filter")
                           ) and self.ctx.response.source != "error"
        status, body, headers = error_answer(error, close, request)
        self._answer(status, body, headers, "error", filters)

    def _answer_exit(self) -> None:
        exit: Exit = self.ctx.exit  # type: ignore[assignment]  # (called once a plugin made one)
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
            # (HTTP/2 says it by ending the stream: no Connection header.)
            headers = ({k: v for k, v in headers.items() if k.lower() != "connection"} if request._h2
                       else {**headers, "Connection": "close"})
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

    def _header_filter(self) -> Deferred | None:
        """
        Run C{header_filter} with the config that applies to this request
        (a static plan's: each step's entry's).
        """
        plan = self.plan
        steps = plan.header_filter_steps
        return run_phase(self.ctx, steps, "header_filter", None if plan.static else self.config) if steps else None

    def _log(self) -> None:
        """
        Run the C{log} phase, once, then let go of the request.
        """
        if self._logged:
            return
        self._logged = True
        self._gateway.counters.active_requests -= 1
        plan = self.plan
        steps = plan.log_steps
        if not steps:
            self._release()
            return
        try:
            pending = run_phase(self.ctx, steps, "log", None if plan.static else self.config)
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
        self._trailers = None
        self.ctx.release()
