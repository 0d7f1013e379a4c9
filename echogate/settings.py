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
import sys
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import attrs
from twisted.python import usage

from echogate.heap import MAX_TRIM_THRESHOLD

DEFAULTS: dict[str, str] = {
    "proxy_listen": "0.0.0.0:8000, 0.0.0.0:8443 http2 ssl",
    "admin_listen": "tcp:8001:interface=127.0.0.1",
    "database": "",
    "declarative_config": "",
    "data_dir": "./echogate-data",
    "plugins": "bundled",
    "trusted_ips": "",
    "client_max_body_size": "0",
    "max_buffered_response": "10m",
    "access_log": "off",
    "config_check_interval": "5",
    "db_query_timeout": "2",
    "workers": "1",
    "upstream_client": "auto",
    "reactor": "echogate",
    "upstream_keepalive_pool_size": "1000",
    "upstream_keepalive_idle_timeout": "60",
    "upstream_tls_verify": "on",
    "gc_young_threshold": "50000",
    "malloc_trim_threshold": "16m",
    "client_header_timeout": "60",
    "client_body_timeout": "60",
    "send_timeout": "60",
    "keepalive_timeout": "75",
    "max_connections": "auto",
    "max_connections_per_ip": "0",
    "http2_max_concurrent_streams": "128",
    "max_request_line": "8k",
    "max_header_line": "8k",
    "max_headers": "100",
    "regex_match_timeout": "5",
    "missing_plugins": "refuse",
    "shutdown_timeout": "10",
    "admin_token": "",
    "admin_server_names": "",
    "real_ip_header": "X-Real-IP",
    "real_ip_recursive": "off",
    "headers_with_underscores": "drop",
    "dns_resolver": "",
    "dns_hostsfile": "/etc/hosts",
    "dns_error_ttl": "1",
    "ssl_cert": "",
    "ssl_cert_key": "",
    "ssl_protocols": "TLSv1.2 TLSv1.3",
    "ssl_cipher_suite": "intermediate",
    "ssl_ciphers": "",
    "ssl_session_tickets": "on",
    "ssl_session_timeout": "1d",
}

