"""
The request and response as plugins read and change them: the client's
request (L{ClientRequest}, read-only), what goes to the service
(L{UpstreamRequest}), the response on its way back (L{ResponseState}),
their headers (L{HeaderEditor}), and an answer a plugin makes itself
(L{Exit}). L{echogate.pdk.context} ties them to one request.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlencode

from twisted.web.http_headers import Headers, InvalidHeaderName

from echogate.errors import BodyNotRead
from echogate.pdk.tls import TLSInfo, tls_of


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _s(value: bytes) -> str:
    return value.decode("latin-1")


#: Header lines as they go on the wire: (name, value) pairs.
HeaderPairs = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


_NAMES: dict[str | bytes, bytes] = {}
_MAX_NAMES = 10_000  # plugins use a few names; a bound keeps odd ones from filling memory


def _name(name: str | bytes) -> bytes:
    """
    A header name for the wire, refused (L{InvalidHeaderName}) unless it
    is a token (RFC 9110, section 5.1), as L{Headers} refuses it. Checked
    names are remembered.
    """
    raw = _NAMES.get(name)
    if raw is not None:
        return raw
    raw = _b(name)
    if _TOKEN.fullmatch(raw) is None:
        raise InvalidHeaderName(raw)
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[name] = raw
    return raw


def _value(value: str | bytes) -> bytes:
    """
    A header value for the wire: line breaks become spaces, as L{Headers}
    makes them.
    """
    raw = _b(value)
    if b"\r" in raw or b"\n" in raw:
        return b" ".join(raw.splitlines())
    return raw


def headers_of(pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
    """
    A L{Headers} holding C{pairs}, in order.
    """
    headers = Headers()
    add = headers.addRawHeader
    for name, value in pairs:
        add(name, value)
    return headers


class HeaderEditor:
    """
    Read and change a set of HTTP headers by name, case-insensitively.

    The headers may start as a list of C{(name, value)} pairs, the lines as
    they go on the wire (names as sent, repeated names kept in order), and
    the methods below read and change that list: a L{Headers} object is
    built from it only when something asks for C{headers}, after which the
    methods work on that object. A request whose plugins use only these
    methods goes upstream, and its response to the client, without one.
    """

    __slots__ = ("_headers", "_pairs")

    def __init__(self, headers: Headers | None = None, pairs: HeaderPairs | None = None):
        self._headers = headers
        self._pairs = pairs

    @property
    def headers(self) -> Headers:
        """
        The headers, as a L{twisted.web.http_headers.Headers}.
        """
        headers = self._headers
        if headers is None:
            headers = self._headers = headers_of(self._pairs or ())
            self._pairs = None
        return headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers
        self._pairs = None

    def as_is(self) -> Headers | HeaderPairs:
        """
        The headers without building anything: the L{Headers} if it
        exists, else the pairs.
        """
        return self._headers if self._headers is not None else (self._pairs or [])

    def get_header(self, name: str) -> str | None:
        """
        The first value of header C{name}, or C{None}.
        """
        headers = self._headers
        if headers is None:
            key = _b(name).lower()
            for raw, value in self._pairs or ():
                if raw.lower() == key:
                    return _s(value)
            return None
        values = headers.getRawHeaders(_b(name))
        return _s(values[0]) if values else None

    def get_headers(self) -> dict[str, list[str]]:
        """
        Every header: lower-case name to its values.
        """
        if self._headers is None:
            out: dict[str, list[str]] = {}
            for raw, value in self._pairs or ():
                out.setdefault(_s(raw).lower(), []).append(_s(value))
            return out
        return {_s(k).lower(): [_s(v) for v in vs] for k, vs in self._headers.getAllRawHeaders()}

    def _without(self, key: bytes) -> HeaderPairs:
        """
        The pairs, without those named C{key} (lower case).
        """
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = []
            return pairs
        for raw, _ in pairs:
            if raw.lower() == key:
                pairs = self._pairs = [pair for pair in pairs if pair[0].lower() != key]
                break
        return pairs

    def set_header(self, name: str, value: str | bytes | Iterable[str | bytes]) -> None:
        """
        Replace header C{name} with C{value} (a string or bytes, or several
        values).
        """
        values = [value] if isinstance(value, (str, bytes)) else list(value)
        if self._headers is None:
            raw = _name(name)
            pairs = self._without(raw.lower())
            for one in values:
                pairs.append((raw, _value(one)))
            return
        self._headers.setRawHeaders(_b(name), [_b(v) for v in values])

    def add_header(self, name: str, value: str) -> None:
        """
        Add a value to header C{name}, keeping the ones it had.
        """
        if self._headers is None:
            if self._pairs is None:
                self._pairs = []
            self._pairs.append((_name(name), _value(value)))
            return
        self._headers.addRawHeader(_b(name), _b(value))

    def remove_header(self, name: str) -> None:
        """
        Remove header C{name} if present.
        """
        if self._headers is None:
            self._without(_b(name).lower())
            return
        self._headers.removeHeader(_b(name))


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
        values = self._request.requestHeaders.getRawHeaders(_b(name))
        return _s(values[0]) if values else None

    def get_headers(self) -> dict[str, list[str]]:
        """
        Every request header: lower-case name to its values.
        """
        return HeaderEditor(self._request.requestHeaders).get_headers()

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
    """

    __slots__ = ("status", "source", "eof", "upstream_status", "_upstream", "raw_body")

    def __init__(self) -> None:
        self._headers = None
        self._pairs = None
        self.status: int | None = None
        self.source: str | None = None
        self.eof = False
        self.upstream_status: int | None = None
        self._upstream: Headers | HeaderPairs | None = None
        self.raw_body: bytes | None = None

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

    @property
    def changed_early(self) -> bool:
        """
        Whether any header was set before the response head existed.
        """
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
