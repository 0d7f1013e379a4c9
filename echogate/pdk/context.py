"""
Per-request state, and the plugin development kit (PDK) that phases use.

One L{RequestContext} is created for each proxied request (by its
L{echogate.proxy.exchange.Exchange}); it lives and dies with the request. Each
plugin phase receives a L{PluginContext}: a thin view of the request
context bound to that plugin, with the plugin's own state (C{ctx.plugin})
next to the state shared by all plugins (C{ctx.shared}).
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from twisted.logger import Logger

from echogate.pdk.balancer import BalancerState
from echogate.pdk.credentials import EMPTY
from echogate.pdk.grpc import encode_grpc_answer, is_grpc_request

# The request and response objects live in echogate.pdk.messages; they are
# importable from here too, where the PDK has always had them.
from echogate.pdk.messages import (
    ClientRequest,
    Exit,
    HeaderEditor,
    HeaderPairs,
    ResponseState,
    UpstreamRequest,
    encode_exit_body,
)
from echogate.pdk.tunnel import TunnelState

_new = object.__new__


class RequestContext:
    """
    Everything echogate and its plugins know about one request.

    @ivar shared: state shared by every plugin for this request.
    @ivar route: the matched route record, or C{None}.
    @ivar service: the matched service record, or C{None}.
    @ivar consumer: the authenticated consumer record, or C{None}.
    @ivar credential: the credential that authenticated it, or C{None}.
    """

    __slots__ = ("_request", "request", "started", "shared", "_plugin_state", "views", "_request_id",
                 "route", "service", "match", "consumer", "credential", "upstream", "response", "exit",
                 "upstream_started", "upstream_responded", "credentials", "balancer", "tunnel")

    def __init__(self, request: Any, client: ClientRequest, started: float, credentials: Any = None):
        self._request = request
        self.request = client
        self.started = started
        self.shared: dict[str, Any] = {}
        self._plugin_state: dict[str, dict[str, Any]] = {}
        #: The plugin views made so far, by plugin name (L{view} makes
        #: them; read it, do not change it).
        self.views: dict[str, PluginContext] = {}
        self._request_id: str | None = None
        self.route: dict | None = None
        self.service: dict | None = None
        self.match: Any = None
        self.consumer: dict | None = None
        self.credential: dict | None = None
        self.upstream: UpstreamRequest | None = None
        self.response = ResponseState()
        self.exit: Exit | None = None
        self.upstream_started: float | None = None
        self.upstream_responded: float | None = None
        #: The consumers' credentials of the request's configuration
        #: snapshot (an L{echogate.pdk.credentials.CredentialIndex}).
        self.credentials = EMPTY if credentials is None else credentials
        #: The load balancing of the request (a
        #: L{echogate.pdk.balancer.BalancerState}), when its service's host
        #: names an upstream.
        self.balancer: BalancerState | None = None
        #: A WebSocket connection passed on after its handshake (an
        #: L{echogate.pdk.tunnel.TunnelState}), else C{None}.
        self.tunnel: TunnelState | None = None

    @property
    def request_id(self) -> str:
        """
        A unique id for this request (made when first asked for).
        """
        if self._request_id is None:
            self._request_id = uuid.uuid4().hex
        return self._request_id

    def release(self) -> None:
        """
        Called once the request is over (after C{log}): break the reference
        cycles between this context and the plugin views.
        """
        self.views = {}

    def view(self, plugin_name: str) -> "PluginContext":
        """
        The L{PluginContext} for plugin C{plugin_name} (one per plugin per
        request).
        """
        view = self.views.get(plugin_name)
        if view is None:
            # (PluginContext(self, plugin_name), without the call of its
            # __init__: a view is made for every plugin of every request)
            view = self.views[plugin_name] = _new(PluginContext)
            view._ctx = self
            view.name = plugin_name
            view._plugin = None
            view._log = None
            view.request = self.request
            view.response = self.response
            view.shared = self.shared
            view.credentials = self.credentials
            view.started = self.started
        return view

    def plugin_state(self, plugin_name: str) -> dict[str, Any]:
        state = self._plugin_state.get(plugin_name)
        if state is None:
            state = self._plugin_state[plugin_name] = {}
        return state

    def answer(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """
        Answer the request without the upstream (C{ctx.exit}).
        """
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r}")
        hdrs = dict(headers or {})
        # A gRPC call is answered the gRPC way (echogate.pdk.grpc).
        encoded = encode_grpc_answer(status, body, hdrs, is_grpc_request(self._request))
        if encoded is None:
            encoded = encode_exit_body(body, hdrs)
        self.exit = Exit(status, encoded, hdrs)


class PluginLogger:
    """
    A logger that tags every event with the plugin's name and the request id.
    """

    __slots__ = ("_ctx", "_plugin", "_logger")

    _loggers: dict[str, Logger] = {}

    def __init__(self, ctx: RequestContext, plugin: str):
        self._ctx = ctx
        self._plugin = plugin
        logger = self._loggers.get(plugin)
        if logger is None:
            logger = self._loggers[plugin] = Logger(namespace=f"echogate.plugins.{plugin}")
        self._logger = logger

    def _emit(self, method: str, format: str, kw: dict[str, Any]) -> None:
        getattr(self._logger, method)(
            "[{plugin} {request_id}] " + format, plugin=self._plugin, request_id=self._ctx.request_id, **kw
        )

    def debug(self, format: str, **kw: Any) -> None:
        self._emit("debug", format, kw)

    def info(self, format: str, **kw: Any) -> None:
        self._emit("info", format, kw)

    def warn(self, format: str, **kw: Any) -> None:
        self._emit("warn", format, kw)

    def error(self, format: str, **kw: Any) -> None:
        self._emit("error", format, kw)


class PluginContext:
    """
    What a plugin phase receives as C{ctx}: the request context seen by one
    plugin.

    @ivar plugin: this plugin's own per-request state (a dict).
    @ivar shared: state shared by all plugins for this request (a dict).
    @ivar request: the client request (L{ClientRequest}).
    @ivar upstream: what goes to the service (L{UpstreamRequest}); C{None}
        in C{rewrite}, before routing.
    @ivar response: the response on its way (L{ResponseState}).
    @ivar credentials: the consumers' credentials of this request's
        configuration snapshot (an
        L{echogate.pdk.credentials.CredentialIndex}):
        C{ctx.credentials.find("key-auth", key)},
        C{ctx.credentials.groups(consumer_id)}. Dict lookups, never a scan.
    @ivar started: when the gateway received the request (seconds, on the
        gateway's clock).
    """

    # (request, response, shared, credentials and started are the
    # request context's for its whole life: copied here once, plain
    # attributes instead of properties, each read a tenth of the cost.)
    __slots__ = ("_ctx", "name", "_plugin", "_log", "request", "response", "shared", "credentials", "started")

    def __init__(self, ctx: RequestContext, name: str):
        self._ctx = ctx
        self.name = name
        self._plugin: dict[str, Any] | None = None
        self._log: PluginLogger | None = None
        self.request: ClientRequest = ctx.request
        self.response: ResponseState = ctx.response
        self.shared: dict[str, Any] = ctx.shared
        self.credentials: Any = ctx.credentials
        self.started: float = ctx.started

    @property
    def plugin(self) -> dict[str, Any]:
        """
        This plugin's own state for this request (a dict, made when first
        asked for: most plugins keep none).
        """
        state = self._plugin
        if state is None:
            # (RequestContext.plugin_state, inline)
            states = self._ctx._plugin_state
            state = states.get(self.name)
            if state is None:
                state = states[self.name] = {}
            self._plugin = state
        return state

    @property
    def upstream(self) -> UpstreamRequest | None:
        return self._ctx.upstream

    @property
    def route(self) -> dict | None:
        return self._ctx.route

    @property
    def service(self) -> dict | None:
        return self._ctx.service

    @property
    def consumer(self) -> dict | None:
        return self._ctx.consumer

    @property
    def match(self) -> Any:
        """
        How the route matched (L{echogate.routing.matching.Match}: C{captures},
        C{named_captures}, C{stripped}, ...), or C{None} before routing.
        """
        return self._ctx.match

    @property
    def credential(self) -> dict | None:
        return self._ctx.credential

    @property
    def balancer(self) -> BalancerState | None:
        """
        When the service's host names an upstream: the peer the request
        went to (C{address}, C{port}, C{hostname}, C{target_id}), the try
        number (C{attempt}) and every try so far (C{tries}); else C{None}.
        """
        return self._ctx.balancer

    @property
    def tunnel(self) -> TunnelState | None:
        """
        For a WebSocket handshake the service accepted (101): the
        connection passed on (bytes each way, when it opened and closed,
        who closed it; complete in C{log}); else C{None}.
        """
        return self._ctx.tunnel

    @property
    def request_id(self) -> str:
        return self._ctx.request_id

    @property
    def upstream_started(self) -> float | None:
        """
        When the request was sent to the service, or C{None}.
        """
        return self._ctx.upstream_started

    @property
    def upstream_responded(self) -> float | None:
        """
        When the service's status and headers arrived, or C{None}.
        """
        return self._ctx.upstream_responded

    @property
    def bytes_sent(self) -> int:
        """
        How many bytes of response body were written to the client so far.
        """
        return getattr(self._ctx._request, "sentLength", 0) or 0

    def sent_lines_size(self) -> int | None:
        """
        The size on the wire of C{ctx.response}'s header lines (as
        L{echogate.pdk.rawheaders.lines_size} gives it) when they went to
        the client in one piece and are unchanged since (the same list,
        with as many lines: the headers change by replacing the list or
        adding to it); else C{None}, and the lines are to be measured.

        (A request that writes a head in one piece keeps C{(lines, count,
        size)} of it: L{echogate.proxy.responsehead.OnePieceHead.sent_head}.)
        """
        written = getattr(self._ctx._request, "sent_head", None)
        if written is not None:
            pairs = self.response._pairs
            if written[0] is pairs and written[1] == len(pairs):
                size: int = written[2]
                return size
        return None

    @property
    def consumers(self) -> Any:
        """
        The consumers of this request's configuration snapshot (an
        L{echogate.pdk.credentials.ConsumerIndex}): C{ctx.consumers.get(id or
        username)}.
        """
        return self.credentials.consumers

    @property
    def log(self) -> PluginLogger:
        """
        A logger tagged with this plugin's name and the request id.
        """
        if self._log is None:
            self._log = PluginLogger(self._ctx, self.name)
        return self._log

    def authenticate(self, consumer: dict | None, credential: dict | None = None) -> None:
        """
        Record the consumer (and credential) that this request authenticated
        as; consumer-scoped plugin configs apply from the next plugin on.
        """
        self._ctx.consumer = consumer
        self._ctx.credential = credential

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """
        Answer the request now: the remaining C{access} handlers and the
        upstream are skipped; C{header_filter}, C{body_filter} and C{log}
        still run. C{body}: bytes as given, a str as text, anything else
        as JSON.
        """
        self._ctx.answer(status, body, headers)

__all__ = ["RequestContext", "PluginContext", "PluginLogger", "ClientRequest", "Exit", "HeaderEditor",
           "HeaderPairs", "ResponseState", "UpstreamRequest", "encode_exit_body"]
