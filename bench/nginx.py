"""
nginx as the upstream (fixed bodies, never the bottleneck) and as the
C{proxy_pass} contender, each from our own configuration file in a
temporary directory: one foreground process (C{master_process off}) that
we start and stop by its pid. The system's nginx service is never used.
"""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

from bench.processes import BenchError, Process, free_port

__all__ = ["SMALL_BODY", "LARGE_SIZE", "PATHS", "nginx_binary", "start_upstream", "start_proxy"]

#: The upstream's small answer: exactly 100 bytes.
SMALL_BODY = (b"echogate bench " * 7)[:99] + b"\n"
assert len(SMALL_BODY) == 100

#: The size of the upstream's large answer.
LARGE_SIZE = 1024 * 1024

#: What each kind of request asks the upstream for.
PATHS = {"small": "/100b", "large": "/1mb", "post": "/post"}

_COMMON = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    fastcgi_temp_path {dir}/{name}-fastcgi;
    uwsgi_temp_path {dir}/{name}-uwsgi;
    scgi_temp_path {dir}/{name}-scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
{body}
}}
"""

_UPSTREAM = """\
    server {{
        listen 127.0.0.1:{port} backlog=511;
        location = /100b {{ return 200 "{small}"; }}
        location = /1mb {{ root {dir}/www; }}
        location = /post {{
            client_max_body_size 10m;
            client_body_buffer_size 1m;
            return 200 "{small}";
        }}
        location / {{ return 200 "{small}"; }}
    }}
"""

_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 100;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=511;
        client_max_body_size 10m;
        client_body_buffer_size 1m;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering on;
        }}
    }}
"""


def nginx_binary() -> str | None:
    """
    The nginx program, or C{None} when it is not installed.
    """
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _start(name: str, directory: Path, body: str, port: int, cpus: str | None) -> Process:
    binary = nginx_binary()
    if binary is None:
        raise BenchError("nginx is not installed (apt-get install -y nginx)")
    conf = directory / f"{name}.conf"
    conf.write_text(_COMMON.format(dir=directory, name=name, body=body))
    process = Process(name, [binary, "-p", str(directory), "-c", str(conf), "-e",
                             str(directory / f"{name}-error.log")],
                      directory / f"{name}.log", cpus=cpus, stop_signal=signal.SIGQUIT)
    process.start()
    process.wait_for_port(port)
    return process


def start_upstream(directory: Path, cpus: str | None) -> tuple[Process, int]:
    """
    Start the upstream: C{/100b} (and any other GET) answers the 100-byte
    body, C{/1mb} a 1 MiB file, C{/post} takes a body and answers the
    100-byte body.

    @return: the process and its port.
    """
    www = directory / "www"
    www.mkdir(exist_ok=True)
    (www / "1mb").write_bytes(b"x" * LARGE_SIZE)
    port = free_port()
    small = SMALL_BODY.decode().replace("\n", "\\n")
    process = _start("upstream", directory, _UPSTREAM.format(port=port, small=small, dir=directory),
                     port, cpus)
    return process, port


def start_proxy(directory: Path, upstream_port: int, cpus: str | None) -> tuple[Process, int]:
    """
    Start nginx as a reverse proxy to the upstream, with a keep-alive
    pool of 100 upstream connections (C{proxy_http_version 1.1}).

    @return: the process and its port.
    """
    port = free_port()
    process = _start("nginx-proxy", directory, _PROXY.format(port=port, upstream_port=upstream_port),
                     port, cpus)
    return process, port