HELP: dict[str, str] = {
    "proxy_listen": "The proxy's listeners, comma-separated: ADDRESS:PORT (Kong's 0.0.0.0:8000) or a Twisted "
                    "endpoint, each followed by flags: 'ssl' (HTTPS, certificate chosen by SNI), 'backlog=N'.",
    "admin_listen": "Twisted endpoint(s) for the Admin API, comma-separated.",
    "database": "PostgreSQL DSN; empty runs the embedded server in --data-dir; 'off' runs DB-less (no "
                "database: the entities come from declarative_config or POST /config).",
    "declarative_config": "With database = off: the declarative configuration file (kong.yml) loaded at start-up "
                          "and on SIGHUP; unset: start empty.",
    "data_dir": "Directory for the embedded PostgreSQL server and the node id.",
    "plugins": "Enabled plugins: 'bundled', plugin names, or 'off', comma-separated.",
    "trusted_ips": "Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-* headers are believed.",
    "client_max_body_size": "Largest request body (bytes, or with k/m/g); 0 for no limit.",
    "max_buffered_response": "Largest response body read whole for a plugin that enabled buffering (k/m/g).",
    "access_log": "'on' to log every proxied request (costs throughput), 'off'.",
    "config_check_interval": "Seconds between cheap configuration version checks.",
    "db_query_timeout": "Seconds before a database query is given up (admin writes answer 503).",
    "workers": "Processes serving the proxy port(s) (SO_REUSEPORT; tcp listeners only).",
    "upstream_client": "HTTP client for services: 'lean' (echogate's own), 'agent' (Twisted's Agent), "
                       "or 'auto' (lean).",
    "reactor": "The event loop: 'echogate' (Twisted's epoll reactor without a log context per ready "
               "connection; Twisted's default where there is no epoll) or 'twisted' (Twisted's default). "
               "twistd --reactor wins.",
    "upstream_keepalive_pool_size": "Idle keep-alive connections kept per service address; 0 for none.",
    "upstream_keepalive_idle_timeout": "Seconds an idle upstream connection is kept.",
    "upstream_tls_verify": "'on': verify https services' certificates (and host names) unless a service's "
                           "tls_verify is false; 'off': only those whose tls_verify is true.",
    "gc_young_threshold": "Objects made (net) between the cyclic collector's young passes once the node "
                          "has settled; 0 keeps Python's (700).",
    "malloc_trim_threshold": "Freed memory (bytes, or with k/m/g) the C heap may keep instead of giving it back "
                             "to the kernel; 0 keeps the C library's own.",
    "client_header_timeout": "Seconds a client has to send a whole request head (then 408 and close).",
    "client_body_timeout": "Seconds allowed between two reads of a request body (then 408 and close).",
    "send_timeout": "Seconds allowed between two writes a client accepts of a response (then close).",
    "keepalive_timeout": "Seconds an idle keep-alive client connection is kept open.",
    "max_connections": "Client connections per proxy listener: a number, or 'auto' (from the descriptor limit).",
    "max_connections_per_ip": "Client connections per client IP per proxy listener; 0 for no limit.",
    "http2_max_concurrent_streams": "Streams an HTTP/2 client may have open at once on one connection (more breaks"
                                    " the protocol: the connection is closed with GOAWAY).",
    "max_request_line": "Longest request line (bytes, or with k/m); longer gets 414.",
    "max_header_line": "Longest request header line (bytes, or with k/m); longer gets 431.",
    "max_headers": "Most request header lines; more gets 431.",
    "regex_match_timeout": (
        "Milliseconds (CPU time) one regex match may take; one that runs out counts as no match for its route."),
    "missing_plugins": "Routes whose stored plugin is not loaded: 'refuse' (500) or 'skip' (run without it).",
    "shutdown_timeout": "Seconds in-flight requests may take to finish once the node is told to stop.",
    "admin_token": "A bearer token every Admin API request must carry; empty for none.",
    "admin_server_names": "Host names the Admin API answers to besides its listener's address, comma-separated.",
    "real_ip_header": "The header a trusted_ips peer names the client in (nginx's real_ip_header): a header name "
                      "such as X-Real-IP or X-Forwarded-For.",
    "real_ip_recursive": "'on': with X-Forwarded-For, the client is the last address not in trusted_ips; "
                         "'off': the last address (nginx's real_ip_recursive).",
    "headers_with_underscores": "Request headers whose names contain '_': 'drop' them, 'reject' the request (400), "
                                "or 'allow' them.",
    "dns_resolver": "Name servers for upstream targets' host names, comma-separated ip[:port] (port 53 when "
                    "absent; [ipv6]:port); empty uses those of /etc/resolv.conf.",
    "dns_hostsfile": "The hosts file read before the name servers for targets' host names; empty for none.",
    "dns_error_ttl": "Seconds before a target host name that did not resolve is looked up again.",
    "ssl_cert": "PEM certificate (chain) of the proxy's default certificate; unset: a self-signed one for "
                "localhost, made once in data_dir.",
    "ssl_cert_key": "PEM private key of ssl_cert.",
    "ssl_protocols": "TLS versions the ssl listeners accept, space-separated: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.",
    "ssl_cipher_suite": "TLS 1.2 (and older) ciphers: 'intermediate' (Mozilla's), 'modern' (TLS 1.3 only), "
                        "or 'custom' (ssl_ciphers).",
    "ssl_ciphers": "An OpenSSL cipher list, used when ssl_cipher_suite is 'custom'.",
    "ssl_session_tickets": "'on': TLS session tickets for resumption; 'off': none.",
    "ssl_session_timeout": "How long a TLS session may be resumed: seconds, or with s, m, h, d.",
    "dev": "Development mode: watch the loaded plugins' drop-in files and reload a plugin when one changes.",
}

#: The settings that are switches: C{--dev} on the command line (no value),
#: C{ECHOGATE_DEV=on} or C{dev = on} in the config file.
SWITCHES: dict[str, str] = {"dev": "off"}

#: The TLS 1.2 ciphers of each C{ssl_cipher_suite} (TLS 1.3's suites are
#: OpenSSL's own, all of them strong). C{intermediate} is Mozilla's
#: "intermediate" list, Kong's default; C{modern} has none (TLS 1.3 only).
CIPHER_SUITES: dict[str, str] = {
    "intermediate": ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                     "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"),
    "modern": "",
}

