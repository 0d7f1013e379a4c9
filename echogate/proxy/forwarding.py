"""
The gateway's forwarding policy: the header lines a request carries to
its service, as Kong sends them (the client's end-to-end headers, Host per
C{preserve_host}, X-Real-IP, X-Forwarded-*, Via), and which peers'
X-Forwarded-* headers are believed (L{TrustedNetworks}).
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

from twisted.logger import Logger
from twisted.web.http_headers import Headers

from echogate._version import __version__
from echogate.pdk.rawheaders import DIRECT, stored_name
from echogate.upstream.hop_by_hop import HOP_BY_HOP, listed_names

VIA = f"1.1 echogate/{__version__}".encode()
_log = Logger(namespace="echogate.proxy")

_REPLACED_UP = frozenset(
    (b"x-real-ip", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
     b"x-forwarded-path", b"x-forwarded-prefix")
)


class TrustedNetworks:
    """
    The peers whose X-Forwarded-* headers echogate believes
    (the C{trusted_ips} setting).
    """

    def __init__(self, networks: Iterable[str] = ()):
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._all = any(n.prefixlen == 0 for n in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        if self._all:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self._networks)


def host_header(service: dict) -> bytes:
    """
    The Host header for C{service}: its host, plus C{:port} when the port
    is not the scheme's default.
    """
    host: str = service["host"]
    port = service.get("port")
    scheme = service.get("protocol") or "http"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or (scheme == "http" and port == 80) or (scheme == "https" and port == 443):
        return host.encode("idna") if not host.isascii() else host.encode()
    return f"{host}:{port}".encode()


#: id of a service record to the record and its L{host_header}: each
#: service's Host header worked out once, not for every request (the
#: record is kept with it, so that its id is not another's). Emptied when
#: it reaches 1,024 services.
_HOST_HEADERS: dict[int, tuple[dict, bytes]] = {}


def _remember_host(service: dict) -> bytes:
    """
    L{host_header}, remembered in L{_HOST_HEADERS}.
    """
    host = host_header(service)
    if len(_HOST_HEADERS) >= 1024:
        _HOST_HEADERS.clear()
    _HOST_HEADERS[id(service)] = (service, host)
    return host


# Request headers the gateway writes itself, replacing the client's.
_SET_UP = frozenset((b"host", b"x-real-ip", b"x-forwarded-for", b"via"))
#: The identity headers the auth plugins set for the service: a client's
#: own copies never reach it, on any route, whether or not an auth plugin
#: runs (a service behind echogate may believe these; see
#: docs/consumers.md).
IDENTITY_HEADERS = frozenset((
    b"x-consumer-id", b"x-consumer-custom-id", b"x-consumer-username", b"x-consumer-groups",
    b"x-credential-identifier", b"x-credential-username", b"x-anonymous-consumer", b"x-anonymous-groups",
    b"x-authenticated-groups", b"x-authenticated-scope", b"x-authenticated-userid",
))
# Proxy: httpoxy (CVE-2016-5385); a CGI-style service would take it for
# its outbound proxy (HTTP_PROXY). Kong clears it too.
_DROPPED_UP = HOP_BY_HOP | {b"content-length", b"proxy"} | _SET_UP | IDENTITY_HEADERS
_DROPPED_UP_UNTRUSTED = _DROPPED_UP | _REPLACED_UP
_CONNECTION = stored_name(b"connection")
_NONE_KEPT: frozenset[bytes] = frozenset()
#: Header names (as a request's L{Headers} keeps them, up to 256 bytes)
#: to their lower case: stops growing at 1,024 names.
_LOWERED: dict[bytes, bytes] = {}
_SCHEMES = {"http": b"http", "https": b"https"}
#: Listener ports as X-Forwarded-Port gives them (the node's few).
_PORTS: dict[int, bytes] = {}
#: Host header values to their host name without the port (as
#: X-Forwarded-Host gives it): the same few come again and again; emptied
#: when it reaches 1,024 values.
_HOST_NAMES: dict[bytes, bytes] = {}


_said: list[bool] = []


def _said_underscores() -> None:
    # Once per process: which headers are dropped is the setting's rule,
    # not news for every request.
    if not _said:
        _said.append(True)
        _log.info("dropping request headers whose names contain '_' before they reach services"
                  " (headers_with_underscores = drop; 'reject' or 'allow' to change)")


def _one_line(value: bytes) -> bytes:
    # Values the gateway computes must not break the head (the client's own
    # values come from Twisted's parser, which cannot yield a line break).
    if 13 in value or 10 in value:  # CR, LF (ints: see echogate.pdk.headers._CR)
        return b" ".join(value.splitlines())
    return value


def upstream_headers(
    request_headers: Headers,
    service: dict,
    preserve_host: bool,
    client_ip: str,
    peer_trusted: bool,
    scheme: str,
    listener_port: int,
    path: str,
    stripped: str,
    underscores: bool = False,
) -> list[tuple[bytes, bytes]]:
    """
    The header lines sent upstream, as Kong sends them: the client's
    end-to-end headers (in order, repeated ones kept) but for the identity
    headers the gateway sets itself (L{IDENTITY_HEADERS}), Host per
    C{preserve_host}, X-Real-IP, X-Forwarded-*, Via.

    @param underscores: whether headers whose names contain C{_} pass
        (C{headers_with_underscores = allow}); else they are dropped, since
        CGI and WSGI services merge C{X_Consumer_ID} with C{X-Consumer-ID}.
    @return: C{(name, value)} pairs, ready for the wire.
    """
    if DIRECT and type(request_headers) is Headers:
        # (getRawHeaders and getAllRawHeaders, without their calls)
        stored = request_headers._rawHeaders
        connection: Sequence[bytes] | None = stored.get(_CONNECTION)
        lines: Iterable[tuple[bytes, Sequence[bytes]]] = stored.items()
    else:
        connection = request_headers.getRawHeaders(b"connection")
        lines = request_headers.getAllRawHeaders()
    listed = listed_names(connection) if connection else ()
    incoming_host = forwarded_for = via = None
    skip = _DROPPED_UP if peer_trusted else _DROPPED_UP_UNTRUSTED
    pairs: list[tuple[bytes, bytes]] = []
    append = pairs.append
    # The X-Forwarded-* a trusted peer sent stand; from another peer they
    # are dropped (in skip), so there is nothing to remember.
    kept: set[bytes] | frozenset[bytes] = set() if peer_trusted else _NONE_KEPT
    lowered = _LOWERED
    for name, values in lines:
        # (the same name objects come in every request: their lowered
        # forms, hashed once, are remembered)
        lower = lowered.get(name)
        if lower is None:
            lower = name.lower()
            if len(lowered) < 1024 and len(name) <= 256:
                lowered[name] = lower
        if lower in skip or lower in listed:
            # Host, X-Forwarded-For and Via are always in skip: rewritten.
            if lower == b"host":
                incoming_host = values
            elif lower == b"x-forwarded-for":
                forwarded_for = values
            elif lower == b"via":
                via = values
            continue
        if 95 in lower and not underscores:  # "_" (an int: see echogate.pdk.headers._CR)
            _said_underscores()
            continue
        if peer_trusted:
            kept.add(lower)  # type: ignore[union-attr]
        for value in values:
            append((name, value))
    if preserve_host and incoming_host:
        append((b"Host", incoming_host[0]))
    else:
        known = _HOST_HEADERS.get(id(service))
        append((b"Host", known[1] if known is not None and known[0] is service else _remember_host(service)))
    # The client's address is the peer's or a parsed header's value, and
    # the path comes from the request line (Twisted splits it on
    # whitespace): neither can hold a line break.
    ip = client_ip.encode("latin-1")
    append((b"X-Real-IP", ip))
    append((b"X-Forwarded-For", b", ".join(forwarded_for) + b", " + ip if forwarded_for else ip))
    # From a trusted peer, the X-Forwarded-* it sent stand (they were kept).
    if b"x-forwarded-proto" not in kept:
        append((b"X-Forwarded-Proto", _SCHEMES.get(scheme) or scheme.encode("ascii")))
    if incoming_host and b"x-forwarded-host" not in kept:
        raw = incoming_host[0]
        host_name = _HOST_NAMES.get(raw)
        if host_name is None:
            host_name = raw[: raw.index(b"]") + 1] if raw.startswith(b"[") else raw.partition(b":")[0]
            if len(raw) <= 300:  # (a DNS name has at most 253 bytes)
                if len(_HOST_NAMES) >= 1024:
                    _HOST_NAMES.clear()
                _HOST_NAMES[raw] = host_name
        append((b"X-Forwarded-Host", host_name))
    if b"x-forwarded-port" not in kept:
        port = _PORTS.get(listener_port)
        if port is None:
            port = _PORTS[listener_port] = b"%d" % listener_port
        append((b"X-Forwarded-Port", port))
    if b"x-forwarded-path" not in kept:
        append((b"X-Forwarded-Path", path.encode("latin-1")))
    if stripped and stripped != "/" and b"x-forwarded-prefix" not in kept:
        append((b"X-Forwarded-Prefix", _one_line(stripped.rstrip("/").encode("latin-1")) or b"/"))
    append((b"Via", b", ".join(via) + b", " + VIA if via else VIA))
    return pairs


__all__ = ["VIA", "IDENTITY_HEADERS", "TrustedNetworks", "host_header", "upstream_headers"]
