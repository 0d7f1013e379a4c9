"""
The heads of the responses the gateway sends: a service's, with the
gateway's own headers added (L{upstream_head}), and the gateway's own
answers, errors and plugins' exits (L{local_head}, L{error_answer}),
among them the answers to a request its route's protocols refuse
(L{https_required}, L{grpc_route_mismatch}).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from twisted.web.http import datetimeToString

from echogate.errors import ProxyError
from echogate.pdk.context import RequestContext
from echogate.pdk.grpc import GRPC_CONTENT_TYPE, encode_grpc_answer, is_grpc_content_type, is_grpc_request
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
    changed_early = state.from_service(response.raw_headers)
    pairs = list(response.end_to_end)
    if response.via:
        via = b", ".join([value for name, value in pairs if name.lower() == b"via"])
        pairs = [pair for pair in pairs if pair[0].lower() != b"via"]
        pairs.append((b"Via", via + b", " + VIA))
    else:
        pairs.append((b"Via", VIA))
    # (latency_ms, inline, for both: every proxied response has them)
    started, up, responded = ctx.started, ctx.upstream_started, ctx.upstream_responded
    ms = round((responded - up) * 1000) if up is not None and responded is not None else 0
    pairs.append((b"X-Echogate-Upstream-Latency", b"%d" % ms if ms > 0 else b"0"))
    ms = round((up - started) * 1000) if started is not None and up is not None else 0
    pairs.append((b"X-Echogate-Proxy-Latency", b"%d" % ms if ms > 0 else b"0"))
    length = response.length
    if isinstance(length, int) and method != b"HEAD":
        pairs.append((b"Content-Length", b"%d" % length))
    if changed_early:
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


def error_answer(error: ProxyError, close: bool = False,
                 request: Any = None) -> tuple[int, bytes, dict[str, str]]:
    """
    The status, JSON body and headers of the answer to C{error}, asking
    to close the connection when C{close}. To a gRPC call (C{request},
    see L{echogate.pdk.grpc.is_grpc_request}) the answer has the same
    status, no body, and says the rest in C{Content-Type:
    application/grpc}, C{grpc-status} and C{grpc-message} (the error's
    message).
    """
    headers: dict[str, str] = {}
    if close:
        headers["Connection"] = "close"
    if request is not None and is_grpc_request(request):
        body = encode_grpc_answer(error.status, error.body(), headers, True)
        return error.status, body or b"", headers
    headers["Content-Type"] = _JSON
    return error.status, json.dumps(error.body()).encode(), headers


#: Kong's answer to a request with another C{Content-Type} than gRPC's on
#: a gRPC route.
NOT_GRPC = json.dumps({"message": "Non-gRPC request matched gRPC route"}).encode()
#: Kong's answer to a gRPC call over HTTP/1 on a gRPC route.
HTTP2_REQUIRED = json.dumps({"message": "Please use HTTP2 protocol"}).encode()


def grpc_route_mismatch(route: Mapping[str, Any], request: Any,
                        scheme: str) -> tuple[int, bytes, dict[str, str]] | None:
    """
    The answer to a request on a gRPC route (C{protocols} C{grpc} and/or
    C{grpcs}) that the route does not take, as Kong's (the router picked
    the route without looking at the protocol; this is the check after):

      - a request whose first C{Content-Type} does not start with
        C{application/grpc}: 415 C{{"message": "Non-gRPC request matched
        gRPC route"}};
      - a gRPC call that did not come over HTTP/2: 426 C{{"message":
        "Please use HTTP2 protocol"}}, with C{Connection: Upgrade} and
        C{Upgrade: HTTP/2};
      - a gRPC call over plain HTTP (C{scheme}, with a trusted peer's
        C{X-Forwarded-Proto} taken into account) on a C{grpcs}-only
        route: 200 with C{grpc-status: 1} and C{grpc-message: gRPC
        request matched gRPCs route}.

    C{None} when the request may go on, and for a route that is not a
    gRPC route.
    """
    protocols = route.get("protocols") or ()
    if "grpc" not in protocols and "grpcs" not in protocols:
        return None
    values = request.requestHeaders.getRawHeaders(b"content-type")
    if not values or not is_grpc_content_type(values[0]):
        return 415, NOT_GRPC, {"Content-Type": _JSON}
    if request.clientproto != b"HTTP/2":
        return 426, HTTP2_REQUIRED, {"Content-Type": _JSON, "Connection": "Upgrade", "Upgrade": "HTTP/2"}
    if "grpc" not in protocols and scheme != "https":
        return 200, b"", {"Content-Type": GRPC_CONTENT_TYPE, "grpc-status": "1",
                          "grpc-message": "gRPC request matched gRPCs route"}
    return None


#: Kong's answer to a plain-HTTP request on an https-only route.
HTTPS_REQUIRED = json.dumps({"message": "Please use HTTPS protocol"}).encode()


def https_required(route: Mapping[str, Any], scheme: str, host: str | None,
                   uri: bytes) -> tuple[int, bytes, dict[str, str]] | None:
    """
    The answer to a request that came over plain HTTP (C{scheme}, with a
    trusted peer's C{X-Forwarded-Proto} taken into account) on a route
    whose C{protocols} allow only https, as Kong's: its
    C{https_redirect_status_code}, 426 (the default) with Kong's JSON body
    and C{Upgrade: TLS/1.2, HTTP/1.1}, or a redirect (301, 302, 307, 308)
    to the same URI over https on C{host} (without its port, as Kong's
    C{Location}). C{None} when the request may go on.
    """
    if scheme == "https":
        return None
    protocols = route.get("protocols") or ()
    if "https" not in protocols or "http" in protocols:
        return None
    code = route.get("https_redirect_status_code") or 426
    if code == 426:
        return 426, HTTPS_REQUIRED, {"Content-Type": _JSON, "Connection": "Upgrade",
                                     "Upgrade": "TLS/1.2, HTTP/1.1"}
    name = (host or "").rsplit(":", 1)[0] if host and not host.endswith("]") else (host or "")
    return int(code), b"", {"Location": "https://" + name + uri.decode("latin-1")}
