"""
The data path's entry: a C{twisted.web} resource (L{GatewayResource}) that
gives every request to the L{Gateway}, which starts one
L{echogate.proxy.exchange.Exchange} per request: the exchange matches it
to a route, runs the plugins that apply, and streams it to the route's
service and back.

Order for one request (see docs/plugins.md): global C{rewrite}; routing on
the current snapshot; C{access} (a plugin may answer with C{ctx.exit});
the upstream request; C{header_filter}; C{body_filter} per chunk; C{log}
once the response is finished or the client went away.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from echogate.balancer import Balancers
from echogate.pdk.context import ClientRequest, RequestContext
from echogate.proxy.collecting import DEFAULT_MAX
from echogate.proxy.exchange import Exchange
from echogate.proxy.forwarding import TrustedNetworks
from echogate.proxy.request import GatewayRequest
from echogate.proxy.runner import PluginFailure
from echogate.proxy.site import Counters, GatewaySite
from echogate.routing.paths import normalize_path
from echogate.upstream.interfaces import IUpstreamClient

_log = Logger(namespace="echogate.proxy")
_NEW = object.__new__

__all__ = ["Gateway", "GatewayResource", "GatewayRequest", "GatewaySite", "Counters"]


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


#: Request paths as sent (up to L{_NORMAL_LONGEST} bytes) to their normal
#: form (L{normalize_path}), or C{""} for a path that has none: the same
#: few come again and again; it is emptied when it reaches L{_NORMAL_MAX}
#: paths.
_NORMAL: dict[bytes, str] = {}
_NORMAL_MAX = 1024
_NORMAL_LONGEST = 256


def _normal(raw: bytes) -> str:
    """
    C{raw}'s normal form, or C{""} when it has none (the answer is 400),
    remembered in L{_NORMAL}.
    """
    try:
        path = normalize_path(raw)
    except ValueError:
        path = ""
    if len(raw) <= _NORMAL_LONGEST:
        if len(_NORMAL) >= _NORMAL_MAX:
            _NORMAL.clear()
        _NORMAL[raw] = path
    return path


class GatewayResource(Resource):
    """
    The proxy's root resource: every request, whatever its path, goes to
    the L{Gateway}.
    """

    isLeaf = True

    def __init__(self, gateway: "Gateway"):
        super().__init__()
        self._gateway = gateway
        #: What L{render} does, without its return value: a
        #: L{GatewayRequest} calls it directly (L{GatewayRequest.process}).
        self.serve: Callable[[GatewayRequest], None] = gateway.handle

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
    What every request's L{Exchange} shares: the clock, the current
    configuration snapshot, the upstream client, the forwarding policy,
    the counters and the error log.

    @param snapshot: returns the current
        L{echogate.proxy.snapshot.Snapshot} (called once per request).
    @param balancers: the node's load balancers, when it balances
        (services whose host names an upstream).
    """

    def __init__(self, *, clock: IReactorTime, snapshot: Callable[[], Any], upstream: IUpstreamClient,
                 trusted: TrustedNetworks | None = None, counters: Counters | None = None,
                 real_ip_header: str = "x-real-ip", real_ip_recursive: bool = False,
                 underscores: str = "drop", balancers: Balancers | None = None,
                 max_buffered_response: int = DEFAULT_MAX):
        self.clock = clock
        self._snapshot = snapshot
        self.upstream = upstream
        self._trusted = trusted or TrustedNetworks()
        #: Whether any peer is trusted (else every request's client is its peer).
        self._trusts_some = bool(self._trusted)
        self._real_ip_header = real_ip_header.lower().encode("ascii")
        self._real_ip_recursive = real_ip_recursive
        #: Whether header names with underscores go to the service.
        self.underscores_allowed = underscores == "allow"
        self.counters = counters or Counters()
        #: The node's load balancers (services whose host names an upstream).
        self.balancers = balancers
        #: The cap on a response body read whole (a plugin enabled
        #: buffering): past it, 502.
        self.max_buffered_response = max_buffered_response

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
        (after C{100 Continue} if the client waits for it) and the
        exchange sends the request on. Plugins that read the body in
        C{rewrite} or C{access} (C{reads_body}) run theirs once it is here.
        """
        self.handle(request)
        # A body that crosses the size limit, or stops coming, is answered
        # by the exchange while it waits for it; by the channel once the
        # request is over.
        exchange = request.exchange
        request.answer_early = exchange.answer_early if exchange is not None else None

    def handle(self, request: GatewayRequest) -> None:
        """
        Answer C{request}, eventually: start its L{Exchange}, or, for a
        request whose head was taken first, tell it the body is here.
        """
        exchange = request.exchange
        if exchange is not None:
            exchange.body_arrived()
            return
        if request.finished:
            return  # answered on its head; its exchange is over
        counters = self.counters
        counters.total_requests += 1
        counters.active_requests += 1
        now = self.clock.seconds()
        raw_path, _, query = request.uri.partition(b"?")
        # (getClientAddress's)
        peer = getattr(request.client, "host", "127.0.0.1")
        if self._trusts_some:
            client_ip, trusted = self._client_ip(request, peer)
        else:
            # No peer is trusted: the client is the peer (_client_ip's, inline).
            client_ip, trusted = peer[7:] if peer.startswith("::ffff:") and "." in peer else peer, False
        raw = raw_path.decode("latin-1")
        path = _NORMAL.get(raw_path)
        if path is None:
            path = _normal(raw_path)
        snapshot = self._snapshot()
        # (each made as C{cls(...)} makes it, but with a call of its
        # __init__ from here: type's call of it from C costs more)
        client = _NEW(ClientRequest)
        client.__init__(request, path or raw, raw, query.decode("latin-1") if query else "",  # type: ignore[misc]
                        client_ip)
        ctx = _NEW(RequestContext)
        ctx.__init__(request, client, now, snapshot.credentials)  # type: ignore[misc]
        exchange = request.exchange = _NEW(Exchange)
        exchange.__init__(self, request, ctx, snapshot, trusted)  # type: ignore[misc]
        exchange.start(path != "")

    # -- what exchanges share ----------------------------------------------

    def log_upstream_error(self, ctx: RequestContext, reason: str, status: int | None) -> None:
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

    def report(self, failure: Failure) -> None:
        """
        Log C{failure}, naming the plugin and phase when a plugin raised it.
        """
        error = failure.value
        if isinstance(error, PluginFailure):
            inner = error.error if isinstance(error.error, Failure) else Failure(
                error.error, type(error.error), error.error.__traceback__)
            _log.failure("plugin {plugin} failed in its {phase} phase", failure=inner,
                         plugin=error.plugin, phase=error.phase)
        else:
            _log.failure("unexpected error on the data path", failure=failure)