#: The values of C{ssl_protocols}, oldest first.
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

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
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ConfigError(f"{path}:{number}: expected 'key = value'")
        if key not in DEFAULTS and key not in SWITCHES:
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

    @ivar proxy_listen: the proxy's listeners, each a Twisted endpoint
        string, followed by C{" ssl"} for an HTTPS listener whose
        certificate is chosen by SNI (L{split_listener} takes one apart):
        Kong's C{0.0.0.0:8443 ssl} resolves to C{tcp:8443:interface=0.0.0.0 ssl}.
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
    reactor: str = "echogate"
    upstream_keepalive_pool_size: int = 1000
    upstream_keepalive_idle_timeout: float = 60.0
    upstream_tls_verify: bool = True
    gc_young_threshold: int = 50000
    malloc_trim_threshold: int = 16 * 1024 * 1024
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_connections: int = 0  # 0: from the descriptor limit (see connection_limit)
    max_connections_per_ip: int = 0
    http2_max_concurrent_streams: int = 128
    max_request_line: int = 8192
    max_header_line: int = 8192
    max_headers: int = 100
    regex_match_timeout: float = 0.005
    missing_plugins: str = "refuse"
    shutdown_timeout: float = 10.0
    admin_token: str = attrs.field(default="", repr=False)
    admin_server_names: tuple[str, ...] = ()
    real_ip_header: str = "x-real-ip"
    real_ip_recursive: bool = False
    headers_with_underscores: str = "drop"
    dns_resolver: tuple[str, ...] = ()
    dns_hostsfile: str = "/etc/hosts"
    dns_error_ttl: float = 1.0
    ssl_cert: str = ""
    ssl_cert_key: str = ""
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_cipher_suite: str = "intermediate"
    ssl_ciphers: str = ""
    ssl_session_tickets: bool = True
    ssl_session_timeout: int = 86400
    max_buffered_response: int = 10 * 1024 * 1024
    declarative_config: str = ""
    #: C{--dev}: plugins' drop-ins are watched and reloaded (L{echogate.reloading}).
    dev: bool = False

    @property
    def dbless(self) -> bool:
        """
        Whether the node runs without a database (C{database = off}).
        """
        return self.database == "off"

    @property
    def cipher_list(self) -> str:
        """
        The OpenSSL cipher list of the ssl listeners (TLS 1.2 and older):
        C{ssl_ciphers} with C{ssl_cipher_suite = custom}, else the suite's.
        """
        if self.ssl_cipher_suite == "custom":
            return self.ssl_ciphers
        return CIPHER_SUITES[self.ssl_cipher_suite]

    def public(self) -> dict[str, Any]:
        """
        The settings as C{GET /} shows them: no secrets.
        """
        return {
            "proxy_listen": list(self.proxy_listen),
            "admin_listen": list(self.admin_listen),
            "database": "off" if self.dbless else "postgres" if self.database else "postgres (embedded)",
            "pg_dsn": None if self.dbless else redact_dsn(self.database) or None,
            "declarative_config": self.declarative_config or None,
            "data_dir": self.data_dir,
            "plugins": list(self.plugins),
            "trusted_ips": list(self.trusted_ips),
            "client_max_body_size": self.client_max_body_size,
            "max_buffered_response": self.max_buffered_response,
            "access_log": self.access_log,
            "config_check_interval": self.config_check_interval,
            "db_query_timeout": self.db_query_timeout,
            "workers": self.workers,
            "upstream_client": self.upstream_client,
            "reactor": self.reactor,
            "upstream_keepalive_pool_size": self.upstream_keepalive_pool_size,
            "upstream_keepalive_idle_timeout": self.upstream_keepalive_idle_timeout,
            "upstream_tls_verify": self.upstream_tls_verify,
            "gc_young_threshold": self.gc_young_threshold,
            "malloc_trim_threshold": self.malloc_trim_threshold,
            "client_header_timeout": self.client_header_timeout,
            "client_body_timeout": self.client_body_timeout,
            "send_timeout": self.send_timeout,
            "keepalive_timeout": self.keepalive_timeout,
            "max_connections": self.max_connections or connection_limit(),
            "max_connections_per_ip": self.max_connections_per_ip,
            "http2_max_concurrent_streams": self.http2_max_concurrent_streams,
            "max_request_line": self.max_request_line,
            "max_header_line": self.max_header_line,
            "max_headers": self.max_headers,
            "regex_match_timeout": self.regex_match_timeout,
            "missing_plugins": self.missing_plugins,
            "shutdown_timeout": self.shutdown_timeout,
            "admin_token": "***" if self.admin_token else None,
            "admin_server_names": list(self.admin_server_names),
            "real_ip_header": self.real_ip_header,
            "real_ip_recursive": self.real_ip_recursive,
            "headers_with_underscores": self.headers_with_underscores,
            "dns_resolver": list(self.dns_resolver),
            "dns_hostsfile": self.dns_hostsfile,
            "dns_error_ttl": self.dns_error_ttl,
            "ssl_cert": self.ssl_cert or None,
            "ssl_cert_key": self.ssl_cert_key or None,
            "ssl_protocols": list(self.ssl_protocols),
            "ssl_cipher_suite": self.ssl_cipher_suite,
            "ssl_ciphers": self.cipher_list,
            "ssl_session_tickets": self.ssl_session_tickets,
            "ssl_session_timeout": self.ssl_session_timeout,
            "dev": self.dev,
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
        port = part.strip(":")
        _bare_port(key, part, f"write 'tcp:{port}:interface=127.0.0.1' (loopback) or 'tcp:{port}' (every interface)")
        try:
            endpoints.serverFromString(reactor, part)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{key}: {part!r} is not a Twisted endpoint string ({e})") from None
    return parts


def _bare_port(key: str, where: str, suggestion: str) -> None:
    """
    Refuse a listener given as a bare port (C{8000} or C{:8000}), saying
    the forms that mean one.

    @param suggestion: what to write instead.
    """
    if re.fullmatch(r":?\d{1,5}", where):
        raise ConfigError(f"{key}: {where!r} is a bare port; {suggestion}")


#: A Kong-style listener address: C{0.0.0.0:8000}, C{[::]:8443}, C{*:8000}.
_ADDRESS = re.compile(r"^(?:(\[[0-9a-fA-F:.]+\])|([0-9.]+)|(\*)):(\d{1,5})$")

#: The flag that makes a proxy listener an HTTPS one (see L{split_listener}).
SSL_FLAG = " ssl"
#: The flag that makes a proxy listener offer HTTP/2 (see L{split_listener}).
HTTP2_FLAG = " http2"


def split_listener(entry: str) -> tuple[str, bool]:
    """
    A resolved C{proxy_listen} entry (see L{Settings.proxy_listen}) to its
    Twisted endpoint string and whether it is an HTTPS listener whose
    certificate is chosen by SNI (the C{ssl} flag). (L{offers_http2}
    tells the C{http2} flag.)
    """
    tls = entry.endswith(SSL_FLAG)
    if tls:
        entry = entry[:-len(SSL_FLAG)]
    if entry.endswith(HTTP2_FLAG):
        entry = entry[:-len(HTTP2_FLAG)]
    return entry, tls


def offers_http2(entry: str) -> bool:
    """
    Whether a resolved C{proxy_listen} entry has the C{http2} flag: HTTP/2
    by ALPN on an C{ssl} listener, with prior knowledge (h2c) on a plain
    one, beside HTTP/1.1.
    """
    return entry.removesuffix(SSL_FLAG).endswith(HTTP2_FLAG)


def _listener(entry: str) -> str:
    """
    One C{proxy_listen} entry, as written, to its resolved form: a Twisted
    endpoint string, followed by C{" ssl"} for an HTTPS listener.

    An entry is an address (Kong's C{0.0.0.0:8000}, C{[::]:8000},
    C{*:8000}) or a Twisted endpoint string, followed by flags separated
    by spaces: C{ssl}, C{backlog=N}.
    """
    from twisted.internet import endpoints, reactor

    words = entry.split()
    where, flags = words[0], words[1:]
    tls = http2 = False
    backlog = None
    for flag in flags:
        if flag.lower() == "ssl":
            tls = True
        elif flag.lower() == "http2":
            http2 = True
        elif flag.lower().startswith("backlog="):
            backlog = _whole("proxy_listen", flag.partition("=")[2], 1)
        else:
            raise ConfigError(f"proxy_listen: {entry!r} has an unknown flag {flag!r} (flags: ssl, http2, backlog=N)")
    address = _ADDRESS.match(where)
    if address is not None:
        ipv6, ipv4, anywhere, port = address.groups()
        if int(port) > 65535:
            raise ConfigError(f"proxy_listen: {entry!r} has a bad port")
        try:
            host = ipaddress.ip_address(ipv6[1:-1] if ipv6 else ipv4) if not anywhere else None
        except ValueError:
            raise ConfigError(f"proxy_listen: {entry!r} is not an IP address and port") from None
        if host is None:
            endpoint = f"tcp:{port}"
        elif host.version == 6:
            endpoint = f"tcp6:{port}:interface={str(host).replace(':', chr(92) + ':')}"
        else:
            endpoint = f"tcp:{port}:interface={host}"
    else:
        endpoint = where
        port = where.lstrip(":")
        _bare_port("proxy_listen", where, f"write Kong's '0.0.0.0:{port}' (every interface; '127.0.0.1:{port}'"
                                          f" for loopback) or the Twisted endpoint 'tcp:{port}'")
        try:
            endpoints.serverFromString(reactor, endpoint)
        except (ValueError, TypeError, KeyError, OSError) as e:
            raise ConfigError(f"proxy_listen: {where!r} is not an address (0.0.0.0:8000) "
                              f"nor a Twisted endpoint string ({e})") from None
        kind = endpoint_parts(endpoint)[0].strip().lower()
        if tls and kind not in ("tcp", "tcp6", "unix"):
            raise ConfigError(f"proxy_listen: the ssl flag needs a tcp, tcp6 or unix endpoint, not {where!r}")
    if backlog is not None:
        if ":backlog=" in endpoint:
            raise ConfigError(f"proxy_listen: {entry!r} gives its backlog twice")
        endpoint = f"{endpoint}:backlog={backlog}"
    return endpoint + (HTTP2_FLAG if http2 else "") + (SSL_FLAG if tls else "")


def _proxy_listen(value: str) -> tuple[str, ...]:
    entries = tuple(_listener(entry) for entry in _split(value))
    if not entries:
        raise ConfigError("proxy_listen: at least one listener is needed")
    return entries


def _duration(key: str, value: str) -> int:
    """
    C{"1d"}, C{"10m"}, C{"3600"} to whole seconds (at least 1).
    """
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value, re.I)
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()] if m else 0
    if not seconds:
        raise ConfigError(f"{key}: {value!r} is not a duration of at least 1 second (e.g. 300, 10m, 1d)")
    return seconds


