"""
One request to a load-balanced service: L{Balanced} stands in for the
upstream client (it has the same C{send}) when the service's host names an
upstream. Each attempt goes to a peer the upstream's balancer picks,
leaving out those already tried; an attempt that failed before anything
was sent (the connection could not be made) is retried on the next peer,
up to the service's C{retries}; every outcome is reported to the balancer
(passive health checks, latency, requests in flight), and each try is kept
for the plugins (C{ctx.balancer}) and the log record (C{tries}).
"""
from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from echogate.balancer import TCP_FAILURE, TIMEOUT, Balancer, Balancers, Outcome, Peer, RequestView, hash_key
from echogate.errors import ProxyError
from echogate.pdk.balancer import BalancerState
from echogate.pdk.context import RequestContext
from echogate.upstream.failures import is_connect_failure

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamClient, IUpstreamResponse

#: Kong's answer when no target of the upstream can take the request.
NO_PEER = "failure to get a peer from the ring-balancer"


def _cookie(ctx: RequestContext, name: str) -> str | None:
    header = ctx.request.get_header("cookie")
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def request_view(ctx: RequestContext) -> RequestView:
    """
    What a hash key may be made of, for the request of C{ctx}.
    """
    match = ctx.match
    captures: dict[Any, str | None] = {}
    if match is not None:
        captures.update(enumerate(match.captures, 1))
        captures.update(match.named_captures)
    consumer = ctx.consumer or {}
    credential = ctx.credential or {}
    return RequestView(
        consumer_id=consumer.get("id"), credential_id=credential.get("id"), client_ip=ctx.request.client_ip,
        path=ctx.request.path, header=lambda name: ctx.request.get_header(name),
        cookie=lambda name: _cookie(ctx, name),
        query_arg=lambda name: ctx.request.query_args.get(name), uri_captures=captures)


def key_of(balancer: Balancer, ctx: RequestContext) -> str | None:
    """
    The request's hash key for C{balancer}'s upstream (C{None} when it
    hashes on nothing); a hash cookie the request lacks is handed out on
    the response.
    """
    upstream = balancer.upstream
    if (upstream.get("hash_on") or "none") == "none":
        return None
    key = hash_key(upstream, request_view(ctx))
    if key.cookie is not None:
        cookie = key.cookie
        ctx.response.add_header("Set-Cookie", f"{cookie.name}={cookie.value}; Path={cookie.path}")
    return key.value


class OnePeer:
    """
    The peer of a request that is tried once (a WebSocket handshake: its
    connection is the tunnel's, not the pool's), picked as L{Balanced}
    picks, and reported once.

    @ivar peer: the peer picked, or C{None} when none can take it (Kong's
        503, L{NO_PEER}).
    """

    def __init__(self, balancers: Balancers, balancer: Balancer, ctx: RequestContext, clock: IReactorTime):
        self._balancers = balancers
        self._clock = clock
        self._state = ctx.balancer = BalancerState()
        self.peer = self._unreported = balancer.pick(key_of(balancer, ctx))
        self._started = clock.seconds()
        if self.peer is not None:
            self._state.tried(self.peer, self._started)

    def service(self, service: Mapping[str, Any]) -> dict[str, Any]:
        """
        C{service} aimed at the peer (connected to once: no retries).
        """
        assert self.peer is not None
        return {**service, "host": self.peer.address, "port": self.peer.port, "retries": 0}

    def report(self, status: int | None = None, failed: bool = False) -> None:
        """
        How the try went: the service's C{status}, or C{failed} to
        connect; or neither (the client went away). Once.
        """
        peer, self._unreported = self._unreported, None
        if peer is None:
            return
        latency = self._clock.seconds() - self._started
        self._state.answered(status, latency)
        self._balancers.report(peer, Outcome(status=status, failure=TCP_FAILURE if failed else None,
                                             latency=latency if status is not None else None))


class Balanced:
    """
    The upstream client for one request to a load-balanced service, and
    the handle of that request (C{called}, C{cancel()}).
    """

    __slots__ = ("_balancers", "_balancer", "_client", "_ctx", "_clock", "_key", "_peer", "_started", "_handle",
                 "_tried", "state", "called", "_request", "_callback", "_errback", "_args", "_retries",
                 "__weakref__")

    def __init__(self, balancers: Balancers, balancer: Balancer, client: "IUpstreamClient",
                 ctx: RequestContext, clock: IReactorTime):
        self._balancers = balancers
        self._balancer = balancer
        self._client = client
        self._ctx = ctx
        self._clock = clock
        self._key = key_of(balancer, ctx)
        self._peer: Peer | None = None
        self._started = 0.0
        self._handle: Any = None
        self._tried: list[Peer] = []
        self.state = ctx.balancer = BalancerState()
        self.called = False

    def send(self, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
             callback: Callable[..., object], errback: Callable[..., object], args: tuple = ()) -> "Balanced":
        """
        Send the request to a peer (see
        L{echogate.upstream.interfaces.IUpstreamClient.send}): C{service}'s
        C{retries} are spent here, one per peer, not by the client.
        """
        self._request = (service, method, target, headers, body)
        self._callback, self._errback, self._args = callback, errback, args
        self._retries = int(service.get("retries", 5) or 0)
        self._attempt()
        return self

    def _attempt(self) -> None:
        peer = self._balancer.pick(self._key, self._tried)
        if peer is None:
            self._give_up(Failure(ProxyError(503, NO_PEER)))
            return
        self._peer = peer
        self._tried.append(peer)
        self._started = self._clock.seconds()
        self.state.tried(peer, self._started)
        service, method, target, headers, body = self._request
        attempt = {**service, "host": peer.address, "port": peer.port, "retries": 0}
        handle = self._client.send(attempt, method, target, headers, body, self._responded, self._failed)
        if self._peer is peer:
            self._handle = handle

    def _report(self, outcome: Outcome) -> None:
        peer, self._peer = self._peer, None
        if peer is not None:
            self._balancers.report(peer, outcome)

    def _responded(self, response: "IUpstreamResponse") -> None:
        latency = self._clock.seconds() - self._started
        self.state.answered(response.code, latency)
        self._report(Outcome(status=response.code, latency=latency))
        callback, _, args = self._over()
        callback(response, *args)

    def _failed(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, ProxyError):
            cause = error.__cause__
            timed_out = error.status == 504
        else:
            cause = error
            timed_out = False
        connect = cause is not None and is_connect_failure(cause)
        self.state.answered(None, self._clock.seconds() - self._started)
        self._report(Outcome(failure=TIMEOUT if timed_out else TCP_FAILURE))
        if connect and len(self._tried) <= self._retries:
            # Nothing was sent: the next peer gets it.
            self._attempt()
            return
        self._give_up(failure)

    def _give_up(self, failure: Failure) -> None:
        _, errback, args = self._over()
        errback(failure, *args)

    def _over(self) -> tuple[Callable[..., object], Callable[..., object], tuple[Any, ...]]:
        """
        The request is answered: let go of what points back at this
        object or at the exchange (the client's handle holds this object's
        methods), so that reference counting frees them without the
        cyclic collector; return the callbacks.
        """
        self.called = True
        over = (self._callback, self._errback, self._args)
        del self._callback, self._errback, self._args, self._request
        self._handle = None
        return over

    def cancel(self) -> None:
        """
        The client went away: stop the attempt under way (neither
        callback is called), and free its peer.
        """
        handle, self._handle = self._handle, None
        if handle is not None and not handle.called:
            handle.cancel()
        self._report(Outcome())
