"""
Kong's log shape: one JSON-ready document per request, built in the C{log}
phase, shared by file-log and http-log (and the latencies by prometheus).

The document (see C{docs/plugins/file-log.md})::

    {"request": {"id", "uri", "url", "querystring", "method", "headers", "size"},
     "upstream_uri": "/path?query", "upstream_status": "200",
     "response": {"status", "headers", "size"},
     "latencies": {"kong", "proxy", "request", "receive"},
     "authenticated_entity": {"id", "consumer_id"} | None,
     "route": {...} | None, "service": {...} | None, "consumer": {...} | None,
     "client_ip": "127.0.0.1", "started_at": 1700000000000, "source": "upstream"}

Sizes are bytes on the wire without chunk framing (request or status line,
headers, body); latencies are integer milliseconds; C{started_at} is in
milliseconds since the epoch.

Credentials read C{"REDACTED"} (the field stays, its value does not), by
default: the C{Authorization}, C{Proxy-Authorization} and C{Cookie}
request headers, the C{Set-Cookie} response header, and every name a
plugin marked with L{redact_in_logs} for this request (key-auth marks its
C{key_names}) as a request header or a query argument (in
C{request.querystring} and in the query of C{request.uri},
C{request.url} and C{upstream_uri}). A log plugin's C{redact} names are
redacted the same way, in request and response headers and query
arguments; C{redact_credentials=False} turns the default list off.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping
from urllib.parse import unquote_plus

import attrs
from twisted.web.http_headers import Headers

from echogate.pdk.context import PluginContext
from echogate.pdk.rawheaders import DIRECT, lines_size, stored_name
from echogate.schema import Array, Boolean, String

__all__ = ["Latencies", "latencies", "log_record", "redact_in_logs", "REDACTED", "REDACTION_FIELDS"]

REDACTED = "REDACTED"
#: Request headers that carry credentials, redacted by default.
CREDENTIAL_HEADERS = frozenset(("authorization", "proxy-authorization", "cookie"))
#: Response headers that carry credentials, redacted by default.
CREDENTIAL_RESPONSE_HEADERS = frozenset(("set-cookie",))
_MARKED = "echogate.log_record.redact"
#: The key of C{ctx.shared} under which L{redact_in_logs} keeps the marked
#: names (L{lowered_names} of one plugin's names, or a set).
MARKED = _MARKED
#: The keys a request's L{Headers} keeps these two under (L{request_size}).
_CONTENT_LENGTH = stored_name(b"content-length")
_TRANSFER_ENCODING = stored_name(b"transfer-encoding")

#: The config fields of a log plugin that say what its records redact.
REDACTION_FIELDS = {
    "redact_credentials": Boolean(required=True, default=True, description=(
        "Redact credentials: the Authorization, Proxy-Authorization and Cookie request headers, the"
        " Set-Cookie response header, and the key names of the request's key-auth (as headers and"
        " query arguments).")),
    "redact": Array(String(len_min=1), required=True, default=[], description=(
        "More header and query argument names (any case) whose values are logged as REDACTED.")),
}


def redact_in_logs(ctx: Any, names: Iterable[str]) -> None:
    """
    Have the log records of this request (C{ctx}, a C{PluginContext})
    redact C{names} (any case) as request headers and query arguments
    unless the log plugin sets C{redact_credentials} to false: what a
    plugin that reads a secret under a configurable name calls (key-auth
    with its C{key_names}).
    """
    shared = ctx.shared
    marked = shared.get(_MARKED)
    lowered = _lowered(names)
    if marked is None:
        # (one plugin's names, the usual: kept as they are, a tuple)
        shared[_MARKED] = lowered if type(lowered) is tuple else tuple(lowered)
        return
    if type(marked) is tuple:
        if marked is lowered:
            return
        marked = shared[_MARKED] = set(marked)
    elif not isinstance(marked, set):
        marked = shared[_MARKED] = set()
    marked.update(lowered)


_LOWERED: dict[tuple[str, ...], tuple[str, ...]] = {}


def lowered_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """
    C{names} in lower case, as L{redact_in_logs} marks them when it is
    the first to (the same tuple for the same names): what a plugin that
    marks the same names on every request may put under L{MARKED} itself
    when nothing is there yet.
    """
    return tuple(_lowered(names))


def _lowered(names: Iterable[str]) -> Iterable[str]:
    """
    C{names} in lower case (remembered for a tuple of names: a config's
    C{key_names} is one, the same for every request).
    """
    if not isinstance(names, tuple):
        return [name.lower() for name in names]
    found = _LOWERED.get(names)
    if found is None:
        found = tuple(name.lower() for name in names)
        if len(_LOWERED) < 10_000:
            _LOWERED[names] = found
    return found
_SOURCES = {"service": "upstream", "exit": "exit", "error": "error"}


@attrs.frozen
class Latencies:
    """
    Where one request's time went, in milliseconds.

    @ivar gateway: spent in the gateway before the upstream was called (the
        whole request when it was not called): Kong's C{latencies.kong}.
    @ivar upstream: from sending the request upstream to its status and
        headers coming back, or C{None}: Kong's C{latencies.proxy}.
    @ivar total: from receiving the request to finishing the response:
        Kong's C{latencies.request}.
    @ivar receive: from the upstream's headers to the end of its body.
    """

    gateway: int
    upstream: int | None
    total: int
    receive: int


def _ms(start: float | None, end: float | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, round((end - start) * 1000))


def latencies(ctx: Any, now: float) -> Latencies:
    """
    The L{Latencies} of the request C{ctx} (a C{PluginContext}) finished
    at C{now} (seconds, the gateway's clock).
    """
    started = ctx.started
    sent, responded = ctx.upstream_started, ctx.upstream_responded
    total = _ms(started, now)
    if sent is None:
        return Latencies(gateway=total, upstream=None, total=total, receive=0)
    return Latencies(gateway=_ms(started, sent),
                     upstream=_ms(sent, responded) if responded is not None else None,
                     total=total,
                     receive=_ms(responded, now) if responded is not None else 0)


def _flat(headers: Mapping[str, list[str]]) -> dict[str, Any]:
    """
    Kong's header table: one value as a string, several as a list.
    """
    return {name: values[0] if len(values) == 1 else list(values) for name, values in headers.items()}


def _querystring(args: Mapping[str, list[str]]) -> dict[str, Any]:
    """
    Kong's query table: a blank value as C{True}, one value as a string,
    several as a list.
    """
    out: dict[str, Any] = {}
    for name, values in args.items():
        shaped = [True if v == "" else v for v in values]
        out[name] = shaped[0] if len(shaped) == 1 else shaped
    return out


def _redacted_query_args(args: dict[str, Any], names: set[str]) -> dict[str, Any]:
    if names:
        for name in args:
            if name.lower() in names:
                args[name] = REDACTED
    return args


def request_body_size(ctx: Any) -> int:
    """
    The request body's size: its Content-Length, or the body's length.
    """
    request = ctx.request
    headers = request.as_is()
    if DIRECT and type(headers) is Headers:
        # (get_header of both, as one dict lookup each)
        stored = headers._rawHeaders
        values = stored.get(_CONTENT_LENGTH)
        length = values[0].decode("latin-1") if values else None
        chunked = bool(stored.get(_TRANSFER_ENCODING))
    else:
        length = request.get_header("content-length")
        chunked = request.get_header("transfer-encoding") is not None
    if length is not None:
        try:
            return max(0, int(length))
        except ValueError:
            pass
    if not chunked:
        return 0
    return len(request.body())


def request_size(ctx: Any) -> int:
    """
    The request's size on the wire (request line, headers, body): nginx's
    C{$request_length}, the head's bytes as the client sent them when the
    channel counted them (L{echogate.proxy.request.GatewayRequest.head_size}),
    else worked out from its parts (an HTTP/2 request).
    """
    request = ctx.request
    headers = request.as_is()
    size: int | None = getattr(request._request, "head_size", None)
    if not DIRECT or type(headers) is not Headers:
        if size is None:
            query = request.query
            size = _request_line_size(request.method, request.raw_path, query) + 2 + lines_size(headers) + 2
        return size + request_body_size(ctx)
    stored = headers._rawHeaders
    if size is None:
        # (lines_size, inline over Twisted's own dict)
        size = _request_line_size(request.method, request.raw_path, request.query) + 4
        for name, values in stored.items():
            for value in values:
                size += len(name) + len(value) + 4
    # (request_body_size only for a request with a Content-Length or a
    # Transfer-Encoding: without either it has no body)
    if _CONTENT_LENGTH in stored or _TRANSFER_ENCODING in stored:
        return size + request_body_size(ctx)
    return size


def _request_line_size(method: str, raw_path: str, query: str) -> int:
    """
    The request line's size without its CRLF: method, space, path, C{?}
    and the query, C{ HTTP/1.1}.
    """
    return len(method) + len(raw_path) + (len(query) + 1 if query else 0) + len(" HTTP/1.1") + 1


def response_size(ctx: Any) -> int:
    """
    The response's size on the wire (status line, headers, body).
    """
    sent: int = ctx.bytes_sent
    written = ctx.sent_lines_size() if type(ctx) is PluginContext else None
    if written is not None:
        # (the lines as they were written: their size was worked out then)
        return len("HTTP/1.1 200 OK") + 4 + sent + written
    headers = ctx.response.as_is()
    if type(headers) is not list:
        return len("HTTP/1.1 200 OK") + 2 + lines_size(headers) + 2 + sent
    # (lines_size of wire pairs, inline)
    size = len("HTTP/1.1 200 OK") + 4 + sent + 4 * len(headers)
    for name, value in headers:
        size += len(name) + len(value)
    return size


def _redacted_headers(headers: dict[str, Any], names: frozenset[str] | set[str]) -> dict[str, Any]:
    for name in names.intersection(headers):
        headers[name] = REDACTED
    return headers


def _redacted_query(query: str, names: frozenset[str] | set[str]) -> str:
    """
    C{query} with the value of each argument called one of C{names}
    (compared decoded, any case) replaced by C{REDACTED}; the others kept
    byte for byte.
    """
    if not names or not query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name = part.split("=", 1)[0]
        if unquote_plus(name).lower() in names:
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def log_record(ctx: Any, now: float, redact_credentials: bool = True, redact: Iterable[str] = ()) -> dict[str, Any]:
    """
    Kong's log document for the request C{ctx} (a C{PluginContext}, in
    the C{log} phase), finished at C{now} (seconds, the gateway's clock).

    @param redact_credentials: redact the credential headers and the names
        marked with L{redact_in_logs} (see the module's docstring).
    @param redact: more header and query argument names to redact.
    """
    extra = {name.lower() for name in redact}
    request_names = set(extra)
    response_names = set(extra)
    if redact_credentials:
        request_names |= CREDENTIAL_HEADERS
        response_names |= CREDENTIAL_RESPONSE_HEADERS
    query_names = set(extra)
    marked = ctx.shared.get(_MARKED) if redact_credentials else None
    if isinstance(marked, (set, tuple)):
        request_names.update(marked)
        query_names.update(marked)
    request = ctx.request
    headers = _redacted_headers(_flat(request.get_headers()), request_names)
    query = _redacted_query(request.query, query_names)
    uri = request.raw_path + ("?" + query if query else "")
    host = request.get_header("host") or ""
    url = f"{request.scheme}://{host.split(':')[0] if not host.startswith('[') else host}:{request.port}{uri}"
    upstream = ctx.upstream
    upstream_uri = ""
    if upstream is not None and ctx.upstream_started is not None:
        upstream_query = _redacted_query(upstream.query, query_names)
        upstream_uri = upstream.path + ("?" + upstream_query if upstream_query else "")
    response = ctx.response
    upstream_status = response.upstream_status
    times = latencies(ctx, now)
    credential = ctx.credential
    consumer = ctx.consumer
    entity = None
    if credential is not None:
        entity = {"id": credential.get("id"),
                  "consumer_id": (credential.get("consumer") or {}).get("id")
                  or (consumer or {}).get("id")}
    return {
        "request": {
            "id": ctx.request_id,
            "uri": uri,
            "url": url,
            "querystring": _redacted_query_args(_querystring(request.query_args), query_names),
            "method": request.method,
            "headers": headers,
            "size": request_size(ctx),
        },
        "upstream_uri": upstream_uri,
        "upstream_status": str(upstream_status) if upstream_status is not None else "",
        "response": {
            "status": response.status,
            "headers": _redacted_headers(_flat(response.get_headers()), response_names),
            "size": response_size(ctx),
        },
        "latencies": {
            "kong": times.gateway,
            "proxy": times.upstream if times.upstream is not None else -1,
            "request": times.total,
            "receive": times.receive,
        },
        "tries": _tries(getattr(ctx, "balancer", None)),
        "authenticated_entity": entity,
        "route": _plain(ctx.route),
        "service": _plain(ctx.service),
        "consumer": _plain(consumer),
        "client_ip": request.client_ip,
        "started_at": int(ctx.started * 1000),
        "source": _SOURCES.get(response.source or "", "error"),
    }


def _tries(balancer: Any) -> list[dict[str, Any]] | None:
    """
    Kong's C{tries}: each try of a load-balanced request, or C{None}.
    """
    if balancer is None:
        return None
    return [dict(attempt) for attempt in balancer.tries]


def _plain(value: Any) -> Any:
    """
    A JSON-ready copy of an entity (read-only mappings and tuples become
    dicts and lists).
    """
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
