"""
The data path: a C{twisted.web} resource that matches each request to a
route, runs the plugins that apply, and streams it to the route's service
and back.

Order for one request (see docs/plugins.md): global C{rewrite}; routing on
the current snapshot; C{access} (a plugin may answer with C{ctx.exit});
the upstream request; C{header_filter}; C{body_filter} per chunk; C{log}
once the response is finished or the client went away.
"""
from __future__ import annotations

import ipaddress
import json
from functools import partial
from typing import Any, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource

from echogate.pdk.context import ClientRequest, RequestContext, UpstreamRequest
from echogate.errors import NO_ROUTE, NO_SERVICE, ProxyError
from echogate.proxy.headers import RequestHeaders, latency_ms, overlay_pairs
from echogate.routing.paths import normalize_path
from echogate.proxy.runner import PluginFailure, Step, call_phase, run_phase, run_steps
from echogate.proxy.request import SERVER, UNEXPECTED, GatewayRequest
from echogate.proxy.site import Counters, GatewaySite
from echogate.proxy.streaming import BodyStreamer, Drain, RequestBody
from echogate.proxy.forwarding import VIA, TrustedNetworks, upstream_headers
from echogate.upstream.agent import UpstreamClient, send_with_request
from echogate.upstream.failures import describe
from echogate.upstream.hop_by_hop import copy_end_to_end

_log = Logger(namespace="echogate.proxy")

def _ipv4_form(address: str) -> str:
    """
    An IPv4-mapped IPv6 address (C{::ffff:10.0.0.1}) in its IPv4 form.
    """
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def _valid_address(text: str | None) -> str | None:
    """
    C{text} as an IP address (IPv4 form for a mapped one), or C{None} when
    it is not one: a header's garbage never becomes the client address.
    """
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


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


def close_after(headers: Mapping[str, str]) -> bool:
    """
    Whether a response the gateway makes asks to close the connection.
    """
    value = headers.get("Connection")
    return value is not None and value.lower() == "close"


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

__all__ = ["Gateway", "GatewayResource", "GatewayRequest", "GatewaySite", "Counters"]


class GatewayResource(Resource):
    """
    The proxy's root resource: every request, whatever its path, goes to
    the L{Gateway}.
    """

    isLeaf = True

    def __init__(self, gateway: "Gateway"):
        super().__init__()
        self._gateway = gateway

    def render(self, request: GatewayRequest) -> int:
        self._gateway.handle(request)
        return server.NOT_DONE_YET

    def head(self, request: GatewayRequest) -> None:
        """
        The head of a request with a body (see
        L{GatewayRequest.head_received}): routed and authorised before the
        body is read.
        """
        self._gateway.head(request)


