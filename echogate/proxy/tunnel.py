"""
WebSocket proxying: a GET that asks to switch to the WebSocket protocol
(L{wants_tunnel}) is routed and authorised as any request, then its
exchange opens a connection of its own to the service
(L{echogate.upstream.upgrade}) instead of using the upstream client. A 101
answer runs C{header_filter}, goes to the client, and the two connections
become a L{Tunnel}: bytes pass both ways, each side's transport pausing the
other's reads while it does not take what is written to it, until either
side closes (then the other is closed too) or nothing passed either way
for the service's C{read_timeout}. C{log} runs then, with C{ctx.tunnel}
(L{echogate.pdk.tunnel.TunnelState}). Any other answer is a response as
any other.
"""
from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.errors import ProxyError
from echogate.pdk.context import RequestContext, UpstreamRequest
from echogate.pdk.tunnel import CLIENT, GATEWAY, IDLE, SERVICE, TunnelState
from echogate.proxy.answers import upstream_head
from echogate.proxy.balancing import NO_PEER, OnePeer
from echogate.proxy.plan import Plan
from echogate.proxy.request import GatewayRequest
from echogate.proxy.responding import ABORTED, FINISHED, HEAD, Shared
from echogate.upstream.failures import describe, failure_answer
from echogate.upstream.upgrade import (
    UpgradeConnection,
    UpgradeResponse,
    connectors_of,
    is_websocket_upgrade,
    open_upgrade,
)

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

#: The exchange's state while its tunnel is open.
TUNNEL = "tunnel"

#: Header names of the answer's head the gateway writes itself.
_OWN = frozenset((b"connection", b"upgrade", b"content-length", b"transfer-encoding"))


class TunnelExchange(typing.Protocol):
    """
    What a tunnel needs of its exchange
    (L{echogate.proxy.exchange.Exchange} provides it).
    """

    _gateway: Shared
    request: GatewayRequest
    ctx: RequestContext
    state: str
    plan: Plan
    pending: Deferred | None

    def response_received(self, response: "IUpstreamResponse") -> None: ...

    def failed(self, failure: Failure, close: bool = False) -> None: ...

    def _header_filter(self) -> Deferred | None: ...

    def _log(self) -> None: ...


