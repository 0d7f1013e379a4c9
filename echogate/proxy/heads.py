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


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: A request head that needs none of HTTPChannel's line-by-line handling:
#: a request line (a token method, a printable target, HTTP/1.0 or 1.1)
#: and header lines of a token name, a colon and a value without NUL, CR
#: or LF, all ending in CRLF and nothing after the blank line.
_SIMPLE_HEAD = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])\r\n((?:" + _TOKEN
                          + rb":[^\r\n\x00]*\r\n)*)\r\n\Z")
_HEADER_LINE = re.compile(rb"([^:]+):([^\r]*)\r\n")
#: Headers that give a request a body or ask for a 100 Continue: heads
#: with them go through Twisted's own path.
_NOT_SIMPLE = (b"\r\ncontent-length:", b"\r\ntransfer-encoding:", b"\r\nexpect:")


def simple_head(data: bytes, max_size: int, max_headers: int) -> tuple[bytes, bytes, bytes, list] | None:
    """
    C{(method, target, version, [(name, value), ...])} when C{data} is
    exactly one whole request head that Twisted's C{HTTPChannel} would
    accept as it is and that announces no body: at most C{max_size} bytes
    and C{max_headers} header lines, no folded lines, no Content-Length,
    Transfer-Encoding or Expect header. C{None} for anything else, which
    is then left to C{HTTPChannel} (which parses, or rejects, it itself).
    Values are as sent; the channel strips spaces and tabs around them, as
    C{HTTPChannel} does.
    """
    if len(data) > max_size:
        return None
    match = _SIMPLE_HEAD.match(data)
    if match is None:
        return None
    block = match.group(4)
    if block:
        lowered = b"\r\n" + block.lower()
        for name in _NOT_SIMPLE:
            if name in lowered:
                return None
        headers = _HEADER_LINE.findall(block)
        if len(headers) > max_headers:
            return None
    else:
        headers = []
    return match.group(1), match.group(2), match.group(3), headers
