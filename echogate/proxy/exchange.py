"""
One proxied request's way through the gateway: an L{Exchange}, modelled on
C{twisted.web._newclient.HTTP11ClientProtocol}: one object per request, a
documented state, and methods named for the events that move it on. Its
responding half (the phases after the upstream, the body's way out, the
gateway's own answers) is L{echogate.proxy.responding.Responding}.

Its first half (rewrite, routing, access: the events before the
upstream) is L{echogate.proxy.admitting.Admitting}.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from echogate.errors import ProxyError
from echogate.pdk.context import UpstreamRequest
from echogate.proxy import collecting, uploads
from echogate.proxy.admitting import Admitting
from echogate.proxy.answers import upstream_head
from echogate.proxy.balancing import Balanced
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
    Shared,
)
from echogate.proxy.streaming import BodyStreamer, Drain, RequestBody
from echogate.upstream.failures import describe

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

__all__ = ["ABORTED", "ACCESS", "ANSWERING", "FINISHED", "HEAD", "REWRITE", "ROUTING", "STREAMING", "UPSTREAM",
           "Exchange", "Shared"]


class Exchange(Admitting):
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

    @ivar ctx: the request's L{echogate.pdk.context.RequestContext}, which
        the plugins see.
    @ivar pending: the Deferred the exchange waits on, if any: cancelled
        when the client goes away.
    """

    __slots__ = ()

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
        host_header = None
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
        if service["protocol"] in ("https", "grpcs") and self.snapshot.tls_policies is not None:
            # With how the service's certificate is verified (and the
            # client certificate it is shown), resolved once per snapshot.
            # The name verified is the Host header the gateway sends; with
            # preserve_host that is the client's, so the service's own name
            # is verified instead: else a client could name a host whose
            # certificate a man in the middle holds, and receive what
            # plugins add for the service (its credentials).
            preserved = ctx.route.get("preserve_host")  # type: ignore[union-attr]
            service = self.snapshot.tls_policies.with_policy(
                service, (host_header or service["host"]) if preserved else None)
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
        request = self.request
        if request._disconnected:  # (client_gone)
            # Not expected (the client's going cancels the exchange), but a
            # response nobody will read is dropped.
            response.deliverBody(Drain())
            return
        self.state = HEAD
        upstream_head(ctx, response, request.method)
        self._trailers = response
        if request.head_first and not request.body_complete:
            uploads.response_started(request)
        if ctx.upstream.buffering and collecting.wanted(self, response):  # type: ignore[union-attr]  # (routed)
            # A plugin asked for the whole body before header_filter.
            collecting.collect(self, response)
            return
        if not self.plan.header_filter_steps:
            self._respond(response)
            return
        try:
            pending = self._header_filter()
        except BaseException:
            response.deliverBody(Drain())
            self.failed(Failure())
            return
        if pending is None:
            self._respond(response)
        else:
            def failed(failure: Failure) -> None:
                response.deliverBody(Drain())
                self.failed(failure)

            pending.addCallbacks(lambda _: self._respond(response), failed)

    def _respond(self, response: "IUpstreamResponse") -> None:
        """
        C{header_filter} is over: write the head, and the body (the whole
        of it when it came with the head and no body filter runs, else
        through a L{BodyStreamer}).
        """
        request = self.request
        ctx = self.ctx
        request.respond(ctx.response.status, ctx.response.as_is())
        filters = self.plan.body_filter_steps
        whole = None if filters else response.whole_body()
        if whole is not None:
            # It all came with the head: written now, without a streamer.
            if whole:
                request.write(whole)
            self.body_done()
            return
        self.state = STREAMING
        length = response.length if isinstance(response.length, int) else None
        streamer = self._streamer = BodyStreamer(self, request, filters,
                                                 ctx.service.get(  # type: ignore[union-attr]  # (routed)
                                                     "read_timeout", 60000) / 1000.0, length)
        response.deliverBody(streamer)
        streamer.started()

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
