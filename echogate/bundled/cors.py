"""
cors: Cross-Origin Resource Sharing headers, and preflight requests
answered by the gateway.

A preflight (C{OPTIONS} with C{Origin} and
C{Access-Control-Request-Method}) is answered 200 in C{access} with the
C{Access-Control-Allow-*} headers, without calling the service, unless
C{preflight_continue} sends it on (and then the plugin adds nothing).
Every other response gets C{Access-Control-Allow-Origin} (and
C{-Allow-Credentials}, C{-Expose-Headers}) in C{header_filter}.

Origins are exact (C{https://example.com}, default ports ignored) or
regular expressions (any entry with a character other than letters,
digits and C{.:/-}); a regex without C{:} is matched against the origin's
host only, one with C{:} against C{scheme://host[:port]}; regexes are
anchored at both ends.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Sequence

import attrs

from echogate._version import __version__
from echogate.plugin import GatewayPlugin
from echogate.schema import Array, Boolean, Number, Record, String

METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT")
ALL_METHODS = ",".join(METHODS)

_PLAIN = re.compile(r"^[A-Za-z0-9.:/-]+$")
_AUTHORITY = re.compile(r"^(?:([A-Za-z][A-Za-z0-9+.-]*):)?//([^/?#]*)")

ALLOW_ORIGIN = "Access-Control-Allow-Origin"
ALLOW_CREDENTIALS = "Access-Control-Allow-Credentials"


def _check_origin(value: str) -> str | None:
    if value == "*":
        return None
    try:
        re.compile(value)
    except re.error:
        return f"'{value}' is not a valid regex"
    return None


def normalize_origin(origin: str) -> tuple[str, str]:
    """
    C{(scheme://host[:port], host)} for an origin, the port left out when
    it is the scheme's default; C{(origin, origin)} when it has no host.
    """
    found = _AUTHORITY.match(origin)
    if found is None:
        return origin, origin
    scheme, authority = found.groups()
    authority = authority.rpartition("@")[2]
    port: str | None = None
    if authority.startswith("[") and "]" in authority:
        end = authority.index("]") + 1
        host, rest = authority[:end], authority[end:]
        port = rest[1:] if rest.startswith(":") else None
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    else:
        host = authority
    if not host:
        return origin, origin
    if not port or (scheme == "http" and port == "80") or (scheme == "https" and port == "443"):
        port = None
    domain = (f"{scheme}://" if scheme else "") + host + (f":{port}" if port else "")
    return domain, host


@attrs.frozen
class _Allowed:
    """
    One configured origin, ready to compare: a normalised domain or an
    anchored regex, matched against the host or the whole domain.
    """

    domain: str | None
    regex: re.Pattern[str] | None
    by_host: bool

    def matches(self, domain: str, host: str) -> bool:
        if self.regex is not None:
            return self.regex.match(host if self.by_host else domain) is not None
        return domain == self.domain


@functools.lru_cache(maxsize=256)
def _compiled(origins: tuple[str, ...]) -> tuple[_Allowed, ...] | None:
    """
    The configured origins compiled (C{None} when one of them is C{*}).
    """
    out = []
    for entry in origins:
        if entry == "*":
            return None
        if _PLAIN.match(entry):
            out.append(_Allowed(normalize_origin(entry)[0], None, ":" not in entry))
            continue
        pattern = entry if entry.endswith("$") else entry + "$"
        pattern = pattern[1:] if pattern.startswith("^") else pattern
        out.append(_Allowed(None, re.compile(pattern), ":" not in pattern))
    return tuple(out)


class _ExitHeaders:
    """
    The headers of a preflight answer, with the response's header methods.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set_header(self, name: str, value: str) -> None:
        self.values[name] = value

    def add_header(self, name: str, value: str) -> None:
        self.set_header(name, value)

    def remove_header(self, name: str) -> None:
        self.values.pop(name, None)


def _vary(headers: Any, in_filter: bool) -> None:
    if in_filter:
        headers.add_header("Vary", "Origin")
    else:
        headers.set_header("Vary", "Origin")


def configure_origin(config: Mapping[str, Any], headers: Any, in_filter: bool, origin: str | None) -> bool:
    """
    Set C{Access-Control-Allow-Origin} on C{headers}; true when every
    origin is allowed (C{*}).
    """
    origins: Sequence[str] = config["origins"] or ()
    if not origins or (len(origins) == 1 and origins[0] == "*"):
        headers.set_header(ALLOW_ORIGIN, "*")
        return True
    _vary(headers, in_filter)
    if len(origins) == 1 and _PLAIN.match(origins[0]):
        headers.set_header(ALLOW_ORIGIN, origins[0])
        return False
    if origin:
        allowed = _compiled(tuple(origins))
        if allowed is None:
            headers.set_header(ALLOW_ORIGIN, "*")
            return True
        domain, host = normalize_origin(origin)
        if any(a.matches(domain, host) for a in allowed):
            headers.set_header(ALLOW_ORIGIN, domain)
            return False
    headers.remove_header(ALLOW_ORIGIN)
    return False


def configure_credentials(config: Mapping[str, Any], headers: Any, in_filter: bool, allow_all: bool,
                          origin: str | None) -> None:
    """
    Set C{Access-Control-Allow-Credentials}; with every origin allowed,
    echo the request's origin instead of C{*}, since browsers refuse
    credentials with C{*}.
    """
    if not config["credentials"]:
        return
    if not allow_all:
        headers.set_header(ALLOW_CREDENTIALS, "true")
        return
    if origin:
        _vary(headers, in_filter)
        headers.set_header(ALLOW_ORIGIN, origin)
        headers.set_header(ALLOW_CREDENTIALS, "true")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class Cors(GatewayPlugin):
    """
    Kong's cors.
    """

    name = "cors"
    version = __version__
    priority = 2000
    config_schema = Record({
        "origins": Array(String(check=_check_origin),
                         description="Allowed origins: exact, regexes, or *; none means all."),
        "headers": Array(String(), description="Access-Control-Allow-Headers; none echoes the request's."),
        "exposed_headers": Array(String(), description="Access-Control-Expose-Headers."),
        "methods": Array(String(one_of=METHODS), default=list(METHODS),
                         description="Access-Control-Allow-Methods."),
        "max_age": Number(description="Access-Control-Max-Age, in seconds."),
        "credentials": Boolean(required=True, default=False,
                               description="Send Access-Control-Allow-Credentials: true."),
        "private_network": Boolean(required=True, default=False,
                                   description="Send Access-Control-Allow-Private-Network: true when asked."),
        "preflight_continue": Boolean(required=True, default=False,
                                      description="Send preflight requests to the service."),
        "allow_origin_absent": Boolean(required=True, default=True,
                                       description="Add the headers to responses to requests without Origin."),
    })

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        request = ctx.request
        origin = request.get_header("origin")
        if request.method != "OPTIONS" or not origin or request.get_header("access-control-request-method") is None:
            return
        ctx.plugin["preflight"] = True
        if config["preflight_continue"]:
            return
        headers = _ExitHeaders()
        allow_all = configure_origin(config, headers, False, origin)
        configure_credentials(config, headers, False, allow_all, origin)
        if config["headers"]:
            headers.set_header("Access-Control-Allow-Headers", ",".join(config["headers"]))
        else:
            requested = request.get_header("access-control-request-headers")
            if requested is not None:
                headers.set_header("Access-Control-Allow-Headers", requested)
        methods = config["methods"]
        headers.set_header("Access-Control-Allow-Methods", ",".join(methods) if methods is not None else ALL_METHODS)
        if config["max_age"] is not None:
            headers.set_header("Access-Control-Max-Age", _number_text(config["max_age"]))
        if config["private_network"] and request.get_header("access-control-request-private-network") == "true":
            headers.set_header("Access-Control-Allow-Private-Network", "true")
        ctx.exit(200, None, headers.values)

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        if ctx.plugin.get("preflight"):
            return
        origin = ctx.request.get_header("origin")
        if not origin and not config["allow_origin_absent"]:
            return
        response = ctx.response
        allow_all = configure_origin(config, response, True, origin)
        configure_credentials(config, response, True, allow_all, origin)
        if config["exposed_headers"]:
            response.set_header("Access-Control-Expose-Headers", ",".join(config["exposed_headers"]))
