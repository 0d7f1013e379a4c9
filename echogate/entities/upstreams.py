"""
Load balancing entities: upstreams (a virtual host name that services
name as their C{host}, with a balancing algorithm and health checks) and
their targets (C{host:port} addresses with a weight), with Kong 3's
fields, defaults, cross-field checks and messages
(C{kong/db/schema/entities/upstreams.lua}, C{targets.lua}).

Besides the schemas, the steps Kong takes on write:

  - L{upstream_shorthands}: C{algorithm} and C{hash_on} adjust each other
    (C{least-connections} and C{latency} reset C{hash_on} to C{none}; a
    C{hash_on} other than C{none} selects C{consistent-hashing}, C{none}
    selects C{round-robin}).
  - L{format_target}: a target is stored normalised, with port 8000
    when it has none (C{"10.0.0.1"} becomes C{"10.0.0.1:8000"}, C{"::1"}
    C{"[0000:0000:0000:0000:0000:0000:0000:0001]:8000"}).

Where echogate differs from Kong: a target's C{created_at} and
C{updated_at} are integer seconds like every other entity's (Kong gives
targets milliseconds); C{client_certificate} accepts only null (there are
no certificate entities yet).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from echogate.entities.limits import INDEXED_MAX
from echogate.schema import ENTITY, Record
from echogate.schema.containers import Array, Map
from echogate.schema.fields import REQUIRED, Boolean, Field, Foreign, Integer, Number, String

__all__ = [
    "ALGORITHMS",
    "HASH_ON",
    "DEFAULT_TARGET_PORT",
    "normalize_ip",
    "sni_problem",
    "format_target",
    "upstream_schema",
    "target_schema",
    "upstream_shorthands",
    "TARGET_INVALID",
]

#: The balancing algorithms, in Kong's order.
ALGORITHMS = ("consistent-hashing", "least-connections", "round-robin", "latency")

#: What a consistent hash may be computed on.
HASH_ON = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")

#: The port a target without one is given.
DEFAULT_TARGET_PORT = 8000

#: The message for a target that is neither a host name nor an address,
#: when it is created (Kong's targets DAO normalises before validating).
TARGET_INVALID = "Invalid target; not a valid hostname or ip address"

# ---------------------------------------------------------------------------
# Addresses, after Kong's kong/tools/ip.lua

_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::(\d+))?\Z")
_HEX = re.compile(r"^[0-9A-Fa-f]{1,4}\Z")
_NAME = re.compile(r"^[A-Za-z0-9\-._]+\Z")


def _port(text: str) -> int:
    port = int(text)
    if port > 65535:
        raise ValueError("invalid port number")
    return port


def _ipv4(address: str) -> tuple[str, int | None]:
    m = _IPV4.match(address)
    if m is None or (":" in address and m.group(5) is None):
        raise ValueError(f"invalid ipv4 address: {address}")
    octets = [int(o) for o in m.group(1, 2, 3, 4)]
    if any(o > 255 for o in octets):
        raise ValueError(f"invalid ipv4 address: {address}")
    port = _port(m.group(5)) if m.group(5) is not None else None
    return ".".join(str(o) for o in octets), port


def _ipv6(address: str) -> tuple[str, int | None]:
    port: int | None = None
    bracketed = re.match(r"^\[([^\]]*)\](.*)\Z", address, re.S)
    if bracketed:
        check, rest = bracketed.groups()
        if rest:
            m = re.match(r"^:(\d*)\Z", rest)
            if m is None or not m.group(1):
                raise ValueError("invalid ipv6 address")
            port = _port(m.group(1))
    else:
        check = address
    if check.startswith(":"):
        check = "0" + check
    if check.endswith(":"):
        check = check + "0"
    if "::" in check:
        missing = 8 - check.count(":")
        check = check.replace("::", ":" + "0:" * missing, 1)
    groups = check.split(":")
    if len(groups) != 8 or not all(_HEX.match(g) for g in groups):
        raise ValueError(f"invalid ipv6 address: {address}")
    return ":".join(g.lower().rjust(4, "0") for g in groups), port


def _hostname(address: str) -> tuple[str, int | None]:
    name, port = address, None
    m = re.search(r":(\d+)\Z", address)
    if m is not None:
        name = address[: m.start()]
        port = _port(m.group(1))
    if _NAME.match(name) is None:
        raise ValueError(f"invalid hostname: {address}")
    labels = name.split(".")
    if any(label.endswith("-") or (label == "" and i != len(labels) - 1)
           for i, label in enumerate(labels)):
        raise ValueError(f"invalid hostname: {address}")
    return name, port


def normalize_ip(address: str) -> tuple[str, str, int | None]:
    """
    Parse and normalise C{name}, C{name:port}, C{ipv4}, C{ipv4:port},
    C{ipv6}, C{[ipv6]} or C{[ipv6]:port}, as Kong's C{normalize_ip}:
    IPv4 loses leading zeros, IPv6 is fully expanded in lower case
    (without brackets), a name is kept as given.

    @return: C{(kind, host, port)}: C{kind} is C{"name"}, C{"ipv4"} or
        C{"ipv6"}; C{port} is C{None} when not given.
    @raise ValueError: with Kong's message when C{address} is not valid.
    """
    if address.count(":") > 1:
        return ("ipv6", *_ipv6(address))
    if re.match(r"^[\d.]+\Z", address.replace(":", "")):
        return ("ipv4", *_ipv4(address))
    return ("name", *_hostname(address))


def format_target(target: str) -> str:
    """
    C{target} as Kong stores it: normalised (L{normalize_ip}), with
    L{DEFAULT_TARGET_PORT} when it has no port, and an IPv6 address in
    brackets.

    @raise ValueError: C{target} is not a host name or address.
    """
    kind, host, port = normalize_ip(target)
    if port is None:
        port = DEFAULT_TARGET_PORT
    if kind == "ipv6":
        host = f"[{host}]"
    return f"{host}:{port}"


# ---------------------------------------------------------------------------
# Value checks


def _utf8_name(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Invalid name"
    return f"Invalid name ('{value}')"


def _upstream_name(value: str) -> str | None:
    try:
        kind, _, port = normalize_ip(value)
    except ValueError:
        return f"{_utf8_name(value)}; must be a valid hostname"
    if kind != "name":
        return f"{_utf8_name(value)}; no ip addresses allowed"
    if port is not None:
        return f"{_utf8_name(value)}; no port allowed"
    return None


def _target(value: str) -> str | None:
    try:
        normalize_ip(value)
    except ValueError:
        return f"Invalid target ('{value}'); not a valid hostname or ip address"
    return None


def _host_with_optional_port(value: str) -> str | None:
    try:
        normalize_ip(value)
    except ValueError as e:
        return str(e)
    return None


def sni_problem(value: str, host: str | None = None) -> str | None:
    """
    Kong's C{sni} check: a host name, without port and not an IP address.

    @param host: what is checked in place of C{value} when given (a
        wildcard name's stand-in); the messages still name C{value}.

    @return: Kong's message, or C{None} when C{value} is fine.
    """
    try:
        kind, _, port = normalize_ip(value if host is None else host)
    except ValueError as e:
        if str(e) == "invalid port number":
            return "must not have a port"
        return f"invalid value: {value}"
    if kind != "name":
        return "must not be an IP"
    if port is not None:
        return "must not have a port"
    return None


def _header_name(value: str) -> str | None:
    if re.match(r"^[A-Za-z0-9_-]+\Z", value) is None:
        return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


_TOKEN_FORBIDDEN = re.compile(r'[\x00-\x20\x7f()<>@,;:\\"/?={}\[\]]')


def _cookie_name(value: str) -> str | None:
    if _TOKEN_FORBIDDEN.search(value):
        return ("contains one or more invalid characters. ASCII control characters (0-31;127),"
                " space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed.")
    return None


_PATH_CHARS = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*\Z")


def _path(value: str) -> str | None:
    if "//" in value:
        return "must not have empty segments"
    if _PATH_CHARS.match(value) is None:
        return f"invalid path: '{value}' (characters outside of the reserved list of RFC 3986 found)"
    raw = re.sub(r"%[0-9A-Fa-f]{2}", "___", value)
    at = raw.find("%")
    if at >= 0:
        return f"invalid url-encoded value: '{raw[at:at + 3]}'"
    return None


def _null_only(value: Any) -> str | None:
    return "value must be null"


# ---------------------------------------------------------------------------
# Health checks: Kong's nested record, every field with its default


def _statuses(default: list[int]) -> Array:
    return Array(Integer(between=(100, 999)), default=default)


def _counter() -> Integer:
    return Integer(between=(0, 255), default=0)


def _seconds(default: float) -> Number:
    return Number(between=(0, 65535), default=default)


def _check_type() -> String:
    return String(one_of=("tcp", "http", "https", "grpc", "grpcs"), default="http")


_ACTIVE = Record({
    "type": _check_type(),
    "timeout": _seconds(1),
    "concurrency": Integer(between=(1, 2**31), default=10),
    "http_path": String(starts_with="/", check=_path, default="/"),
    "https_sni": String(check=sni_problem),
    "https_verify_certificate": Boolean(required=True, default=True),
    "headers": Map(String(check=_header_name), Array(String())),
    "healthy": Record({
        "interval": _seconds(0),
        "http_statuses": _statuses([200, 302]),
        "successes": _counter(),
    }),
    "unhealthy": Record({
        "interval": _seconds(0),
        "http_statuses": _statuses([429, 404, 500, 501, 502, 503, 504, 505]),
        "tcp_failures": _counter(),
        "timeouts": _counter(),
        "http_failures": _counter(),
    }),
})

_PASSIVE = Record({
    "type": _check_type(),
    "healthy": Record({
        "http_statuses": _statuses([200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                    300, 301, 302, 303, 304, 305, 306, 307, 308]),
        "successes": _counter(),
    }),
    "unhealthy": Record({
        "http_statuses": _statuses([429, 500, 503]),
        "tcp_failures": _counter(),
        "timeouts": _counter(),
        "http_failures": _counter(),
    }),
})

HEALTHCHECKS = Record({
    "active": _ACTIVE,
    "passive": _PASSIVE,
    "threshold": Number(between=(0, 100), default=0),
}, description="The health checks: active probes, passive counting, and the threshold"
               " (percentage of weight) under which the upstream is unhealthy.")


# ---------------------------------------------------------------------------
# Cross-field checks (Kong's entity_checks)

_CONDITIONAL = "failed conditional validation given value of field '{}'"

Check = Callable[[dict[str, Any]], "Mapping[str, Any] | None"]


def _needs(source: str, value: str, needed: str) -> Check:
    """
    Kong's C{conditional} check: when C{source} is C{value}, C{needed}
    must be set.
    """
    def check(record: dict[str, Any]) -> Mapping[str, Any] | None:
        if record.get(source) == value and record.get(needed) is None:
            return {needed: REQUIRED, ENTITY: _CONDITIONAL.format(source)}
        return None

    return check


def _fallback(hash_on: str, allowed: tuple[str, ...]) -> Check:
    """
    Kong's C{conditional} check: when C{hash_on} is C{hash_on},
    C{hash_fallback} must be one of C{allowed}.
    """
    def check(record: dict[str, Any]) -> Mapping[str, Any] | None:
        if record.get("hash_on") == hash_on and record.get("hash_fallback") not in allowed:
            return {"hash_fallback": "expected one of: " + ", ".join(allowed),
                    ENTITY: _CONDITIONAL.format("hash_on")}
        return None

    return check


def _distinct(*names: str) -> Check:
    """
    Kong's C{distinct} check: the named fields, when set, differ.
    """
    def check(record: dict[str, Any]) -> Mapping[str, Any] | None:
        values = [record.get(name) for name in names if record.get(name) is not None]
        if len(set(values)) < len(values):
            return {ENTITY: "values of these fields must be distinct: "
                    + ", ".join(f"'{name}'" for name in names)}
        return None

    return check


_FALLBACKS = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")


def _other_than(*excluded: str) -> tuple[str, ...]:
    return tuple(f for f in _FALLBACKS if f not in excluded)


#: Kong's entity_checks of upstreams, in its order.
_HASHING_CHECKS: tuple[Check, ...] = (
    _needs("hash_on", "header", "hash_on_header"),
    _needs("hash_fallback", "header", "hash_fallback_header"),
    _needs("hash_on", "cookie", "hash_on_cookie"),
    _needs("hash_fallback", "cookie", "hash_on_cookie"),
    _fallback("none", ("none",)),
    _fallback("cookie", ("none",)),
    _fallback("consumer", _other_than("consumer")),
    _fallback("ip", _other_than("ip")),
    _fallback("path", ("none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture")),
    _distinct("hash_on_header", "hash_fallback_header"),
    _needs("hash_on", "query_arg", "hash_on_query_arg"),
    _needs("hash_fallback", "query_arg", "hash_fallback_query_arg"),
    _distinct("hash_on_query_arg", "hash_fallback_query_arg"),
    _needs("hash_on", "uri_capture", "hash_on_uri_capture"),
    _needs("hash_fallback", "uri_capture", "hash_fallback_uri_capture"),
    _distinct("hash_on_uri_capture", "hash_fallback_uri_capture"),
)


def upstream_schema(common: Mapping[str, Field], tags: Field) -> Record:
    """
    The upstream entity's schema.

    @param common: the C{id}, C{created_at} and C{updated_at} fields every
        entity has.
    @param tags: the C{tags} field.
    """
    hash_on = String(one_of=HASH_ON, default="none")
    simple = String(len_min=1)
    return Record({
        "id": common["id"],
        "created_at": common["created_at"],
        "name": String(required=True, check=_upstream_name, len_max=INDEXED_MAX,
                       description="This is a hostname, which must be equal to the host of a Service."),
        "updated_at": common["updated_at"],
        "algorithm": String(one_of=ALGORITHMS, default="round-robin",
                            description="Which load balancing algorithm to use."),
        "hash_on": hash_on,
        "hash_fallback": hash_on,
        "hash_on_header": String(check=_header_name),
        "hash_fallback_header": String(check=_header_name),
        "hash_on_cookie": String(check=_cookie_name,
                                 description="The cookie name to take the value from as hash input."),
        "hash_on_cookie_path": String(starts_with="/", check=_path, default="/"),
        "hash_on_query_arg": simple,
        "hash_fallback_query_arg": simple,
        "hash_on_uri_capture": simple,
        "hash_fallback_uri_capture": simple,
        "slots": Integer(between=(10, 2**16), default=10000,
                         description="The number of slots in the load balancer algorithm."),
        "healthchecks": HEALTHCHECKS,
        "tags": tags,
        "host_header": String(check=_host_with_optional_port,
                              description="The hostname to be used as Host header when proxying."),
        "client_certificate": Foreign("certificates", check=_null_only, description=(
            "The client certificate for TLS to the targets (no certificate entities yet:"
            " only null).")),
        "use_srv_name": Boolean(default=False, description="If set, the balancer will use SRV hostname."),
    }, checks=_HASHING_CHECKS)


def target_schema(common: Mapping[str, Field], tags: Field) -> Record:
    """
    The target entity's schema.
    """
    return Record({
        "id": common["id"],
        "created_at": common["created_at"],
        "updated_at": common["updated_at"],
        "upstream": Foreign("upstreams", required=True, description="The upstream this target belongs to."),
        "target": String(required=True, check=_target, len_max=INDEXED_MAX,
                         description="The target address (ip or hostname) and port."),
        "weight": Integer(between=(0, 65535), default=100,
                          description="The weight this target gets within the upstream loadbalancer (0-65535)."),
        "tags": tags,
    })


def upstream_shorthands(body: dict[str, Any]) -> dict[str, Any]:
    """
    Apply Kong's two upstream shorthands to a write's body, in Kong's
    order: C{algorithm} C{least-connections} or C{latency} resets
    C{hash_on}; then C{hash_on} sets C{algorithm} (C{none}: round-robin;
    anything else: consistent-hashing) and a null C{hash_on} becomes
    C{none}. Values that are not strings are left for validation.
    """
    out = dict(body)
    algorithm = out.get("algorithm")
    if isinstance(algorithm, str) and algorithm in ("least-connections", "latency"):
        out["hash_on"] = None
    if "hash_on" in out:
        hash_on = out["hash_on"]
        if hash_on is None:
            out["hash_on"] = "none"
        elif hash_on == "none":
            out["algorithm"] = "round-robin"
        elif isinstance(hash_on, str):
            out["algorithm"] = "consistent-hashing"
    return out