def _readable(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror or e}") from None


def _certificate_files(cert_path: str, key_path: str) -> None:
    """
    Check that C{ssl_cert} and C{ssl_cert_key} are given together, are
    readable PEM, and that the key is the certificate's.
    """
    if bool(cert_path) != bool(key_path):
        raise ConfigError("ssl_cert and ssl_cert_key: set both, or neither")
    if not cert_path:
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from OpenSSL import SSL

    try:
        certificate = x509.load_pem_x509_certificates(_readable("ssl_cert", cert_path))[0]
    except ValueError:
        raise ConfigError(f"ssl_cert: {cert_path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_readable("ssl_cert_key", key_path), None)
    except (ValueError, TypeError):
        raise ConfigError(f"ssl_cert_key: {key_path} holds no unencrypted PEM private key") from None
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        context.use_certificate(certificate)
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
    except SSL.Error:
        raise ConfigError(f"ssl_cert_key: {key_path} is not the key of the certificate in {cert_path}") from None


def _tls_settings(raw: Mapping[str, str]) -> dict[str, Any]:
    """
    The C{ssl_*} settings of C{raw}, checked.
    """
    from OpenSSL import SSL

    protocols = tuple(raw["ssl_protocols"].replace(",", " ").split())
    by_lower = {version.lower(): version for version in TLS_VERSIONS}
    unknown = [p for p in protocols if p.lower() not in by_lower]
    if not protocols or unknown:
        raise ConfigError(f"ssl_protocols: expected some of {' '.join(TLS_VERSIONS)}, got {raw['ssl_protocols']!r}")
    protocols = tuple(v for v in TLS_VERSIONS if v.lower() in {p.lower() for p in protocols})
    suite = _one_of("ssl_cipher_suite", raw["ssl_cipher_suite"], ("intermediate", "modern", "custom"))
    ciphers = raw["ssl_ciphers"].strip()
    if suite == "custom":
        if not ciphers:
            raise ConfigError("ssl_cipher_suite: 'custom' needs ssl_ciphers (an OpenSSL cipher list)")
        try:
            SSL.Context(SSL.TLS_SERVER_METHOD).set_cipher_list(ciphers.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            raise ConfigError(f"ssl_ciphers: {ciphers!r} is not an OpenSSL cipher list that names a cipher") from None
    elif ciphers:
        raise ConfigError("ssl_ciphers: only used with ssl_cipher_suite = custom")
    if suite == "modern" and "TLSv1.3" not in protocols:
        raise ConfigError("ssl_cipher_suite: 'modern' is TLS 1.3 only, and ssl_protocols leaves TLSv1.3 out")
    _certificate_files(raw["ssl_cert"].strip(), raw["ssl_cert_key"].strip())
    return {
        "ssl_cert": raw["ssl_cert"].strip(),
        "ssl_cert_key": raw["ssl_cert_key"].strip(),
        "ssl_protocols": protocols,
        "ssl_cipher_suite": suite,
        "ssl_ciphers": ciphers,
        "ssl_session_tickets": _one_of("ssl_session_tickets", raw["ssl_session_tickets"], ("on", "off")) == "on",
        "ssl_session_timeout": _duration("ssl_session_timeout", raw["ssl_session_timeout"]),
    }


def _whole(key: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a whole number") from None
    if number < low or (high is not None and number > high):
        raise ConfigError(f"{key}: must be between {low} and {high}" if high is not None
                          else f"{key}: must be {low} or more")
    return number


def _trim(value: str) -> int:
    size = parse_size(value, "malloc_trim_threshold")
    if size > MAX_TRIM_THRESHOLD:
        raise ConfigError(f"malloc_trim_threshold: must be at most {MAX_TRIM_THRESHOLD // 1024**2}m")
    return size


def _bounded_size(key: str, value: str) -> int:
    size = parse_size(value, key)
    if not 256 <= size <= 1024 * 1024:
        raise ConfigError(f"{key}: must be between 256 and 1m")
    return size


def _number(key: str, value: str, zero_allowed: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a number") from None
    if number < 0 or (number == 0 and not zero_allowed):
        raise ConfigError(f"{key}: must be 0 or more" if zero_allowed else f"{key}: must be greater than 0")
    return number


def _non_negative(key: str, value: str) -> float:
    return _number(key, value, True)


def _positive(key: str, value: str) -> float:
    return _number(key, value, False)


#: Descriptors kept back from client connections, for upstream sockets, the
#: Admin API, the database and log files.
DESCRIPTOR_RESERVE = 256


def connection_limit(soft_limit: int | None = None) -> int:
    """
    What C{max_connections = auto} means: half of what the descriptor limit
    leaves after L{DESCRIPTOR_RESERVE}, since every proxied client
    connection may hold an upstream socket too (at least 16).
    """
    if soft_limit is None:
        import resource

        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit == resource.RLIM_INFINITY:
            soft_limit = 1 << 20
    return max((soft_limit - DESCRIPTOR_RESERVE) // 2, 16)


def _max_connections(value: str) -> int:
    if value.strip().lower() == "auto":
        return 0
    return _whole("max_connections", value, 1)


def _millis(key: str, value: str) -> float:
    return _positive(key, value) / 1000.0


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> str:
    chosen = value.strip().lower()
    if chosen not in choices:
        raise ConfigError(f"{key}: expected {' or '.join(repr(c) for c in choices)}, got {value!r}")
    return chosen


def _header_name(key: str, value: str) -> str:
    name = value.strip().lower()
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9a-z]+", name):
        raise ConfigError(f"{key}: {value!r} is not a header name")
    return name


def _server_names(value: str) -> tuple[str, ...]:
    names = tuple(name.lower() for name in _split(value))
    for name in names:
        if not re.fullmatch(r"[a-z0-9*]([a-z0-9.\-]*[a-z0-9])?(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?", name):
            raise ConfigError(f"admin_server_names: {name!r} is not a host name")
    return names


def _name_servers(value: str) -> tuple[str, ...]:
    """
    C{dns_resolver}'s comma-separated C{ip[:port]} entries, each given back
    as C{ip:port} (C{[ipv6]:port}), port 53 when absent.
    """
    servers = []
    for entry in _split(value):
        host, port = entry, "53"
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                host = ""
            port = rest[1:] if rest else port
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"dns_resolver: {entry!r} is not an ip[:port] ([ipv6]:port)") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"dns_resolver: {entry!r} has a bad port")
        text = f"[{address}]" if address.version == 6 else str(address)
        servers.append(f"{text}:{int(port)}")
    return tuple(servers)


def automatic_upstream_client() -> str:
    """
    The upstream client C{upstream_client = auto} means: C{lean}, on every
    runtime. (It meant C{agent} on PyPy while C{lean} parsed with
    C{httptools} there, a C extension behind PyPy's slow C-API emulation;
    on PyPy C{lean} now parses with L{echogate.upstream.h1parse}, which the JIT
    compiles, and is about 1.7x C{agent}: see docs/performance.md.)
    """
    return "lean"


#: The values of the C{reactor} setting.
REACTORS = ("echogate", "twisted")


def _raw_values(flags: Mapping[str, str | None], environ: Mapping[str, str],
                file_values: Mapping[str, str]) -> dict[str, str]:
    """
    Each setting's value as written: flag, then C{ECHOGATE_<KEY>}, then
    the config file, then the default.
    """
    raw: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        flag = flags.get(key)
        env = environ.get("ECHOGATE_" + key.upper())
        raw[key] = flag if flag is not None else env if env is not None else file_values.get(key, default)
    return raw


def install_reactor(choice: str) -> str:
    """
    Install the reactor the C{reactor} setting chooses, unless a reactor
    is installed already (C{twistd --reactor}, or an import of
    C{twisted.internet.reactor} before the options were read): C{echogate}
    installs L{echogate.polling.GatewayReactor} where there is epoll;
    C{twisted} leaves the choice to Twisted (its default reactor is
    installed on first use).

    @return: the qualified name of the reactor class installed, or C{""}
        when this installed none.
    @raise ConfigError: C{choice} is not one of L{REACTORS}.
    """
    choice = _one_of("reactor", choice, REACTORS)
    if choice != "echogate" or "twisted.internet.reactor" in sys.modules:
        return ""
    try:
        from echogate import polling
    except ImportError:
        return ""
    polling.install()
    return "echogate.polling.GatewayReactor"


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str],
            config_file: str | None) -> Settings:
    """
    Resolve every setting: flag, then C{ECHOGATE_<KEY>}, then the config
    file, then the default.

    @raise ConfigError: a value is bad.
    """
    file_values = read_config_file(config_file) if config_file else {}
    raw = _raw_values(flags, environ, file_values)
    dev = _one_of("dev", flags.get("dev") or environ.get("ECHOGATE_DEV") or file_values.get("dev", "off"),
                  ("on", "off")) == "on"
    reactor = _one_of("reactor", raw["reactor"], REACTORS)
    trusted = _split(raw["trusted_ips"])
    for item in trusted:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"trusted_ips: {item!r} is not an IP address or CIDR") from None
    access_log = raw["access_log"].strip().lower()
    if access_log not in ("on", "off"):
        raise ConfigError(f"access_log: expected 'on' or 'off', got {raw['access_log']!r}")
    database = raw["database"].strip()
    if database.lower() == "off":
        database = "off"
    elif database and not (database.startswith(("postgresql://", "postgres://")) or "=" in database):
        raise ConfigError(f"database: {redact_dsn(database)!r} is not a PostgreSQL DSN (postgresql://user@host/db)")
    workers = _whole("workers", raw["workers"], 1, 64)
    if dev and workers > 1:
        raise ConfigError("dev: plugins are reloaded in one process; use workers = 1")
    declarative_config = raw["declarative_config"].strip()
    if declarative_config and database != "off":
        raise ConfigError("declarative_config: only used with database = off")
    proxy_listen = _proxy_listen(raw["proxy_listen"])
    if workers > 1:
        for entry in proxy_listen:
            parse_tcp(split_listener(entry)[0])
    tls = _tls_settings(raw)
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
        declarative_config=declarative_config,
        data_dir=raw["data_dir"],
        plugins=plugins,
        trusted_ips=trusted,
        client_max_body_size=parse_size(raw["client_max_body_size"]),
        max_buffered_response=parse_size(raw["max_buffered_response"], "max_buffered_response"),
        access_log=access_log == "on",
        config_check_interval=_positive("config_check_interval", raw["config_check_interval"]),
        db_query_timeout=_positive("db_query_timeout", raw["db_query_timeout"]),
        workers=workers,
        upstream_client=upstream_client,
        reactor=reactor,
        upstream_keepalive_pool_size=_whole("upstream_keepalive_pool_size", raw["upstream_keepalive_pool_size"], 0),
        upstream_keepalive_idle_timeout=_positive("upstream_keepalive_idle_timeout",
                                                  raw["upstream_keepalive_idle_timeout"]),
        upstream_tls_verify=_one_of("upstream_tls_verify", raw["upstream_tls_verify"], ("on", "off")) == "on",
        gc_young_threshold=_whole("gc_young_threshold", raw["gc_young_threshold"], 0),
        malloc_trim_threshold=_trim(raw["malloc_trim_threshold"]),
        client_header_timeout=_positive("client_header_timeout", raw["client_header_timeout"]),
        client_body_timeout=_positive("client_body_timeout", raw["client_body_timeout"]),
        send_timeout=_positive("send_timeout", raw["send_timeout"]),
        keepalive_timeout=_positive("keepalive_timeout", raw["keepalive_timeout"]),
        max_connections=_max_connections(raw["max_connections"]),
        max_connections_per_ip=_whole("max_connections_per_ip", raw["max_connections_per_ip"], 0),
        http2_max_concurrent_streams=_whole("http2_max_concurrent_streams", raw["http2_max_concurrent_streams"], 1),
        max_request_line=_bounded_size("max_request_line", raw["max_request_line"]),
        max_header_line=_bounded_size("max_header_line", raw["max_header_line"]),
        max_headers=_whole("max_headers", raw["max_headers"], 1, 10000),
        regex_match_timeout=_millis("regex_match_timeout", raw["regex_match_timeout"]),
        missing_plugins=_one_of("missing_plugins", raw["missing_plugins"], ("refuse", "skip")),
        shutdown_timeout=_non_negative("shutdown_timeout", raw["shutdown_timeout"]),
        admin_token=raw["admin_token"].strip(),
        admin_server_names=_server_names(raw["admin_server_names"]),
        real_ip_header=_header_name("real_ip_header", raw["real_ip_header"]),
        real_ip_recursive=_one_of("real_ip_recursive", raw["real_ip_recursive"], ("on", "off")) == "on",
        headers_with_underscores=_one_of("headers_with_underscores", raw["headers_with_underscores"],
                                         ("drop", "reject", "allow")),
        dns_resolver=_name_servers(raw["dns_resolver"]),
        dns_hostsfile=raw["dns_hostsfile"].strip(),
        dns_error_ttl=_positive("dns_error_ttl", raw["dns_error_ttl"]),
        dev=dev,
        **tls,
    )