class Gateway:
    """
    Runs requests through the current configuration snapshot.

    @param snapshot: returns the current L{echogate.config_state.Snapshot}
        (called once per request).
    """

    def __init__(self, *, clock: Any, snapshot: Callable[[], Any], upstream: UpstreamClient,
                 trusted: TrustedNetworks | None = None, counters: Counters | None = None,
                 real_ip_header: str = "x-real-ip", real_ip_recursive: bool = False,
                 underscores: str = "drop"):
        self._clock = clock
        self._snapshot = snapshot
        self._upstream = upstream
        # The client's callback interface when it has one (echogate's own),
        # else its Deferred one: a Deferred per request costs several calls.
        self._send = getattr(upstream, "send", None) or partial(send_with_request, upstream)
        self._trusted = trusted or TrustedNetworks()
        self._real_ip_header = real_ip_header.lower().encode("ascii")
        self._real_ip_recursive = real_ip_recursive
        self._underscores = underscores
        self.counters = counters or Counters()

    # -- request start ---------------------------------------------------

    def _client_ip(self, request: GatewayRequest, peer: str) -> tuple[str, bool]:
        """
        The client's address and whether the peer is trusted: the peer's
        own, or, from a C{trusted_ips} peer, the one its C{real_ip_header}
        names (nginx's realip module: with C{real_ip_recursive}, the last
        address of the list that is not trusted; without, the last one). An
        IPv4-mapped IPv6 address is given in its IPv4 form, once, here:
        every plugin, log and header sees the same spelling.
        """
        peer = _ipv4_form(peer)
        trusted = self._trusted.trusts(peer)
        if not trusted:
            return peer, False
        values = request.requestHeaders.getRawHeaders(self._real_ip_header)
        if not values:
            return peer, True
        hops = [h.strip() for h in b",".join(values).decode("latin-1").split(",") if h.strip()]
        chosen = None
        if self._real_ip_recursive:
            for hop in reversed(hops):
                chosen = hop
                if not self._trusted.trusts(_ipv4_form(hop)):
                    break
        elif hops:
            chosen = hops[-1]
        address = _valid_address(chosen)
        return (address, True) if address is not None else (peer, True)

    def head(self, request: GatewayRequest) -> None:
        """
        Take the head of a request with a body, before any of the body is
        read: global C{rewrite}, routing and C{access} run now, so that a
        request refused by any of them (404, 401, 403, 413 on its declared
        length, a plugin's exit) is answered without its body ever being
        read, and the connection closed. Once they pass, the body is read
        (after C{100 Continue} if the client waits for it) and L{handle}
        sends the request on. Plugins that read the body in C{rewrite} or
        C{access} (C{reads_body}) run theirs once it is here.
        """
        request.answer_early = lambda status: self._answer_early(request, status)
        self.handle(request)

    def _answer_early(self, request: GatewayRequest, status: int) -> None:
        ctx = request.ctx
        if ctx is None or request.finished or request._disconnected:
            request.channel.refuse(status)
            return
        message = "Request size limit exceeded" if status == 413 else "Request timeout" if status == 408 else None
        self._respond_error(request, ctx, ProxyError(status, message or "Bad request"), close=True)

    def handle(self, request: GatewayRequest) -> None:
        """
        Answer C{request}, eventually.
        """
        ctx = request.ctx
        if ctx is not None:
            # The head was routed and authorised first; the body is here.
            self._body_arrived(request, ctx)
            return
        self.counters.total_requests += 1
        self.counters.active_requests += 1
        now = self._clock.seconds()
        uri = request.uri
        raw_path, _, query = uri.partition(b"?")
        address = request.getClientAddress()
        peer = getattr(address, "host", "127.0.0.1")
        client_ip, trusted = self._client_ip(request, peer)
        raw = raw_path.decode("latin-1")
        try:
            path = normalize_path(raw_path)
        except ValueError:
            path = None
        client = ClientRequest(request, path or raw, raw, query.decode("latin-1"), client_ip)
        ctx = RequestContext(request, client, now)
        ctx.peer_trusted = trusted
        ctx.on_client_gone = lambda: self._client_gone(request, ctx)
        request.ctx = ctx
        snapshot = ctx.snapshot = self._snapshot()
        ctx.steps = snapshot.plugins.global_steps
        if request._too_large:
            self._respond_error(request, ctx, ProxyError(413, "Request size limit exceeded"), close=True)
            return
        if path is None:
            self._respond_error(request, ctx, ProxyError(400, "Bad request"))
            return
        if request.holding and any(_reads_body(step, ctx) for step in snapshot.rewrite_steps):
            # A global plugin reads the body in rewrite: everything waits
            # for it (routing included, as before the body is read).
            request.continue_body()
            return
        self._rewrite_and_route(request, ctx)

    def _rewrite_and_route(self, request: GatewayRequest, ctx: RequestContext) -> None:
        snapshot = ctx.snapshot
        if snapshot.rewrite_steps:
            try:
                pending = run_phase(ctx, snapshot.rewrite_steps, "rewrite", until_exit=True)
            except BaseException:
                self._failed(Failure(), request, ctx)
                return
            if pending is not None:
                self._then(pending, request, ctx, self._route)
                return
        try:
            self._route(request, ctx)
        except BaseException:
            self._failed(Failure(), request, ctx)

    def _then(self, pending: Deferred | None, request: GatewayRequest, ctx: RequestContext,
              step: Callable[[GatewayRequest, RequestContext], None]) -> None:
        if pending is None:
            if request._disconnected:
                self._log_phase(ctx)
                return
            try:
                step(request, ctx)
            except BaseException:
                self._failed(Failure(), request, ctx)
            return

        # While a phase waits, a client that goes away cancels it
        # (_client_gone): a queued password check, a rate-limit round trip.
        ctx.pending = pending

        def next_step(_: Any = None) -> None:
            ctx.pending = None
            if request._disconnected:
                self._log_phase(ctx)
                return
            step(request, ctx)

        def failed(failure: Failure) -> None:
            ctx.pending = None
            if request._disconnected and _cancelled(failure):
                return  # cancelled because the client went away: logged there
            self._failed(failure, request, ctx)

        pending.addCallback(next_step)
        pending.addErrback(failed)

    # -- routing and access ----------------------------------------------

    def _route(self, request: GatewayRequest, ctx: RequestContext) -> None:
        if ctx.exit is not None:
            self._respond_exit(request, ctx)
            return
        snapshot = ctx.snapshot
        host = request.requestHeaders.getRawHeaders(b"host")
        match = snapshot.router.match(
            ctx.request.method,
            host[0].decode("latin-1") if host else None,
            ctx.request.path,
            RequestHeaders(request.requestHeaders),
            scheme=ctx.request.scheme,
        )
        if match is None:
            self._respond_error(request, ctx, ProxyError(404, NO_ROUTE))
            return
        route = ctx.route = match.route
        service = ctx.service = match.service
        ctx.match = match
        ctx.steps = snapshot.plugins.plan(route["id"], service["id"] if service else None)
        if service is None:
            self._respond_error(request, ctx, ProxyError(503, NO_SERVICE))
            return
        ctx.upstream = UpstreamRequest(
            upstream_headers(
                request.requestHeaders,
                service=service,
                preserve_host=route.get("preserve_host", False),
                client_ip=ctx.request.client_ip,
                peer_trusted=ctx.peer_trusted,
                scheme=ctx.request.scheme,
                listener_port=request.getHost().port,
                path=ctx.request.path,
                stripped=match.removed_prefix,
                underscores=self._underscores == "allow",
            ),
            match.upstream_path,
            ctx.request.query,
            ctx.request.method,
        )
        if request.holding and any(_reads_body(step, ctx) for step in ctx.steps.access_steps):
            # A plugin reads the body in access: read it first, then access.
            request.access_after_body = True
            request.continue_body()
            return
        self._access_phase(request, ctx)

    def _access_phase(self, request: GatewayRequest, ctx: RequestContext) -> None:
        plan = ctx.steps
        if plan.static:
            # Every config is its step's entry's: no lookups to remember.
            access = plan.access_steps
            pending = run_phase(ctx, access, "access", until_exit=True) if access else None
        else:
            # Configs are resolved in plan order, each with the consumer known
            # by then, and remembered for the later phases.
            ctx.configs = {}
            pending = run_steps(plan, lambda s: self._access(ctx, s), lambda: ctx.exit is not None)
        if pending is not None:
            self._then(pending, request, ctx, self._after_access)
        elif request.holding:
            self._after_access(request, ctx)
        else:
            self._proxy(request, ctx)  # _route's caller handles what it raises

    def _after_access(self, request: GatewayRequest, ctx: RequestContext) -> None:
        if request.holding and ctx.exit is None:
            # The head passed: now the body.
            request.continue_body()
            return
        self._proxy(request, ctx)

    def _body_arrived(self, request: GatewayRequest, ctx: RequestContext) -> None:
        """
        The body of a request whose head was taken first is here: run what
        waited for it (everything, when a global plugin reads the body in
        rewrite; access, when a plugin reads it there), then send it on.
        """
        try:
            if ctx.route is None and not ctx.logged:
                self._rewrite_and_route(request, ctx)
            elif request.access_after_body:
                request.access_after_body = False
                self._access_phase(request, ctx)
            else:
                self._proxy(request, ctx)
        except BaseException:
            self._failed(Failure(), request, ctx)

    def _config(self, ctx: RequestContext, step: Step) -> Mapping[str, Any] | None:
        """
        The config of C{step} for this request (most specific scope, the
        consumer's once one is known), remembered for the later phases.
        """
        configs = ctx.configs
        if configs is not None and step.name in configs:
            entry = configs[step.name]
        else:
            entry = step.entry
            if step.by_consumer and ctx.consumer is not None:
                route = ctx.route["id"] if ctx.route else None
                service = ctx.service["id"] if ctx.service else None
                entry = ctx.snapshot.plugins.resolve(step.name, route, service, ctx.consumer.get("id"))
            if configs is not None:
                configs[step.name] = entry
        return entry.config if entry is not None else None

    def _access(self, ctx: RequestContext, step: Step) -> Any:
        config = self._config(ctx, step)
        if config is None or step.access is None:
            return None
        return call_phase(step.name, "access", step.access, ctx.view(step.name), config)

    # -- upstream ----------------------------------------------------------

    def _proxy(self, request: GatewayRequest, ctx: RequestContext) -> None:
        if ctx.exit is not None:
            self._respond_exit(request, ctx)
            return
        upstream = ctx.upstream
        target = upstream.path.encode("latin-1")
        if upstream.query:
            target += b"?" + upstream.query.encode("latin-1")
        ctx.upstream_started = self._clock.seconds()
        body = RequestBody(data=upstream.body) if upstream.body is not None else RequestBody.of_request(request)
        sent = self._send(ctx.service, upstream.method.encode("ascii"), target, upstream.as_is(), body,
                          self._got_response, self._upstream_failed, (request, ctx))
        if not sent.called:
            ctx.pending = sent

    def _upstream_failed(self, failure: Failure, request: GatewayRequest, ctx: RequestContext) -> None:
        ctx.pending = None
        if request._disconnected:
            return
        if failure.check(ProxyError):
            self._log_upstream_error(request, ctx, describe(failure.value.__cause__), failure.value.status)
            self._respond_error(request, ctx, failure.value)
        else:
            self._failed(failure, request, ctx)

    def _log_upstream_error(self, request: GatewayRequest, ctx: RequestContext, reason: str,
                            status: int | None) -> None:
        """
        One error log line for an upstream that failed, as nginx's error log
        has it: which service address, why, and for which request.
        """
        service = ctx.service or {}
        route = ctx.route or {}
        _log.error("upstream {upstream} {reason} while proxying {method} {path} for {client}"
                   " (service {service}, route {route}){answered}",
                   upstream=f"{service.get('host')}:{service.get('port')}", reason=reason,
                   method=ctx.request.method, path=ctx.request.path, client=ctx.request.client_ip,
                   service=service.get("name") or service.get("id"), route=route.get("name") or route.get("id"),
                   answered=f"; answered {status}" if status is not None else "")

    def upstream_broke(self, request: GatewayRequest, ctx: RequestContext, reason: Failure) -> None:
        """
        The service's response stopped before its end (the client got a
        truncated body and its connection is cut): log it, and write the
        access log line the request would have had.
        """
        self._log_upstream_error(request, ctx, f"closed the response early ({describe(reason.value)})", None)
        site = getattr(request, "site", None)
        if site is not None:
            site.log(request)

    def _got_response(self, response: Any, request: GatewayRequest, ctx: RequestContext) -> None:
        ctx.pending = None
        ctx.upstream_responded = self._clock.seconds()
        if request._disconnected:
            # Not expected (the client's going cancels the exchange), but a
            # response nobody will read is dropped, whichever client made it.
            response.deliverBody(Drain())
            return
        state = ctx.response
        state.status = state.upstream_status = response.code
        state.source = "service"
        # The response's Content-Length, when known: echogate's client and
        # Agent keep it apart from the headers; restoring it keeps the
        # response unchunked. As in Kong, a plugin whose body_filter changes
        # the body's length removes it in header_filter.
        length = b"%d" % response.length if isinstance(response.length, int) and request.method != b"HEAD" else None
        pairs = getattr(response, "end_to_end", None)
        if pairs is not None:
            # echogate's own client: wire pairs, already end to end, and ours.
            state.upstream_headers = response.raw_headers
            has_via = response.via
        else:
            # Agent's response: a Headers object, hop-by-hop headers included.
            state.upstream_headers = response.headers
            pairs = [(name, value) for name, values in copy_end_to_end(response.headers).getAllRawHeaders()
                     for value in values]
            has_via = any(name.lower() == b"via" for name, _ in pairs)
        # The head stays pairs up to the client unless a plugin asks for a
        # Headers object.
        if has_via:
            via = b", ".join([value for name, value in pairs if name.lower() == b"via"])
            pairs = [pair for pair in pairs if pair[0].lower() != b"via"]
            pairs.append((b"Via", via + b", " + VIA))
        else:
            pairs.append((b"Via", VIA))
        pairs.append((b"X-Echogate-Upstream-Latency", latency_ms(ctx.upstream_started, ctx.upstream_responded)))
        pairs.append((b"X-Echogate-Proxy-Latency", latency_ms(ctx.started, ctx.upstream_started)))
        if length is not None:
            pairs.append((b"Content-Length", length))
        if state.changed_early:
            pairs = overlay_pairs(pairs, state.as_is())
        state.replace_headers(pairs)
        body_filters = ctx.steps.body_filter_steps
        try:
            pending = self._header_filter(ctx)
        except BaseException:
            response.deliverBody(Drain())
            self._failed(Failure(), request, ctx)
            return

        def send(_: Any = None) -> None:
            self._write_head(request, ctx)
            whole = None if body_filters or not hasattr(response, "whole_body") else response.whole_body()
            if whole is not None:
                # It all came with the head (echogate's client): written now,
                # with the head, without a streamer.
                if whole:
                    request.write(whole)
                self.finish(request, ctx)
                return
            length = response.length if isinstance(response.length, int) else None
            streamer = BodyStreamer(self, request, ctx, body_filters,
                                    ctx.service.get("read_timeout", 60000) / 1000.0, length)
            ctx.on_client_gone = streamer.client_gone
            response.deliverBody(streamer)
            streamer.started()

        if pending is None:
            send()
        else:
            def failed(failure: Failure) -> None:
                response.deliverBody(Drain())
                self._failed(failure, request, ctx)

            pending.addCallbacks(send, failed)

    def _client_gone(self, request: GatewayRequest, ctx: RequestContext) -> None:
        pending = ctx.pending
        ctx.pending = None
        if pending is not None and not pending.called:
            pending.cancel()
        self._log_phase(ctx)

    # -- answering -----------------------------------------------------------

    def _run_phase(self, ctx: RequestContext, phase: str, steps: tuple[Step, ...]) -> Deferred | None:
        """
        Run C{phase} (C{header_filter} or C{log}) of C{steps} (the steps of
        the plan that have it), with the config that applies to this
        request.
        """
        if ctx.steps.static:
            return run_phase(ctx, steps, phase)
        return run_phase(ctx, steps, phase, lambda step: self._config(ctx, step))

    def _header_filter(self, ctx: RequestContext) -> Deferred | None:
        steps = ctx.steps.header_filter_steps
        return self._run_phase(ctx, "header_filter", steps) if steps else None

    def _write_head(self, request: GatewayRequest, ctx: RequestContext) -> None:
        state = ctx.response
        request.respond(state.status, state.as_is())

    def filter_body(self, ctx: RequestContext, steps: list[Step], chunk: bytes) -> bytes | Deferred:
        """
        Pass C{chunk} through every C{body_filter} in order.
        """
        static = ctx.steps.static
        for index, step in enumerate(steps):
            config = step.entry.config if static else self._config(ctx, step)
            if config is None:
                continue
            result = call_phase(step.name, "body_filter", step.body_filter, ctx.view(step.name), config, chunk)
            # (bytes and None first: isinstance with the generic Deferred is slow)
            if result is not None and type(result) is not bytes and isinstance(result, Deferred):
                rest = steps[index + 1:]
                return result.addCallback(
                    lambda out, c=chunk: self.filter_body(ctx, rest, c if out is None else out))
            if result is not None:
                chunk = result
        return chunk

    def _respond_exit(self, request: GatewayRequest, ctx: RequestContext) -> None:
        exit = ctx.exit
        self._respond_local(request, ctx, exit.status, exit.body, exit.headers, "exit")

    def _respond_error(self, request: GatewayRequest, ctx: RequestContext, error: ProxyError,
                       close: bool = False, filters: bool = True) -> None:
        body = json.dumps(error.body()).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if close:
            headers["Connection"] = "close"
        self._respond_local(request, ctx, error.status, body, headers, "error", filters)

    def _respond_local(self, request: GatewayRequest, ctx: RequestContext, status: int, body: bytes,
                       headers: Mapping[str, str], source: str, filters: bool = True) -> None:
        """
        Answer with a response the gateway (or a plugin) made, running the
        plugins' C{header_filter}, C{body_filter} and C{log}.
        """
        if request._disconnected:
            self._log_phase(ctx)
            return
        if request.body_pending or close_after(headers):
            # Answered before its body was read (or told to close): the
            # body is never read, and the connection closes after this.
            request.channel.close_after_response()
            headers = {**headers, "Connection": "close"}
        state = ctx.response
        state.status = status
        state.source = source
        state.replace_headers(overlay_pairs([], state.as_is()) if state.changed_early else [])
        for name, value in headers.items():
            state.set_header(name, str(value))
        state.set_header("Server", SERVER)
        state.set_header("Date", datetimeToString())
        state.set_header("X-Echogate-Response-Latency", latency_ms(ctx.started, self._clock.seconds()))
        if not filters:
            self._send_whole(request, ctx, body)
            return
        try:
            pending = self._header_filter(ctx)
        except BaseException:
            self._failed(Failure(), request, ctx)
            return

        def filtered(_: Any = None) -> None:
            steps = ctx.steps.body_filter_steps
            if not steps:
                self._send_whole(request, ctx, body)
                return
            try:
                first = self.filter_body(ctx, steps, body)
            except BaseException:
                self._failed(Failure(), request, ctx)
                return

            def last(data: bytes) -> Any:
                state.eof = True
                tail = self.filter_body(ctx, steps, b"")
                if isinstance(tail, Deferred):
                    return tail.addCallback(lambda t: self._send_whole(request, ctx, data + t))
                self._send_whole(request, ctx, data + tail)

            if isinstance(first, Deferred):
                first.addCallback(last).addErrback(self._failed, request, ctx)
            else:
                try:
                    result = last(first)
                except BaseException:
                    self._failed(Failure(), request, ctx)
                    return
                if isinstance(result, Deferred):
                    result.addErrback(self._failed, request, ctx)

        if pending is None:
            filtered()
        else:
            pending.addCallbacks(filtered, self._failed, errbackArgs=(request, ctx))

    def _send_whole(self, request: GatewayRequest, ctx: RequestContext, body: bytes) -> None:
        if request._disconnected:
            self._log_phase(ctx)
            return
        ctx.response.set_header("Content-Length", b"%d" % len(body))
        self._write_head(request, ctx)
        if body:
            request.write(body)
        self.finish(request, ctx)

    def finish(self, request: GatewayRequest, ctx: RequestContext) -> None:
        """
        Finish the response and run the C{log} phase.
        """
        if not request._disconnected and not request.finished:
            request.finish()
        self._log_phase(ctx)

    def _log_phase(self, ctx: RequestContext) -> None:
        if ctx.logged:
            return
        ctx.logged = True
        self.counters.active_requests -= 1
        steps = ctx.steps.log_steps
        if not steps:
            ctx.release()
            return
        try:
            pending = self._run_phase(ctx, "log", steps)
        except BaseException:
            self._report(Failure())
            ctx.release()
            return
        if pending is None:
            ctx.release()
        else:
            pending.addErrback(self._report)
            pending.addBoth(lambda _: ctx.release())

    def _report(self, failure: Failure) -> None:
        if failure.check(PluginFailure):
            error = failure.value
            inner = error.error if isinstance(error.error, Failure) else Failure(
                error.error, type(error.error), error.error.__traceback__)
            _log.failure("plugin {plugin} failed in its {phase} phase", failure=inner,
                         plugin=error.plugin, phase=error.phase)
        else:
            _log.failure("unexpected error on the data path", failure=failure)

    def _failed(self, failure: Failure, request: GatewayRequest, ctx: RequestContext) -> None:
        """
        Something raised: log it (naming the plugin), answer 500 if nothing
        was sent yet, otherwise cut the connection.
        """
        ctx.pending = None
        if failure.check(ProxyError):
            if not request.startedWriting and not request._disconnected:
                self._respond_error(request, ctx, failure.value)
                return
        else:
            self._report(failure)
        if request._disconnected:
            self._log_phase(ctx)
            return
        if request.startedWriting:
            request.loseConnection()
            self._log_phase(ctx)
            return
        failed_in_filters = failure.check(PluginFailure) and failure.value.phase in ("header_filter", "body_filter")
        self._respond_error(request, ctx, ProxyError(500, UNEXPECTED), filters=not failed_in_filters
                            and ctx.response.source != "error")
