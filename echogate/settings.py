"""
Settings: command-line flags, C{ECHOGATE_<KEY>} environment variables, a
kong.conf-like file (C{--config FILE}, C{key = value} lines), and
defaults, in that order of precedence.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import attrs
from twisted.python import usage

from echogate.heap import MAX_TRIM_THRESHOLD

DEFAULTS: dict[str, str] = {
    "proxy_listen": "tcp:8000",
    "admin_listen": "tcp:8001:interface=127.0.0.1",
    "database": "",
    "data_dir": "./echogate-data",
    "plugins": "bundled",
    "trusted_ips": "",
    "client_max_body_size": "0",
    "access_log": "off",
    "config_check_interval": "5",
    "db_query_timeout": "2",
    "workers": "1",
    "upstream_client": "auto",
    "upstream_keepalive_pool_size": "1000",
    "upstream_keepalive_idle_timeout": "60",
    "gc_young_threshold": "50000",
    "malloc_trim_threshold": "16m",
}

HELP: dict[str, str] = {
    "proxy_listen": "Twisted endpoint(s) for the proxy, comma-separated.",
    "admin_listen": "Twisted endpoint(s) for the Admin API, comma-separated.",
    "database": "PostgreSQL DSN; empty runs the embedded server in --data-dir.",
    "data_dir": "Directory for the embedded PostgreSQL server and the node id.",
    "plugins": "Enabled plugins: 'bundled', plugin names, or 'off', comma-separated.",
    "trusted_ips": "Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-* headers are believed.",
    "client_max_body_size": "Largest request body (bytes, or with k/m/g); 0 for no limit.",
    "access_log": "'on' to log every proxied request (costs throughput), 'off'.",
    "config_check_interval": "Seconds between cheap configuration version checks.",
    "db_query_timeout": "Seconds before a database query is given up (admin writes answer 503).",
    "workers": "Processes serving the proxy port(s) (SO_REUSEPORT; tcp listeners only).",
    "upstream_client": "HTTP client for services: 'lean' (echogate's own), 'agent' (Twisted's Agent), "
                       "or 'auto' (lean).",
    "upstream_keepalive_pool_size": "Idle keep-alive connections kept per service address; 0 for none.",
    "upstream_keepalive_idle_timeout": "Seconds an idle upstream connection is kept.",
    "gc_young_threshold": "Objects made (net) between the cyclic collector's young passes once the node "
                          "has settled; 0 keeps Python's (700).",
    "malloc_trim_threshold": "Freed memory (bytes, or with k/m/g) the C heap may keep instead of giving it back "
                             "to the kernel; 0 keeps the C library's own.",
}

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.I)


class ConfigError(Exception):
    """
    A setting has a bad value; the message says which and why.
    """


def parse_size(value: str, key: str = "client_max_body_size") -> int:
    """
    C{"10m"} to 10485760 (C{key} names the setting in the error).
    """
    m = _SIZE.match(value)
    if m is None:
        raise ConfigError(f"{key}: {value!r} is not a size (e.g. 0, 512k, 10m)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def read_config_file(path: str) -> dict[str, str]:
    """
    Read C{key = value} lines (C{#} starts a comment).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}")
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ConfigError(f"{path}:{number}: expected 'key = value'")
        if key not in DEFAULTS:
            raise ConfigError(f"{path}:{number}: unknown setting {key!r}")
        values[key] = value.strip()
    return values


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def redact_dsn(dsn: str) -> str:
    """
    C{dsn} without its password.
    """
    if not dsn:
        return dsn
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
        return dsn
    return re.sub(r"password\s*=\s*\S+", "password=***", dsn)


@attrs.frozen
class Settings:
    """
    The resolved settings of one gateway node.
    """

    proxy_listen: tuple[str, ...]
    admin_listen: tuple[str, ...]
    database: str
    data_dir: str
    plugins: tuple[str, ...]
    trusted_ips: tuple[str, ...]
    client_max_body_size: int
    access_log: bool
    config_check_interval: float
    db_query_timeout: float
    workers: int = 1
    upstream_client: str = "lean"
    upstream_keepalive_pool_size: int = 1000
    upstream_keepalive_idle_timeout: float = 60.0
    gc_young_threshold: int = 50000
    malloc_trim_threshold: int = 16 * 1024 * 1024

    def public(self) -> dict[str, Any]:
        """
        The settings as C{GET /} shows them: no secrets.
        """
        return {
            "proxy_listen": list(self.proxy_listen),
            "admin_listen": list(self.admin_listen),
            "database": "postgres" if self.database else "postgres (embedded)",
            "pg_dsn": redact_dsn(self.database) or None,
            "data_dir": self.data_dir,
            "plugins": list(self.plugins),
            "trusted_ips": list(self.trusted_ips),
            "client_max_body_size": self.client_max_body_size,
            "access_log": self.access_log,
            "config_check_interval": self.config_check_interval,
            "db_query_timeout": self.db_query_timeout,
            "workers": self.workers,
            "upstream_client": self.upstream_client,
            "upstream_keepalive_pool_size": self.upstream_keepalive_pool_size,
            "upstream_keepalive_idle_timeout": self.upstream_keepalive_idle_timeout,
            "gc_young_threshold": self.gc_young_threshold,
            "malloc_trim_threshold": self.malloc_trim_threshold,
        }


#: The listen backlog of a listener whose endpoint string does not give
#: one: nginx's (and so Kong's) default. Twisted's own default of 50 turns
#: a burst of new clients into dropped handshakes, SYN cookies and
#: retransmissions: requests waiting seconds before the gateway sees them.
DEFAULT_BACKLOG = 511

_BACKLOG_KINDS = frozenset(("tcp", "tcp6", "ssl", "unix"))


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """
    C{description} with C{:backlog=}C{backlog} added when it is a listener
    that takes a backlog (tcp, tcp6, ssl, unix) and does not say one.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _BACKLOG_KINDS or ":backlog=" in description:
        return description
    return f"{description}:backlog={backlog}"


def _endpoints(key: str, value: str) -> tuple[str, ...]:
    from twisted.internet import endpoints, reactor

    parts = _split(value)
    if not parts:
        raise ConfigError(f"{key}: at least one endpoint is needed")
    for part in parts:
        try:
            endpoints.serverFromString(reactor, part)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{key}: {part!r} is not a Twisted endpoint string ({e})")
    return parts


def _whole(key: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a whole number")
    if number < low or (high is not None and number > high):
        raise ConfigError(f"{key}: must be between {low} and {high}" if high is not None
                          else f"{key}: must be {low} or more")
    return number


def _trim(value: str) -> int:
    size = parse_size(value, "malloc_trim_threshold")
    if size > MAX_TRIM_THRESHOLD:
        raise ConfigError(f"malloc_trim_threshold: must be at most {MAX_TRIM_THRESHOLD // 1024**2}m")
    return size


def _positive(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a number")
    if number <= 0:
        raise ConfigError(f"{key}: must be greater than 0")
    return number


def automatic_upstream_client() -> str:
    """
    The upstream client C{upstream_client = auto} means: C{lean}, on every
    runtime. (It meant C{agent} on PyPy while C{lean} parsed with
    C{httptools} there, a C extension behind PyPy's slow C-API emulation;
    on PyPy C{lean} now parses with L{echogate.upstream.h1parse}, which the JIT
    compiles, and is about 1.7x C{agent}: see docs/performance.md.)
    """
    return "lean"


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str],
            config_file: str | None) -> Settings:
    """
    Resolve every setting: flag, then C{ECHOGATE_<KEY>}, then the config
    file, then the default.

    @raise ConfigError: a value is bad.
    """
    file_values = read_config_file(config_file) if config_file else {}
    raw: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        flag = flags.get(key)
        env = environ.get("ECHOGATE_" + key.upper())
        raw[key] = flag if flag is not None else env if env is not None else file_values.get(key, default)
    trusted = _split(raw["trusted_ips"])
    for item in trusted:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"trusted_ips: {item!r} is not an IP address or CIDR")
    access_log = raw["access_log"].strip().lower()
    if access_log not in ("on", "off"):
        raise ConfigError(f"access_log: expected 'on' or 'off', got {raw['access_log']!r}")
    database = raw["database"].strip()
    if database and not (database.startswith(("postgresql://", "postgres://")) or "=" in database):
        raise ConfigError(f"database: {redact_dsn(database)!r} is not a PostgreSQL DSN (postgresql://user@host/db)")
    workers = _whole("workers", raw["workers"], 1, 64)
    proxy_listen = _endpoints("proxy_listen", raw["proxy_listen"])
    if workers > 1:
        for description in proxy_listen:
            parse_tcp(description)
    upstream_client = raw["upstream_client"].strip().lower()
    if upstream_client == "auto":
        upstream_client = automatic_upstream_client()
    if upstream_client not in ("agent", "lean"):
        raise ConfigError(f"upstream_client: expected 'auto', 'agent' or 'lean', got {raw['upstream_client']!r}")
    plugins = _split(raw["plugins"])
    if not plugins:
        raise ConfigError("plugins: expected 'bundled', plugin names, or 'off'")
    return Settings(
        proxy_listen=proxy_listen,
        admin_listen=_endpoints("admin_listen", raw["admin_listen"]),
        database=database,
        data_dir=raw["data_dir"],
        plugins=plugins,
        trusted_ips=trusted,
        client_max_body_size=parse_size(raw["client_max_body_size"]),
        access_log=access_log == "on",
        config_check_interval=_positive("config_check_interval", raw["config_check_interval"]),
        db_query_timeout=_positive("db_query_timeout", raw["db_query_timeout"]),
        workers=workers,
        upstream_client=upstream_client,
        upstream_keepalive_pool_size=_whole("upstream_keepalive_pool_size", raw["upstream_keepalive_pool_size"], 0),
        upstream_keepalive_idle_timeout=_positive("upstream_keepalive_idle_timeout",
                                                  raw["upstream_keepalive_idle_timeout"]),
        gc_young_threshold=_whole("gc_young_threshold", raw["gc_young_threshold"], 0),
        malloc_trim_threshold=_trim(raw["malloc_trim_threshold"]),
    )


class Options(usage.Options):
    """
    C{twistd echogate} options. Each flag also reads C{ECHOGATE_<KEY>} and
    the C{--config} file.
    """

    synopsis = "[options]"
    longdesc = ("Run the echogate API gateway: a proxy listener, and an Admin API"
                " listener on loopback. Every option is also settable as"
                " ECHOGATE_<KEY> in the environment or as 'key = value' in --config.")
    optParameters = [["config", "c", None, "A kong.conf-like file of 'key = value' settings."]] + [
        [key.replace("_", "-"), None, None, f"{HELP[key]} [default: {DEFAULTS[key] or 'unset'}]"]
        for key in DEFAULTS
    ]

    environ: Mapping[str, str] = os.environ

    def postOptions(self) -> None:
        flags = {key: self[key.replace("_", "-")] for key in DEFAULTS}
        config_file = self["config"] or self.environ.get("ECHOGATE_CONFIG")
        try:
            self.settings = resolve(flags, self.environ, config_file)
        except ConfigError as e:
            raise SystemExit(f"echogate: {e}")


def parse_tcp(description: str) -> tuple[int, str, int, int]:
    """
    C{tcp:PORT[:interface=IP][:backlog=N]} (or C{tcp6:}) to (address
    family, interface, port, backlog).

    @raise ConfigError: another kind of endpoint (only TCP listeners can
        be shared by workers).
    """
    parts: list[str] = []
    current = ""
    escaped = False
    for char in description:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        raise ConfigError(f"workers: {description!r} is not a tcp: endpoint; --workers shares TCP listeners only")
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    interface = "::" if family == socket.AF_INET6 else ""
    backlog = DEFAULT_BACKLOG
    port_text = None
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            port_text = part
        elif key == "port":
            port_text = value
        elif key == "interface":
            interface = value
        elif key == "backlog":
            backlog = int(value)
    try:
        port = int(port_text or "")
    except ValueError:
        raise ConfigError(f"workers: {description!r} has no port")
    return family, interface, port, backlog