#: The C{ECHOGATE_*} environment variables that are not a setting's
#: C{ECHOGATE_<KEY>}: the config file, dev mode, and the variable that
#: marks a worker process (L{echogate.workers}).
OTHER_ENVIRONMENT = ("ECHOGATE_CONFIG", "ECHOGATE_DEV", "ECHOGATE_WORKER_OF")


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """
    A warning for each C{ECHOGATE_*} variable in C{environ} that echogate
    does not read (a misspelt setting is otherwise silently ignored), with
    the closest known name when there is one.
    """
    import difflib

    known = ["ECHOGATE_" + key.upper() for key in DEFAULTS] + list(OTHER_ENVIRONMENT)
    warnings: list[str] = []
    for name in sorted(environ):
        if not name.startswith("ECHOGATE_") or name in known:
            continue
        near = difflib.get_close_matches(name[len("ECHOGATE_"):], [k[len("ECHOGATE_"):] for k in known], n=1)
        hint = f"; did you mean ECHOGATE_{near[0]}?" if near else ""
        warnings.append(f"environment: {name} is not an echogate setting and is ignored{hint}")
    return warnings


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
    optFlags = [[key, None, HELP[key]] for key in SWITCHES]

    environ: Mapping[str, str] = os.environ

    def postOptions(self) -> None:
        flags = {key: self[key.replace("_", "-")] for key in DEFAULTS}
        flags.update((key, "on") for key in SWITCHES if self[key])
        config_file = self["config"] or self.environ.get("ECHOGATE_CONFIG")
        try:
            # Before the settings are resolved: reading the listeners
            # imports (and so installs) the reactor.
            self.installed_reactor = install_reactor(_raw_values(
                flags, self.environ, read_config_file(config_file) if config_file else {})["reactor"])
            self.settings = resolve(flags, self.environ, config_file)
        except ConfigError as e:
            raise SystemExit(f"echogate: {e}") from None


