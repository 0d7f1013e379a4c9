"""
Heads on the proxy listener, checked before a request is made of them:
the edge limits (L{HeadLimits}), the checks of a whole head
(L{head_error}, L{simple_head_error}), the one-step parse of a head that
announces no body (L{simple_head}), and the raw error answers the channel
sends when it refuses one (L{error_response}).
"""
from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

import attrs

from echogate._version import __version__

_SERVER = f"echogate/{__version__}".encode()


@attrs.frozen
class HeadLimits:
    """
    What a client may send and how slowly (the edge settings; see
    docs/security.md). A site's C{head_limits} (this default when it has
    none) applies to each of its connections.

    @ivar request_line: the longest request line, in bytes (longer: 414).
    @ivar header_line: the longest header line, in bytes (longer: 431).
    @ivar headers: the most header lines (more: 431).
    @ivar header_timeout: seconds from a head's first byte to its end
        (later: 408), whatever arrives in between.
    @ivar body_timeout: seconds allowed between two reads of a body
        (later: 408).
    @ivar send_timeout: seconds a client may leave the response unread
        while the gateway has more to send (later: the connection is cut).
    @ivar reject_underscores: answer 400 to a head with a header name
        holding C{_} (C{headers_with_underscores = reject}).
    """

    request_line: int = 8192
    header_line: int = 8192
    headers: int = 100
    header_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    reject_underscores: bool = False


DEFAULT_LIMITS = HeadLimits()

#: The Host header: a reg-name, IPv4 or bracketed IPv6 literal, and an
#: optional port (RFC 9110 section 7.2, RFC 3986 section 3.2.2).
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::([0-9]{0,5}))?")

#: The messages of the answers the connection gives itself, as Kong's
#: error handler words them.
MESSAGES = {
    400: "Bad request",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Request size limit exceeded",
    414: "URI too long",
    431: "Request header or cookie too large",
    501: "Not implemented",
}


def error_response(status: int, message: str | None = None) -> bytes:
    """
    A whole JSON error response that closes the connection, for answers
    given before there is a request to answer through.
    """
    body = json.dumps({"message": message or MESSAGES.get(status, HTTPStatus(status).phrase)}).encode()
    return b"".join((b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
                     b"Content-Type: application/json; charset=utf-8\r\n",
                     b"Content-Length: %d\r\n" % len(body),
                     b"Connection: close\r\nServer: ", _SERVER, b"\r\n\r\n", body))


def head_error(request: Any, version: bytes) -> int | None:
    """
    The status a whole request head must be refused with, before routing,
    or C{None}: RFC 9112 section 3.2 (an HTTP/1.1 request needs exactly
    one valid Host; no request may have several), section 6.1 (a
    Transfer-Encoding other than C{chunked}, several of them, one with a
    Content-Length, or one in an HTTP/1.0 request), and TRACE (405, as
    nginx: it would echo the client's credentials back).
    """
    headers = request.requestHeaders
    hosts = headers.getRawHeaders(b"host")
    if hosts is None:
        if version == b"HTTP/1.1":
            return 400
    elif len(hosts) != 1 or not _valid_host(hosts[0]):
        return 400
    codings = headers.getRawHeaders(b"transfer-encoding")
    if codings is not None:
        if version != b"HTTP/1.1" or len(codings) != 1 or codings[0].lower() != b"chunked" \
                or headers.hasHeader(b"content-length"):
            return 400
    elif len(headers.getRawHeaders(b"content-length") or ()) > 1:
        return 400
    if request.method == b"TRACE":
        return 405
    return None


def simple_head_error(method: bytes, version: bytes, data: bytes) -> int | None:
    """
    L{head_error} for a whole head L{simple_head} took (C{data}, which has
    no Content-Length or Transfer-Encoding and only CRLF lines of token
    names): only Host and TRACE are left to check, found by searching the
    bytes once rather than line by line.
    """
    lowered = data.lower()
    hosts = lowered.count(b"\r\nhost:")
    if hosts == 0:
        if version == b"HTTP/1.1":
            return 400
    elif hosts > 1:
        return 400
    else:
        start = lowered.index(b"\r\nhost:") + 7
        host = data[start:data.index(b"\r\n", start)].strip(b" \t")
        valid = _VALID_HOSTS.get(host)
        if not (valid if valid is not None else _valid_host(host)):
            return 400
    if method == b"TRACE":
        return 405
    return None


#: Host values seen valid lately: most requests repeat a few.
_VALID_HOSTS: dict[bytes, bool] = {}


