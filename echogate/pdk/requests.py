"""
The request as plugins see it: what the client sent (L{ClientRequest},
read-only) and what goes to the service (L{UpstreamRequest}).
"""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import parse_qs, urlencode

from twisted.web.http_headers import Headers

from echogate.errors import BodyNotRead
from echogate.pdk.headers import HeaderEditor, HeaderPairs, _b, _s
from echogate.pdk.rawheaders import _STORED, DIRECT, stored_name
from echogate.pdk.tls import TLSInfo, tls_of

#: HTTP versions as Kong's PDK gives them.
_VERSIONS = {b"HTTP/1.0": 1.0, b"HTTP/1.1": 1.1, b"HTTP/2": 2.0}


class ClientRequest:
    """
    What the client sent (C{ctx.request}): read-only.

    @ivar method: e.g. C{"GET"}.
    @ivar path: the normalised path the router matched.
    @ivar raw_path: the path as received.
    @ivar query: the raw query string (without C{?}).
    @ivar scheme: C{"http"} or C{"https"}.
    @ivar client_ip: the client's address (the peer, or the forwarded
        address when the peer is trusted).
    """

    __slots__ = ("_request", "method", "path", "raw_path", "query", "scheme", "client_ip", "_args", "_tls")

    def __init__(self, request: Any, path: str, raw_path: str, query: str, client_ip: str):
        self._request = request
        self.method = request.method.decode("latin-1")
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.scheme = "https" if request.isSecure() else "http"
        self.client_ip = client_ip
        self._args: dict[str, list[str]] | None = None
        self._tls: TLSInfo | None | bool = False

    @property
    def tls(self) -> TLSInfo | None:
        """
        The TLS facts of the client's connection (C{sni}, C{version},
        C{cipher}, C{client_certificate}), or C{None} over plain HTTP.
        """
        tls = self._tls
        if tls is False:
            tls = self._tls = tls_of(self._request)
        return tls if isinstance(tls, TLSInfo) else None

    @property
    def host(self) -> str | None:
        """
        The Host header's host part.
        """
        host = self.get_header("host")
        if host is None:
            return None
        if host.startswith("["):
            return host[: host.find("]") + 1]
        return host.rsplit(":", 1)[0] if ":" in host else host

    def get_http_version(self) -> float | None:
        """
        The client's HTTP version, as Kong's
        C{kong.request.get_http_version}: C{1.0}, C{1.1} or C{2.0}
        (HTTP/2, see docs/proxy.md); C{None} if unknown.

        @since: 0.2.0
        """
        proto: bytes = getattr(self._request, "clientproto", b"")
        return _VERSIONS.get(proto)

    @property
    def port(self) -> int:
        """
        The port of the listener the request came in on.
        """
        port: int = self._request.getHost().port
        return port

    @property
    def query_args(self) -> dict[str, list[str]]:
        """
        The query string parsed: name to values.
        """
        if self._args is None:
            self._args = parse_qs(self.query, keep_blank_values=True)
        return self._args

    def get_query_arg(self, name: str) -> str | None:
        """
        The first value of query argument C{name}, or C{None}.
        """
        values = self.query_args.get(name)
        return values[0] if values else None

    def get_header(self, name: str) -> str | None:
        """
        The first value of request header C{name}, or C{None}.
        """
        headers = self._request.requestHeaders
        # (raw_values, inline: plugins read the client's headers on every
        # request)
        if DIRECT and type(headers) is Headers:
            values = headers._rawHeaders.get(_STORED.get(name) or stored_name(name))
        else:
            values = headers.getRawHeaders(_b(name))
        return values[0].decode("latin-1") if values else None

    def get_header_values(self, name: str) -> list[str]:
        """
        Every value of request header C{name}, in order (none: C{[]}).
        """
        headers = self._request.requestHeaders
        # (raw_values, inline)
        if DIRECT and type(headers) is Headers:
            values = headers._rawHeaders.get(_STORED.get(name) or stored_name(name))
        else:
            values = headers.getRawHeaders(_b(name))
        if not values:
            return []
        if len(values) == 1:
            return [values[0].decode("latin-1")]
        return [_s(v) for v in values]

    def get_headers(self) -> dict[str, list[str]]:
        """
        Every request header: lower-case name to its values.
        """
        return HeaderEditor(self._request.requestHeaders).get_headers()

    def as_is(self) -> Headers:
        """
        The request headers as received, without a copy (a
        L{twisted.web.http_headers.Headers}: read it, do not change it).
        """
        headers: Headers = self._request.requestHeaders
        return headers

    @property
    def body_size(self) -> int:
        """
        The size of the request body received, without reading it.
        """
        self._check_body()
        content = self._request.content
        if content is None:
            return 0
        position = content.tell()
        try:
            size: int = content.seek(0, 2)
            return size
        finally:
            content.seek(position)

    @property
    def body_streamed(self) -> bool:
        """
        Whether the body is still unread and goes to the service as it
        arrives (the route's C{request_buffering} is false): a plugin that
        would read it in access can cap it with L{limit_body} instead.
        """
        request = self._request
        return bool(getattr(request, "streams_body", False) and getattr(request, "holding", False))

    def limit_body(self, size: int) -> bool:
        """
        Cap the body at C{size} bytes as it arrives (before its end, or
        before it was read at all): past it the request is answered 413
        and its connection closed; once the response began (a streamed
        body), both the client's and the service's connections are cut.

        @return: whether what arrived so far is within C{size} (if not,
            answer 413 now).
        """
        limit = getattr(self._request, "limit_body", None)
        if limit is None:
            return self.body_size <= size
        return bool(limit(size))

    def _check_body(self) -> None:
        if getattr(self._request, "body_pending", False):
            raise BodyNotRead("the request body is read only after access unless the plugin declares"
                              " reads_body (see docs/plugins.md)")

    def body(self) -> bytes:
        """
        The request body (buffered, spooled to disk when large, so this
        reads it back). In C{rewrite} and C{access} it is there only for
        plugins that declare C{reads_body}; otherwise reading it there
        raises L{BodyNotRead}.
        """
        self._check_body()
        content = self._request.content
        if content is None:
            return b""
        content.seek(0)
        data: bytes = content.read()
        content.seek(0)
        return data


