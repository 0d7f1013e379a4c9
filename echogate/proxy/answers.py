"""
The heads of the responses the gateway sends: a service's, with the
gateway's own headers added (L{upstream_head}), and the gateway's own
answers, errors and plugins' exits (L{local_head}, L{error_answer}).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Mapping

from twisted.web.http import datetimeToString

from echogate.errors import ProxyError
from echogate.pdk.context import RequestContext
from echogate.proxy.forwarding import VIA
from echogate.proxy.headers import latency_ms, overlay_pairs
from echogate.proxy.request import SERVER

if TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

_JSON = "application/json; charset=utf-8"


def upstream_head(ctx: RequestContext, response: "IUpstreamResponse", method: bytes) -> None:
    """
    Make C{ctx.response} the service's head: its end-to-end headers, the
    C{Via} line with the gateway's hop added, the latency headers, and its
    C{Content-Length} when known (kept apart from the headers by the
    upstream client: restoring it keeps the response unchunked; as in
    Kong, a plugin whose body_filter changes the body's length removes it
    in header_filter). Headers a plugin set before (in access) win.
    """
    state = ctx.response
    state.status = state.upstream_status = response.code
    state.source = "service"
    state.upstream_headers = response.raw_headers
    pairs = list(response.end_to_end)
    if response.via:
        via = b", ".join([value for name, value in pairs if name.lower() == b"via"])
        pairs = [pair for pair in pairs if pair[0].lower() != b"via"]
        pairs.append((b"Via", via + b", " + VIA))
    else:
        pairs.append((b"Via", VIA))
    pairs.append((b"X-Echogate-Upstream-Latency", latency_ms(ctx.upstream_started, ctx.upstream_responded)))
    pairs.append((b"X-Echogate-Proxy-Latency", latency_ms(ctx.started, ctx.upstream_started)))
    length = response.length
    if isinstance(length, int) and method != b"HEAD":
        pairs.append((b"Content-Length", b"%d" % length))
    if state.changed_early:
        pairs = overlay_pairs(pairs, state.as_is())
    state.replace_headers(pairs)


def local_head(ctx: RequestContext, status: int, headers: Mapping[str, str], source: str, now: float) -> None:
    """
    Make C{ctx.response} the head of an answer the gateway (C{source}
    C{"error"}) or a plugin (C{"exit"}) made. Headers a plugin set before
    (in access) are kept.
    """
    state = ctx.response
    state.status = status
    state.source = source
    state.replace_headers(overlay_pairs([], state.as_is()) if state.changed_early else [])
    for name, value in headers.items():
        state.set_header(name, str(value))
    state.set_header("Server", SERVER)
    state.set_header("Date", datetimeToString())
    state.set_header("X-Echogate-Response-Latency", latency_ms(ctx.started, now))


def error_answer(error: ProxyError, close: bool = False) -> tuple[int, bytes, dict[str, str]]:
    """
    The status, JSON body and headers of the answer to C{error}, asking
    to close the connection when C{close}.
    """
    headers = {"Content-Type": _JSON}
    if close:
        headers["Connection"] = "close"
    return error.status, json.dumps(error.body()).encode(), headers
