"""
What the Admin API checks before any of its routes runs: that the request
is meant for it (C{Host}), that it comes from an operator (C{admin_token})
and, for a change, that no other web page sent it (C{Origin}).

A browser is the attacker's tool against an Admin API on loopback: any
page the operator opens can send requests to C{http://127.0.0.1:8001}.

  - DNS rebinding: a page at C{http://attacker.example:8001} makes its own
    name resolve to 127.0.0.1 and then reads and writes the Admin API as
    its own origin. The browser still sends C{Host: attacker.example:8001},
    so a C{Host} that is not an address of this listener, C{localhost} or
    one of C{admin_server_names} is answered 421 (Misdirected Request:
    this server does not answer for that name).
  - Cross-site request forgery: a page posts a form (or C{fetch}es with
    a simple content type) to the Admin API. The browser sends the page's
    C{Origin}, so a state-changing request (C{POST}, C{PUT}, C{PATCH},
    C{DELETE}) whose C{Origin} is present and is not the Admin API's own
    origin is answered 403. Clients that are not browsers (curl, deck,
    scripts) send no C{Origin} and are not affected.
  - With C{admin_token} set, every request must carry
    C{Authorization: Bearer <token>}; without it (or with another token)
    the answer is 401 with C{WWW-Authenticate: Bearer}.

An IP address literal in C{Host} is always accepted: rebinding needs a
name the attacker controls, and a page can only put an address in C{Host}
by being served from that very address. (Accepting any address, not only
the listener's own, keeps port forwarding and NAT working: behind
C{docker -p}, the listener sees the container's address and the client
sends the host's.)
"""
from __future__ import annotations

import hmac
import ipaddress
import re
from typing import Sequence
from urllib.parse import unquote_to_bytes, urlsplit

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from echogate.admin.responses import json_response

__all__ = ["AdminGuard", "UNAUTHORIZED", "FORBIDDEN_ORIGIN", "MISDIRECTED", "BAD_PATH"]

UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN_ORIGIN = {"message": "Cross-origin requests that change the configuration are refused"}
MISDIRECTED = {"message": "This Admin API does not answer for that host name"}
BAD_PATH = {"message": "The request path is not valid UTF-8"}

#: The methods that change the configuration.
STATE_CHANGING = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})

_HOST = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9*_.\-]+)(?::(?P<port>[0-9]{1,5}))?", re.ASCII)
_BEARER = re.compile(r"bearer +(?P<token>\S+) *", re.ASCII | re.IGNORECASE)


def _split_host(value: str) -> tuple[str, int | None] | None:
    """
    C{(host, port)} of a C{Host} header (or an C{admin_server_names}
    entry), lower-cased, brackets kept on an IPv6 address; C{None} when
    it is not one.
    """
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = match.group("port")
    return match.group("host"), int(port) if port is not None else None


def _is_address(host: str) -> bool:
    """
    Whether C{host} (from L{_split_host}) is an IPv4 address or a
    bracketed IPv6 address.
    """
    try:
        if host.startswith("["):
            ipaddress.IPv6Address(host[1:-1])
        else:
            ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _default_port(secure: bool) -> int:
    return 443 if secure else 80


class AdminGuard(Resource):
    """
    The Admin API's resource behind its checks (see the module docstring).

    @param wrapped: the Admin API's own resource (a leaf: Klein routes
        the whole path).
    @param token: the bearer token every request must carry; C{""} for
        none.
    @param server_names: the host names (lower case, optionally with
        C{:port}, or C{*.example.com}) the Admin API answers to besides
        address literals and C{localhost}.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource, *, token: str = "",
                 server_names: Sequence[str] = ()):
        super().__init__()
        self._wrapped = wrapped
        self._token = token.encode("utf-8")
        self._names = [split for split in (_split_host(name) for name in server_names)
                       if split is not None]

    def render(self, request: IRequest) -> bytes | int:
        host = self._host(request)
        if host is None:
            return json_response(request, MISDIRECTED, 421)
        if self._token and not self._authorized(request):
            request.setHeader(b"www-authenticate", b"Bearer")
            return json_response(request, UNAUTHORIZED, 401)
        if request.method in STATE_CHANGING and not self._same_origin(request, host):
            return json_response(request, FORBIDDEN_ORIGIN, 403)
        try:
            # Klein decodes the path as UTF-8 and fails the request if it
            # is not (PUT /consumers/%ED%A0%80: a lone surrogate).
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return json_response(request, BAD_PATH, 400)
        answer: bytes | int = self._wrapped.render(request)
        return answer

    def _host(self, request: IRequest) -> tuple[str, int] | None:
        """
        The request's C{(host, port)} when it names this Admin API, else
        C{None}. A request without C{Host} (HTTP/1.0; no browser sends
        one) is taken as addressed to the listener's own address.
        """
        secure = request.isSecure()
        values = request.requestHeaders.getRawHeaders(b"host")
        if values is None:
            local = request.getHost()
            address = getattr(local, "host", "")
            host = f"[{address}]" if ":" in address else address
            return host, getattr(local, "port", _default_port(secure))
        if len(values) != 1:
            return None
        split = _split_host(values[0].decode("latin-1"))
        if split is None:
            return None
        host, port = split
        effective = port if port is not None else _default_port(secure)
        if host == "localhost" or _is_address(host):
            return host, effective
        if "*" in host:
            return None
        for name, name_port in self._names:
            if name_port is not None and name_port != effective:
                continue
            if name == host or (name.startswith("*.") and host.endswith(name[1:])):
                return host, effective
        return None

    def _authorized(self, request: IRequest) -> bool:
        values = request.requestHeaders.getRawHeaders(b"authorization")
        if values is None or len(values) != 1:
            return False
        match = _BEARER.fullmatch(values[0].decode("latin-1"))
        if match is None:
            return False
        return hmac.compare_digest(match.group("token").encode("latin-1"), self._token)

    def _same_origin(self, request: IRequest, host: tuple[str, int]) -> bool:
        """
        Whether the request has no C{Origin}, or the Admin API's own.
        """
        values = request.requestHeaders.getRawHeaders(b"origin")
        if values is None:
            return True
        if len(values) != 1:
            return False
        secure = request.isSecure()
        try:
            origin = urlsplit(values[0].decode("latin-1").strip())
            origin_port = origin.port
        except ValueError:
            return False
        if origin.scheme.lower() != ("https" if secure else "http"):
            return False
        if origin.path or origin.query or origin.fragment or origin.username or origin.password:
            return False
        origin_host = _split_host(origin.netloc)
        if origin_host is None:
            return False
        port = origin_port if origin_port is not None else _default_port(secure)
        return (origin_host[0], port) == host