class UpstreamRequest(HeaderEditor):
    """
    What will be sent to the service (C{ctx.upstream}); plugins change it
    in C{rewrite}/C{access}.

    @ivar path: the path sent upstream (normalised, joined to the
        service's path).
    @ivar query: the query string sent upstream.
    @ivar method: the method sent upstream (the client's unless changed).
    @ivar body: the body sent upstream instead of the client's, or C{None}
        for the client's own.
    @ivar buffering: whether the response is read whole before
        C{header_filter} (L{enable_buffering}).
    """

    __slots__ = ("path", "query", "method", "body", "buffering")

    def __init__(self, headers: Headers | HeaderPairs, path: str, query: str, method: str = "GET"):
        if isinstance(headers, Headers):
            self._headers, self._pairs = headers, None
        else:
            self._headers, self._pairs = None, headers
        self.path = path
        self.query = query
        self.method = method
        self.body: bytes | None = None
        self.buffering = False

    def enable_buffering(self) -> None:
        """
        Read the service's response body whole before C{header_filter}
        (Kong's C{kong.service.request.enable_buffering}): it is then
        C{ctx.response.raw_body} in C{header_filter} and after, and the
        response is written whole, with a Content-Length. Called in
        C{access}. A route whose C{response_buffering} is false ignores
        it (with a debug log line); a body larger than the node's
        C{max_buffered_response} is answered 502.
        """
        self.buffering = True

    def set_method(self, method: str) -> None:
        """
        Call the service with C{method} instead (the client still gets the
        response as an answer to its own method).
        """
        if not method or not method.isascii() or not method.isalpha():
            raise ValueError(f"invalid HTTP method {method!r}")
        self.method = method.upper()

    def set_body(self, body: bytes) -> None:
        """
        Send C{body} to the service instead of the client's body (the
        gateway writes the Content-Length).
        """
        if not isinstance(body, bytes):
            raise TypeError("an upstream body must be bytes")
        self.body = body

    def set_path(self, path: str) -> None:
        """
        Send C{path} upstream instead.
        """
        if not path.startswith("/"):
            raise ValueError("an upstream path must start with /")
        self.path = path

    def set_query(self, query: str | Mapping[str, Any]) -> None:
        """
        Send this query string (or mapping of arguments) upstream instead.
        """
        self.query = query if isinstance(query, str) else urlencode(query, doseq=True)