def _valid_host(value: bytes) -> bool:
    known = _VALID_HOSTS.get(value)
    if known is not None:
        return known
    match = _HOST.fullmatch(value)
    if match is None or not value or value.startswith(b":"):
        valid = False
    else:
        port = match.group(1)
        valid = port is None or (port != b"" and int(port) <= 65535)
    if len(_VALID_HOSTS) >= 1024:
        _VALID_HOSTS.clear()
    _VALID_HOSTS[value] = valid
    return valid


#: The characters of a token (a method, a header name).
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The characters of a request target: visible ASCII.
_VISIBLE = bytes(range(0x21, 0x7F))
#: Headers that give a request a body or ask for a 100 Continue (lowered):
#: heads with them go through Twisted's own path.
_NOT_SIMPLE = (b"content-length", b"transfer-encoding", b"expect")
#: What a method or header name is, by the name as sent: C{0} a token,
#: C{1} a token naming one of L{_NOT_SIMPLE}, C{2} Host, C{-1} not a
#: token. The same few come in every head; it stops growing at
#: L{_TOKENS_MAX} names.
_TOKENS: dict[bytes, int] = {}
_TOKENS_MAX = 1024


def _token_kind(name: bytes) -> int:
    """
    What C{name} is (see L{_TOKENS}), remembered.
    """
    if not name or name.translate(None, _TOKEN):
        kind = -1
    else:
        lower = name.lower()
        kind = 1 if lower in _NOT_SIMPLE else 2 if lower == b"host" else 0
    if len(_TOKENS) < _TOKENS_MAX:
        _TOKENS[name] = kind
    return kind


def simple_head(data: bytes, max_size: int, max_headers: int) -> tuple[bytes, bytes, bytes, list] | None:
    """
    C{(method, target, version, [(name, value), ...])} when C{data} is
    exactly one whole request head that Twisted's C{HTTPChannel} would
    accept as it is and that announces no body: at most C{max_size} bytes
    and C{max_headers} header lines, no folded lines, no Content-Length,
    Transfer-Encoding or Expect header. C{None} for anything else, which
    is then left to C{HTTPChannel} (which parses, or rejects, it itself).
    Values are as sent; the channel strips spaces and tabs around them, as
    C{HTTPChannel} does. (L{checked_head} without the status.)
    """
    head = checked_head(data, max_size, max_headers)
    return None if head is None else head[:4]


def checked_head(data: bytes, max_size: int,
                 max_headers: int) -> tuple[bytes, bytes, bytes, list, int | None] | None:
    """
    L{simple_head}'s C{(method, target, version, headers)} and the status
    the head must be refused with, or C{None} (what L{simple_head_error}
    gives, found along the way): C{None} for a head L{simple_head}
    declines.

    The head is a request line of a token method, a target of visible
    ASCII and C{HTTP/1.0} or C{HTTP/1.1}, separated by single spaces;
    header lines of a token name, a colon and a value without NUL, CR or
    LF; all ended by CRLF; the blank line last. It is split on its CRLFs
    (a bare CR or LF, or a NUL, anywhere declines it) rather than matched
    with a pattern: a third of the cost on PyPy, whose JIT sees through
    the split, and less on CPython too.
    """
    # (0 is NUL: an int, which bytes.__contains__ takes directly; a bytes
    # needle is first tried as an int, raising and clearing a TypeError)
    if len(data) > max_size or not data.endswith(b"\r\n\r\n") or 0 in data:
        return None
    lines = data.split(b"\r\n")
    # The last two pieces are the blank line's: empty.
    breaks = len(lines) - 1
    if data.count(b"\r") != breaks or data.count(b"\n") != breaks or breaks - 2 > max_headers:
        return None
    request_line = lines[0].split(b" ")
    if len(request_line) != 3:
        return None
    method, target, version = request_line
    tokens = _TOKENS
    kind = tokens.get(method)
    if kind is None:
        kind = _token_kind(method)
    if kind < 0 or (version != b"HTTP/1.1" and version != b"HTTP/1.0") or not target or target.translate(
            None, _VISIBLE):
        return None
    headers = []
    hosts = 0
    host = b""
    for i in range(1, breaks - 1):
        name, colon, value = lines[i].partition(b":")
        kind = tokens.get(name)
        if kind is None:
            kind = _token_kind(name)
        if kind:
            if kind != 2 or not colon:  # not a token, or a header that is not simple; or no colon
                return None
            hosts += 1
            host = value
        elif not colon:
            return None
        headers.append((name, value))
    # What head_error checks, but for what this head cannot have.
    status: int | None = None
    if hosts == 1:
        host = host.strip(b" \t")
        valid = _VALID_HOSTS.get(host)
        if not (valid if valid is not None else _valid_host(host)):
            status = 400
    elif hosts or version == b"HTTP/1.1":  # several, or none in HTTP/1.1
        status = 400
    if status is None and method == b"TRACE":
        status = 405
    return method, target, version, headers, status
