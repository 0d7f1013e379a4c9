"""
What an idle keep-alive client connection costs a node in memory (issue
25's target: at most 10 KB of RSS each).

One DB-less echogate node (one route to the bench's nginx upstream) is
started; its RSS is read once it has settled, then C{--connections}
keep-alive connections are opened to it, each making one request (a
100-byte answer) and then left open and idle, in batches of C{--batch}
at once; the RSS is read at half of them and at all of them. Prints the
bytes per connection over all of them (RSS with them less RSS before)
and over the second half (the slope, without what the first connections
made once: buffers, the allocator's arenas).

Only 127.0.0.1; the script raises its descriptor limit (and so the
node's) as far as the hard limit allows, and opens fewer connections if
that is too low, saying so. Bounded: at most C{MAX_CONNECTIONS}, and
C{--timeout} seconds for the connections.

Run: C{.venv/bin/python bench/idle.py [--connections 10000] [--batch 500]}
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from bench import nginx
from bench.gateway import EchogateNode
from bench.processes import BenchError, CoreLayout, stop_on_terminate
from bench.scripts import WorkDirectory, check_ranges, say

__all__ = ["MAX_CONNECTIONS", "Footprint", "descriptors_needed", "main", "parse_arguments",
           "raise_descriptor_limit", "response_complete"]

#: The most connections a run opens.
MAX_CONNECTIONS = 50_000
#: Descriptors kept aside, beyond the connections, in this process and the
#: node (listeners, the upstream pool, logs, the interpreter's own).
SPARE_DESCRIPTORS = 300
#: What each connection asks for: the upstream's 100-byte answer.
REQUEST = (f"GET {nginx.PATHS['small']} HTTP/1.1\r\nHost: idle.test\r\n\r\n").encode()


def descriptors_needed(connections: int) -> int:
    """
    The descriptor limit this process (which holds the client ends) and
    the node (which holds the server ends) each need for C{connections}.
    """
    return connections + SPARE_DESCRIPTORS


def raise_descriptor_limit(wanted: int) -> int:
    """
    Raise this process's soft descriptor limit towards C{wanted}, within
    the hard limit (a node started after this inherits it).

    @return: the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    return soft


def response_complete(data: bytes) -> bool:
    """
    Whether C{data} holds a whole HTTP/1.1 response: its head, then a body
    of its C{Content-Length}, or chunks up to the last one.
    """
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            return len(body) >= int(value.strip())
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return True


@attrs.frozen
class Footprint:
    """
    The node's RSS (kB) before the connections, with half of them and with
    all of them.
    """

    connections: int
    before_kb: int
    half_kb: int
    all_kb: int

    @property
    def per_connection(self) -> float:
        """Bytes of RSS per connection, over all of them."""
        return (self.all_kb - self.before_kb) * 1024 / self.connections

    @property
    def per_connection_slope(self) -> float:
        """Bytes of RSS per connection, over the second half."""
        second = self.connections - self.connections // 2
        return (self.all_kb - self.half_kb) * 1024 / second if second else 0.0


def _open(port: int, count: int, deadline: float) -> list[socket.socket]:
    """
    Open C{count} connections to the node, each sending one request and
    reading its whole answer, all of them at once, and keep them open.

    @raise BenchError: a connection failed, was closed or not answered
        200 before C{deadline}.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=max(deadline - time.monotonic(), 1))
            connection.sendall(REQUEST)
            sockets.append(connection)
        for connection in sockets:
            data = b""
            while not response_complete(data):
                connection.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = connection.recv(65536)
                if not chunk:
                    raise BenchError(f"the node closed a connection before its answer: {data[:200]!r}")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"the node answered {data[:200]!r}")
    except OSError as e:
        for connection in sockets:
            connection.close()
        raise BenchError(f"a connection failed: {e}") from e
    return sockets


def _rss_kb(node: EchogateNode, settle: float) -> int:
    time.sleep(settle)
    return node.process.status().get("VmRSS", 0)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000,
                        help=f"idle connections to open, at most {MAX_CONNECTIONS} (default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="connections opened at once (default 500)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds the connections may take to open (default 120)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait before each reading of the RSS (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    arguments = parser.parse_args(argv)
    check_ranges(parser, arguments, (("connections", 2, MAX_CONNECTIONS), ("batch", 1, 5000),
                                     ("timeout", 1, 900), ("settle", 0, 60)))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop_on_terminate()
    cores = CoreLayout.detect()
    cores.pin_self()
    wanted = descriptors_needed(arguments.connections)
    limit = raise_descriptor_limit(wanted)
    connections = arguments.connections
    if limit < wanted:
        connections = max(limit - SPARE_DESCRIPTORS, 2)
        say(f"the descriptor limit is {limit} (hard limit): {connections} connections instead of "
            f"{arguments.connections}")
    with WorkDirectory("echogate-idle-", arguments.keep, mode=0o755) as work:
        directory = work.path
        _, upstream_port = nginx.start_upstream(directory, cores.other)
        config = directory / "kong.yml"
        config.write_text(f'_format_version: "3.0"\nservices:\n- name: upstream\n'
                          f"  url: http://127.0.0.1:{upstream_port}\n"
                          "  routes:\n  - name: all\n    paths: [/]\n    strip_path: false\n")
        node = EchogateNode("echogate", Path(sys.executable).parent, "off", directory / "node", cores.proxy,
                            env=dict(os.environ),
                            options=("--declarative-config", str(config),
                                     "--max-connections", str(connections + 100),
                                     "--keepalive-timeout", str(arguments.timeout + 20 * arguments.settle + 60)))
        node.start()
        say(f"echogate on 127.0.0.1:{node.proxy_port} (DB-less), pid {node.process.pid}; "
            f"{connections} connections, {arguments.batch} at once")
        deadline = time.monotonic() + arguments.timeout
        held = _open(node.proxy_port, 10, deadline)  # warm-up: the upstream pool, the first requests
        before = _rss_kb(node, arguments.settle)
        half = connections // 2
        try:
            readings = []
            for target in (half, connections):
                while len(held) - 10 < target:
                    if time.monotonic() > deadline:
                        raise BenchError(f"{len(held) - 10} connections open after {arguments.timeout:g} s")
                    held += _open(node.proxy_port, min(arguments.batch, target - (len(held) - 10)), deadline)
                readings.append(_rss_kb(node, arguments.settle))
            found = Footprint(connections, before, readings[0], readings[1])
            say(f"RSS {found.before_kb / 1024:,.1f} MB before, {found.half_kb / 1024:,.1f} MB with {half:,} idle "
                f"connections, {found.all_kb / 1024:,.1f} MB with {connections:,}")
            say(f"per idle connection: {found.per_connection:,.0f} bytes over all of them, "
                f"{found.per_connection_slope:,.0f} bytes over the second half (target <= 10,240)")
        finally:
            for connection in held:
                connection.close()
    return work.status


if __name__ == "__main__":
    sys.exit(main())
