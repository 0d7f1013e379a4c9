"""
TLS (issue 20): what HTTPS costs a node, beside plain HTTP on the same
node and beside nginx terminating TLS, and how many new handshakes a
second a node makes, in one invocation.

Run: C{.venv/bin/python bench/tls.py [--quick] [--rounds 3] [--seconds 10]
[--handshake-seconds 5] [--clients 2] [--keep]}.

One echogate node (pinned to the server core, on a fresh database of a
PostgreSQL server started on 127.0.0.1) listens with
C{proxy_listen = 127.0.0.1:P backlog=511, 127.0.0.1:Q ssl backlog=511}
(its self-signed default certificate: RSA 2048, for C{localhost}), with
one service (the upstream nginx of C{bench/run.py}) and a route C{/}.
nginx terminates TLS in front of the same upstream (a self-signed RSA
2048 certificate, C{ssl_session_cache}, keep-alive pool of 100, the same
core).

Throughput: small-50 (GET, 100-byte answer, 50 keep-alive connections;
see C{bench/contenders.py}) with wrk, round after round, the order
rotating: C{echogate-http} (the node's plain listener),
C{echogate-https} (its C{ssl} listener) and C{nginx-https}. It prints
req/s and the ratios echogate-https / echogate-http (goal >= 0.8) and
echogate-https / nginx-https (medians of the per-round ratios).

Handshakes: C{--clients} C{openssl s_time} processes in parallel (on the
other core), each for C{--handshake-seconds}, against each listener:
C{-new} (a full handshake per connection, TLS 1.3 and TLS 1.2), and
C{-reuse -tls1_2} (every connection after the first resumes the first's
session). It prints handshakes a second (counted connections over the
measured wall time) and how many were resumed. (C{s_time} closes each
connection before a TLS 1.3 ticket arrives, so TLS 1.3 resumption is not
measured.)

Everything listens on 127.0.0.1, every run is bounded in time, and only
the processes started here are stopped, by pid. Figures are reported,
never asserted.
"""
from __future__ import annotations

import argparse
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from bench import nginx, report, scripts
from bench.contenders import SCENARIOS
from bench.gateway import BACKLOG, ECHO_HEADER, EchogateNode
from bench.loadgen import Load, LoadResult, run_load
from bench.processes import BenchError, CoreLayout, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, say

__all__ = ["Handshakes", "main", "parse_arguments", "parse_s_time"]

SCENARIO = SCENARIOS["small-50"]
PATH = nginx.PATHS[SCENARIO.kind]

#: The longest measurement the script allows (seconds), and the most rounds.
MAX_SECONDS = 10
MAX_ROUNDS = 10
MAX_CLIENTS = 8

#: The throughput cases, in their first round's order.
CASES = ("echogate-http", "echogate-https", "nginx-https")

#: The handshake modes: a label and C{openssl s_time}'s options.
MODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("new TLS 1.3", ("-new", "-tls1_3")),
    ("new TLS 1.2", ("-new", "-tls1_2")),
    ("resumed TLS 1.2", ("-reuse", "-tls1_2")),
)

