"""
The request and response as plugins read and change them: the client's
request (L{ClientRequest}, read-only), what goes to the service
(L{UpstreamRequest}), the response on its way back (L{ResponseState}),
their headers (L{HeaderEditor}), and an answer a plugin makes itself
(L{Exit}). L{echogate.pdk.context} ties them to one request.

The headers live in L{echogate.pdk.headers}, the requests in
L{echogate.pdk.requests}; this module names them all, where plugins have
always imported them.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from twisted.web.http_headers import Headers

from echogate.pdk.headers import HeaderEditor, HeaderPairs, _b, _s, headers_of
from echogate.pdk.requests import ClientRequest, UpstreamRequest


class ResponseState(HeaderEditor):
    """
    The response on its way to the client (C{ctx.response}).

    @ivar status: the status to send (the upstream's, or the exit's).
    @ivar source: C{"service"}, C{"exit"} (a plugin answered) or C{"error"}
        (the gateway answered with an error).
    @ivar eof: in C{body_filter}, true on the last call.
    @ivar upstream_status: the upstream's own status, or C{None}.
    @ivar raw_body: the service's whole body, when a plugin enabled
        buffering (C{ctx.upstream.enable_buffering()}), from
        C{header_filter} on; else C{None}.
    @ivar trailers: the trailers to send after the body, as C{(name, value)}
        byte pairs: the service's (gRPC's C{grpc-status}, C{grpc-message}
        and metadata), set before the last C{body_filter} call (the one
        with C{eof} true), which may change or empty the list. Sent to
        HTTP/2 clients only (an HTTP/1.1 response carries none). C{None}
        until then, and for a response without trailers.
    """

    __slots__ = ("status", "source", "eof", "upstream_status", "_upstream", "raw_body", "trailers")

    def __init__(self) -> None:
        self._headers = None
        self._pairs = None
        self.status: int | None = None
        self.source: str | None = None
        self.eof = False
        self.upstream_status: int | None = None
        self._upstream: Headers | HeaderPairs | None = None
        self.raw_body: bytes | None = None
        self.trailers: list[tuple[bytes, bytes]] | None = None

    def get_raw_body(self) -> bytes | None:
        """
        The service's whole body (Kong's
        C{kong.service.response.get_raw_body}): C{raw_body}.
        """
        return self.raw_body

    @property
    def upstream_headers(self) -> Headers | None:
        """
        The headers as the service sent them, or C{None} before (or
        without) an upstream response.
        """
        upstream = self._upstream
        if upstream is None or isinstance(upstream, Headers):
            return upstream
        headers = self._upstream = headers_of(upstream)
        return headers

    @upstream_headers.setter
    def upstream_headers(self, headers: Headers | HeaderPairs | None) -> None:
        self._upstream = headers

    def replace_headers(self, headers: Headers | HeaderPairs) -> None:
        """
        Use C{headers} (a L{Headers}, or wire pairs) as the response's
        headers from now on.
        """
        if isinstance(headers, Headers):
            self.headers = headers
        else:
            self._headers = None
            self._pairs = headers

    def from_service(self, raw: Headers | HeaderPairs | None) -> bool:
        """
        The service's headers are C{raw} (L{upstream_headers}); whether any
        header was set before (L{changed_early}). One plain call for the
        proxy's every response (a property's getter and setter, called
        from C, cost several times as much).
        """
        self._upstream = raw
        return self._changed()

    @property
    def changed_early(self) -> bool:
        """
        Whether any header was set before the response head existed.
        """
        return self._changed()

    def _changed(self) -> bool:
        headers = self._headers
        if headers is None:
            return bool(self._pairs)
        return next(iter(headers.getAllRawHeaders()), None) is not None

    def set_status(self, status: int) -> None:
        """
        Send C{status} instead (in C{header_filter} or before).
        """
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r}")
        self.status = status

    def get_upstream_header(self, name: str) -> str | None:
        """
        The first value of header C{name} as the upstream sent it.
        """
        headers = self.upstream_headers
        if headers is None:
            return None
        values = headers.getRawHeaders(_b(name))
        return _s(values[0]) if values else None


class Exit:
    """
    A response a plugin (or the gateway) makes itself.
    """

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]):
        self.status = status
        self.body = body
        self.headers = headers


def encode_exit_body(body: Any, headers: dict[str, str]) -> bytes:
    """
    Encode an exit body: C{bytes} as given, C{str} as UTF-8 text, anything
    else as JSON (setting Content-Type when the plugin did not).
    """
    names = {k.lower() for k in headers}
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        if "content-type" not in names:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return body.encode("utf-8")
    if "content-type" not in names:
        headers["Content-Type"] = "application/json; charset=utf-8"
    return json.dumps(body).encode("utf-8")


__all__ = ["HeaderPairs", "headers_of", "HeaderEditor", "ClientRequest", "UpstreamRequest", "ResponseState", "Exit",
           "encode_exit_body"]