def parse_tcp(description: str) -> tuple[socket.AddressFamily, str, int, int]:
    """
    C{tcp:PORT[:interface=IP][:backlog=N]} (or C{tcp6:}) to (address
    family, interface, port, backlog).

    @raise ConfigError: another kind of endpoint (only TCP listeners can
        be shared by workers).
    """
    parts = endpoint_parts(description)
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        raise ConfigError(f"workers: {description!r} is not a tcp: endpoint; --workers shares TCP listeners only "
                          "(HTTPS: 'ADDRESS:PORT ssl')")
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
        raise ConfigError(f"workers: {description!r} has no port") from None
    return family, interface, port, backlog


def endpoint_parts(description: str) -> list[str]:
    """
    An endpoint string's colon-separated parts, with backslash escapes
    (C{tcp6:8001:interface=\\:\\:1}) undone.
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
    return parts


def _on_loopback(description: str) -> bool:
    """
    Whether the server endpoint C{description} listens only on a loopback
    interface (or on a UNIX socket). TCP and TLS endpoints without an
    C{interface} listen on every interface; endpoints of other kinds are
    not judged.
    """
    parts = endpoint_parts(description)
    kind = parts[0].strip().lower()
    if kind not in ("tcp", "tcp6", "ssl"):
        return True
    options = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    interface = options.get("interface", "").strip().strip("[]")
    if interface.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def exposure_warnings(listen: Sequence[str], token: str) -> list[str]:
    """
    The warnings to log at start-up: one for each C{admin_listen} endpoint
    that is not on a loopback interface while no C{admin_token} is set.
    """
    if token:
        return []
    return [
        f"The Admin API listens on {description!r}, which is not a loopback interface, "
        "and admin_token is not set: anyone who can reach it can change the configuration. "
        "Set admin_token, or listen on 127.0.0.1."
        for description in listen if not _on_loopback(description)
    ]