#: nginx terminating TLS in front of the upstream, with a pool of kept
#: connections to it as the C{nginx} contender of C{bench/run.py} has.
_TLS_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 100;
    }}
    server {{
        listen 127.0.0.1:{port} ssl backlog={backlog};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:bench:10m;
        ssl_session_timeout 1d;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
"""

_COUNT = re.compile(r"(\d+) connections in \d+ real seconds")


def start_nginx_tls(directory: Path, upstream_port: int, cpus: str | None) -> tuple[Process, int]:
    """
    Start nginx terminating TLS (a new self-signed RSA 2048 certificate for
    C{localhost}) in front of the upstream.

    @return: the process and its port.
    """
    from tests.certs import make_self_signed, write_pair

    cert, key = write_pair(make_self_signed(["localhost"]), directory, "nginx-tls")
    port = free_port()
    body = _TLS_PROXY.format(port=port, upstream_port=upstream_port, cert=cert, key=key, backlog=BACKLOG)
    process = nginx._start("nginx-tls", directory, body, port, cpus)
    return process, port


def start_node(directory: Path, dsn: str, upstream_port: int, cpus: str | None) -> tuple[EchogateNode, int]:
    """
    Start an echogate node with a plain and an C{ssl} proxy listener, a
    service to the upstream and a route C{/}; wait until both serve.

    @return: the node (its C{proxy_port} the plain listener's) and the
        C{ssl} listener's port.
    """
    http_port, https_port = free_port(), free_port()
    listen = f"127.0.0.1:{http_port} backlog={BACKLOG}, 127.0.0.1:{https_port} ssl backlog={BACKLOG}"
    node = EchogateNode("echogate", Path(sys.executable).parent, dsn, directory / "node", cpus,
                        options=("--proxy-listen", listen)).start()
    node.proxy_port = http_port
    node.add_service("bench", upstream_port)
    node.add_route("bench", "bench", paths=["/"])
    node.wait_until_served(PATH)
    return node, https_port


def probe_https(port: int, timeout: float = 30.0) -> str:
    """
    C{GET PATH} over TLS (no verification: self-signed certificates) until
    it answers the upstream's 100 bytes.

    @return: the negotiated protocol and cipher, for the report.
    @raise BenchError: it does not, within C{timeout}.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
                    cipher = tls.cipher()
                    version = tls.version()
            if data.startswith(b"HTTP/1.1 200") and data.endswith(nginx.SMALL_BODY):
                return f"{version}, {cipher[0] if cipher else '?'}"
            seen = data[:200]
        except OSError as e:
            seen = e
        time.sleep(0.1)
    raise BenchError(f"127.0.0.1:{port} does not serve {PATH} over TLS: {seen!r}")


def measure_throughput(urls: dict[str, str], servers: dict[str, Process], rounds: int, seconds: int,
                       warmup: int, cpus: str | None) -> dict[str, list[LoadResult]]:
    """
    Load each case in turn, C{rounds} times, the order rotating each
    round, after one warm-up run of each.
    """
    header = (f"{ECHO_HEADER[0]}: {ECHO_HEADER[1]}",)
    if warmup:
        for case in CASES:
            run_load(Load(urls[case], SCENARIO.connections, warmup, headers=header), servers[case], cpus)
    results: dict[str, list[LoadResult]] = {case: [] for case in CASES}
    for number in range(rounds):
        for case in scripts.rotated(CASES, number):
            result = run_load(Load(urls[case], SCENARIO.connections, seconds, headers=header), servers[case], cpus)
            results[case].append(result)
            say(scripts.round_text(number, case, 14, result))
    return results


@attrs.frozen
class Handshakes:
    """
    What the C{s_time} clients of one mode measured against one listener.

    @ivar connections: connections made (each a handshake).
    @ivar resumed: how many of them resumed a session.
    @ivar seconds: the wall time, from starting the clients to the last
        one's end.
    @ivar cpu: the server's CPU seconds per second meanwhile.
    """

    connections: int
    resumed: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.connections / self.seconds if self.seconds else 0.0


def measure_handshakes(port: int, options: Sequence[str], clients: int, seconds: int, server: Process,
                       cpus: str | None) -> Handshakes:
    """
    C{clients} C{openssl s_time -connect 127.0.0.1:PORT OPTIONS -time
    SECONDS} in parallel, pinned to C{cpus}.

    @raise BenchError: a client failed or printed no count.
    """
    argv = (["taskset", "-c", cpus] if cpus else []) + [
        "openssl", "s_time", "-connect", f"127.0.0.1:{port}", *options, "-time", str(seconds)]
    before = server.cpu_seconds()
    started = time.monotonic()
    running = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True) for _ in range(clients)]
    outputs = []
    try:
        for process in running:
            outputs.append(process.communicate(timeout=seconds + 30)[0])
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"openssl s_time did not finish: {' '.join(argv)}") from e
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = time.monotonic() - started
    cpu = (server.cpu_seconds() - before) / wall
    connections = resumed = 0
    for process, output in zip(running, outputs):
        counted = parse_s_time(output)
        if process.returncode != 0 or counted is None:
            raise BenchError(f"openssl s_time failed ({process.returncode}): {' '.join(argv)}\n{output[-2000:]}")
        connections += counted[0]
        resumed += counted[1]
    return Handshakes(connections, resumed, wall, cpu)