def _pairs(headers: Headers | list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if isinstance(headers, Headers):
        return [(name, value) for name, values in headers.getAllRawHeaders() for value in values]
    return list(headers)


def wants_tunnel(exchange: TunnelExchange) -> bool:
    """
    Whether the authorised request is a WebSocket handshake to pass on: a
    bodiless HTTP/1.1 GET with C{Connection: upgrade} and C{Upgrade:
    websocket}, to an http or https service (one whose host names an
    upstream goes to the peer its balancer picks, tried once).
    """
    request = exchange.request
    if request.method != b"GET" or request.clientproto != b"HTTP/1.1" or request.head_first:
        return False
    if not is_websocket_upgrade(request.requestHeaders):
        return False
    service: dict[str, Any] = exchange.ctx.service  # type: ignore[assignment]  # (routed)
    if (service.get("protocol") or "http") not in ("http", "https"):
        return False
    return True


@implementer(IPushProducer)
class _Reads:
    """
    One side's reading, paused and resumed by the other side's transport
    (registered as its producer); its stop does nothing: the tunnel closes
    both sides itself.
    """

    def __init__(self, transport: Any):
        self._transport = transport
        #: How many times the other side paused it.
        self.pauses = 0

    def pauseProducing(self) -> None:
        self.pauses += 1
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


class Tunnel:
    """
    A WebSocket handshake, then the connection it opened: the
    L{echogate.upstream.upgrade.UpgradeEvents} of the service's connection
    and the L{echogate.proxy.channel.TunnelReceiver} of the client's.

    @ivar state: the L{TunnelState} plugins see, once the 101 went out.
    @ivar down: the service's reads, paused while the client does not read.
    @ivar up: the client's reads, paused while the service does not read.
    """

    def __init__(self, exchange: TunnelExchange):
        self._exchange = exchange
        self._clock: IReactorTime = exchange._gateway.clock
        service: dict[str, Any] = exchange.ctx.service  # type: ignore[assignment]  # (routed)
        self._service = service
        balancers = exchange._gateway.balancers
        balancer = balancers.get(service["host"]) if balancers is not None else None
        #: The balancer's peer, when the service's host names an upstream.
        self._one = OnePeer(balancers, balancer, exchange.ctx, self._clock) if balancers and balancer else None
        self._timeout = service.get("read_timeout", 60000) / 1000.0
        self._timer: IDelayedCall | None = None
        self._timed_out = False
        self._conn: UpgradeConnection | None = None
        #: The service connection's transport (TCP, or TLS over it).
        self._upstream: Any = None
        self._held: list[bytes] | None = None
        self._over = False
        self._last = 0.0
        self.state: TunnelState | None = None
        self.down: _Reads | None = None
        self.up: _Reads | None = None

    # -- the handshake ----------------------------------------------------------

    def open(self) -> None:
        """
        Send the handshake to the service, on a connection of its own.
        """
        exchange = self._exchange
        ctx = exchange.ctx
        if self._one is not None:
            if self._one.peer is None:
                self._over = True
                exchange.failed(Failure(ProxyError(503, NO_PEER)))
                return
            self._service = self._one.service(self._service)
        upstream: UpstreamRequest = ctx.upstream  # type: ignore[assignment]  # (routed)
        target = upstream.path.encode("latin-1")
        if upstream.query:
            target += b"?" + upstream.query.encode("latin-1")
        upgrade = exchange.request.requestHeaders.getRawHeaders(b"upgrade", [b"websocket"])[0]
        pairs = [pair for pair in _pairs(upstream.as_is()) if pair[0].lower() not in _OWN]
        pairs += [(b"Upgrade", upgrade), (b"Connection", b"Upgrade")]
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (upstream.method.encode("ascii"), target,
                                              b"".join([b"%s: %s\r\n" % pair for pair in pairs]))
        ctx.upstream_started = self._clock.seconds()
        gateway = exchange._gateway
        connecting = open_upgrade(self._clock, self._service, pairs, lambda: UpgradeConnection(head, self),
                                  connectors_of(gateway.upstream))
        handshake: Deferred[None] = Deferred(lambda _: self._abandon(connecting))
        handshake.addErrback(lambda failure: failure.trap(CancelledError))  # (cancelled: the client went away)
        exchange.pending = handshake
        connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, conn: UpgradeConnection) -> None:
        self._conn = conn
        self._upstream = conn.transport
        self._timer = self._clock.callLater(self._timeout, self._head_timed_out)

    def _failed(self, failure: Failure) -> None:
        if self._one is not None:
            self._one.report(failed=True)
        if self._settled():
            self._over = True
            self._answered_with(failure)

    def _abandon(self, connecting: Deferred[UpgradeConnection]) -> None:
        # The client went away during the handshake (the exchange logs).
        if self._one is not None:
            self._one.report()
        self._over = True
        self._stop_timer()
        if not connecting.called:
            connecting.cancel()
        if self._conn is not None:
            self._upstream.abortConnection()

    def _head_timed_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._conn is not None:
            self._upstream.abortConnection()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _settled(self) -> bool:
        """
        The handshake has its answer: whether the exchange still wants it.
        """
        self._stop_timer()
        exchange = self._exchange
        exchange.pending = None
        exchange.ctx.upstream_responded = self._clock.seconds()
        return not self._over and not exchange.request.client_gone

    def refused(self, reason: Failure) -> None:
        if self._one is not None:
            self._one.report(failed=True)
        if self._settled():
            self._over = True
            self._answered_with(Failure(failure_answer(reason.value, self._timed_out)))

    def _answered_with(self, failure: Failure) -> None:
        exchange = self._exchange
        error = failure.value
        if isinstance(error, ProxyError):
            exchange._gateway.log_upstream_error(exchange.ctx, describe(error.__cause__, self._timed_out),
                                                 error.status)
        exchange.failed(failure)

    def answered(self, response: UpgradeResponse) -> None:
        if self._one is not None:
            self._one.report(response.code)
        if self._settled():
            self._over = True
            self._exchange.response_received(response)

    def switched(self, response: UpgradeResponse, rest: bytes) -> None:
        if self._one is not None:
            self._one.report(response.code)
        if not self._settled():
            self._upstream.abortConnection()
            return
        exchange = self._exchange
        exchange.state = HEAD
        upstream_head(exchange.ctx, response, b"GET")
        # Until the head is written, what the service sends waits.
        self._held = [rest] if rest else []
        self._upstream.pauseProducing()
        upgrade = dict((name.lower(), value) for name, value in response.raw_headers).get(b"upgrade", b"websocket")
        try:
            pending = exchange._header_filter()
        except BaseException:
            self._upstream.abortConnection()
            exchange.failed(Failure())
            return
        if pending is None:
            self._start(upgrade)
        else:
            def failed(failure: Failure) -> None:
                self._upstream.abortConnection()
                exchange.failed(failure)

            pending.addCallbacks(lambda _: self._start(upgrade), failed)

    def _start(self, upgrade: bytes) -> None:
        """
        Write the 101 to the client and join the two connections.
        """
        exchange = self._exchange
        request = exchange.request
        if request.client_gone or self._held is None:
            self._upstream.abortConnection()
            if self._held is None and not request.client_gone:
                # The service closed before the 101 could go out.
                exchange.failed(Failure(ProxyError(502, "An invalid response was received from the upstream server")))
            return
        ctx = exchange.ctx
        pairs = [pair for pair in _pairs(ctx.response.as_is()) if pair[0].lower() not in _OWN]
        pairs += [(b"Upgrade", upgrade), (b"Connection", b"Upgrade")]
        head = b"HTTP/1.1 101 Switching Protocols\r\n%s\r\n" % b"".join([b"%s: %s\r\n" % pair for pair in pairs])
        request.code, request.code_message, request.startedWriting = 101, b"Switching Protocols", 1
        channel = request.channel
        client = channel.transport
        client.write(head)
        request.finished = True
        site = getattr(channel, "site", None)
        if site is not None:
            site.log(request)
        now = self._last = self._clock.seconds()
        ctx.tunnel = self.state = TunnelState(opened=now)
        exchange.state = TUNNEL
        self.down = _Reads(self._upstream)
        self.up = _Reads(client)
        early = channel.switch_to_tunnel(self, self.down)
        self._upstream.registerProducer(self.up, True)
        held, self._held = self._held, None
        for data in held:
            self.tunnel_data(data)
        if early:
            self.client_data(early)
        self._upstream.resumeProducing()
        self._timer = self._clock.callLater(self._timeout, self._idle)

    # -- the tunnel -------------------------------------------------------------

    def tunnel_data(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            held.append(data)
            return
        state = self.state
        if state is None or state.closed is not None:
            return
        state.bytes_down += len(data)
        self._last = self._clock.seconds()
        self._exchange.request.channel.transport.write(data)

    def client_data(self, data: bytes) -> None:
        state = self.state
        if state is None or state.closed is not None:
            return
        state.bytes_up += len(data)
        self._last = self._clock.seconds()
        self._conn.write(data)  # type: ignore[union-attr]  # (open)

    def tunnel_lost(self, reason: Failure) -> None:
        if self._held is not None:
            self._held = None  # (the 101 is not written yet: _start answers 502)
            return
        self._close(SERVICE)

    def client_lost(self, reason: Failure) -> None:
        self._close(CLIENT)

    def _idle(self) -> None:
        self._timer = None
        idle = self._clock.seconds() - self._last
        if idle < self._timeout:
            self._timer = self._clock.callLater(self._timeout - idle, self._idle)
            return
        self._close(IDLE)

    def close(self) -> None:
        """
        Close both sides (the gateway ends the tunnel).
        """
        self._close(GATEWAY)

    def _close(self, by: str) -> None:
        state = self.state
        if state is None or state.closed is not None:
            return
        self._stop_timer()
        state.closed = self._clock.seconds()
        state.closed_by = by
        if by != SERVICE and self._conn is not None:
            self._upstream.loseConnection()
        exchange = self._exchange
        if by != CLIENT:
            exchange.request.channel.transport.loseConnection()
        exchange.state = FINISHED if by in (CLIENT, SERVICE) else ABORTED
        exchange._log()


def start_tunnel(exchange: TunnelExchange) -> Tunnel:
    """
    Pass the authorised WebSocket handshake of C{exchange} on.
    """
    tunnel = Tunnel(exchange)
    tunnel.open()
    return tunnel


__all__ = ["TUNNEL", "Tunnel", "TunnelExchange", "start_tunnel", "wants_tunnel"]