def parse_s_time(output: str) -> tuple[int, int] | None:
    """
    What one C{openssl s_time} printed: the connections it made and how
    many of them resumed a session (its progress line has an C{r} for
    each resumed one, a C{*} for each other), or C{None} when it printed
    no count.
    """
    counts = _COUNT.findall(output)
    if not counts:
        return None
    resumed = sum(line.count("r") for line in output.splitlines() if line and set(line) <= set("r*"))
    return int(counts[-1]), resumed


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-ups, 2 s of handshakes")
    parser.add_argument("--rounds", type=int, help="rounds of the three loads (default 3, 2 with --quick)")
    parser.add_argument("--seconds", type=int, help=f"seconds per load, at most {MAX_SECONDS} "
                        "(default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up load per case (default 2, 1 with --quick)")
    parser.add_argument("--handshake-seconds", type=int, help=f"seconds per handshake measurement, at most "
                        f"{MAX_SECONDS} (default 5, 2 with --quick)")
    parser.add_argument("--clients", type=int, default=2, help=f"openssl s_time processes in parallel, at most "
                        f"{MAX_CLIENTS} (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    arguments = parser.parse_args(argv)
    scripts.fill_defaults(
        arguments, (("rounds", 3, 2), ("seconds", 10, 3), ("warmup", 2, 1), ("handshake_seconds", 5, 2)))
    scripts.check_ranges(
        parser, arguments, ((("seconds", "handshake_seconds"), 1, MAX_SECONDS), ("rounds", 1, MAX_ROUNDS),
            ("warmup", 0, MAX_SECONDS), ("clients", 1, MAX_CLIENTS)))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    stop_on_terminate()
    arguments = parse_arguments(argv)
    from tests.postgres import TemporaryServer, create_database

    if shutil.which("openssl") is None or shutil.which("wrk") is None or nginx.nginx_binary() is None:
        say("bench: needs openssl, wrk and nginx (apt-get install -y openssl wrk nginx)")
        return 1
    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe())
    with WorkDirectory("echogate-tls-", arguments.keep, mode=0o755) as work:
        directory = work.path
        server = TemporaryServer()
        work.stop_also(server.stop)
        upstream, upstream_port = nginx.start_upstream(directory, cores.other)
        server.start()
        node, https_port = start_node(directory, create_database(True, server=server), upstream_port, cores.proxy)
        proxy, proxy_port = start_nginx_tls(directory, upstream_port, cores.proxy)
        say(f"upstream nginx on 127.0.0.1:{upstream_port}; echogate http {node.proxy_port}, https {https_port}; "
            f"nginx https {proxy_port}")
        say(f"echogate-https negotiates {probe_https(https_port)}; nginx-https {probe_https(proxy_port)}")
        urls = {"echogate-http": f"http://127.0.0.1:{node.proxy_port}{PATH}",
                "echogate-https": f"https://127.0.0.1:{https_port}{PATH}",
                "nginx-https": f"https://127.0.0.1:{proxy_port}{PATH}"}
        servers = {"echogate-http": node.process, "echogate-https": node.process, "nginx-https": proxy}
        say(f"small-50 ({SCENARIO.description}), {arguments.rounds} round(s) of {arguments.seconds} s, "
            f"servers pinned to core {cores.proxy}, wrk and the upstream on {cores.other}")
        results = measure_throughput(urls, servers, arguments.rounds, arguments.seconds, arguments.warmup,
                                     cores.other)
        summaries = {case: report.summarize(runs) for case, runs in results.items()}
        say("")
        for case in CASES:
            s = summaries[case]
            say(scripts.summary_text(case, 14, s) + f"  p50 {s.p50_ms:.2f} ms  p99 {s.p99_ms:.2f} ms  "
                f"server CPU {s.cpu:.0%}  errors {s.errors}")
        for top, bottom, goal in (("echogate-https", "echogate-http", " (goal >= 0.8)"),
                                  ("echogate-https", "nginx-https", "")):
            value, each = report.ratio(summaries[top], summaries[bottom])
            say(scripts.ratio_text(f"{top} / {bottom}", value, each) + goal)
        say("")
        say(f"handshakes: {arguments.clients} openssl s_time client(s) in parallel on core(s) {cores.other}, "
            f"{arguments.handshake_seconds} s each")
        for label, port, process in (("echogate", https_port, node.process), ("nginx", proxy_port, proxy)):
            for mode, options in MODES:
                found = measure_handshakes(port, options, arguments.clients, arguments.handshake_seconds, process,
                                           cores.other)
                say(f"{label:>9} {mode:>16}: {found.rate:8,.0f} handshakes/s ({found.connections:,} in "
                    f"{found.seconds:.1f} s, {found.resumed:,} resumed)  server CPU {found.cpu:.0%}")
        say(scripts.load_average())
    return work.status


if __name__ == "__main__":
    sys.exit(main())
