"""
HTTP/2 (issue 22): requests a second through one echogate node over
HTTP/2 (h2load) beside the same node over HTTP/1.1 (wrk), at the same
concurrency, in one invocation.

Run: C{.venv/bin/python bench/http2.py [--quick] [--rounds 3] [--seconds 10]
[--connections 50] [--keep]}.

The upstream is the nginx of C{bench/run.py} (its 100-byte answer). One
DB-less echogate node (pinned to the server core; C{database = off}, a
declarative file with one service to the upstream and a route C{/})
listens three times: C{127.0.0.1:P} (HTTP/1.1), C{127.0.0.1:Q http2}
(h2c, prior knowledge) and C{127.0.0.1:R http2 ssl} (h2 by ALPN; its
self-signed default certificate). The cases, round after round, the order
rotating:

  - C{h1-wrk}: wrk, C{--connections} keep-alive connections, one request
    in flight on each (the reference);
  - C{h1-h2load}: h2load C{--h1} with the same connections (the same
    load, from h2load: how much of a difference is the generator's);
  - C{h2c}: h2load C{-c CONNECTIONS -m 1}: as many streams in flight as
    wrk has requests, one per connection;
  - C{h2c-mux}: h2load C{-c CONNECTIONS/5 -m 5}: the same number of
    streams, five to a connection;
  - C{h2-tls}: h2load C{-c CONNECTIONS -m 1} over TLS.

It prints req/s, latency (wrk's p50 and p99; h2load's mean and max) and
the node's CPU, and the ratios h2c / h1-wrk (goal >= 0.8), h2c-mux /
h1-wrk and h2-tls / h1-wrk (medians of the per-round ratios). Everything
listens on 127.0.0.1, every run is bounded in time, and only the
processes started here are stopped, by pid. Figures are reported, never
asserted.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    # Run as a script: the checkout instead of this directory, where this
    # file would stand for the C{h2} package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import attrs

from bench import nginx, report, scripts
from bench.gateway import BACKLOG, EchogateNode
from bench.loadgen import Load, LoadResult, run_load
from bench.processes import BenchError, CoreLayout, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, say

__all__ = ["Case", "H2LOAD", "h2load_argv", "main", "parse_arguments", "parse_h2load", "cases"]

#: The bounds: seconds per run, rounds, connections.
MAX_SECONDS = 10
MAX_ROUNDS = 10
MAX_CONNECTIONS = 500

#: The load generator for HTTP/2.
H2LOAD = "/usr/bin/h2load"

#: Streams per connection of the multiplexed case.
MUX = 5

PATH = nginx.PATHS["small"]


@attrs.frozen
class Case:
    """
    One load: its name, its generator (C{"wrk"} or C{"h2load"}), the
    listener (C{"h1"}, C{"h2c"} or C{"tls"}), connections, streams in
    flight on each, and whether h2load speaks HTTP/1.1 (C{--h1}).
    """

    name: str
    tool: str
    listener: str
    connections: int
    streams: int = 1
    h1: bool = False


def cases(connections: int) -> tuple[Case, ...]:
    """
    The cases at C{connections} (see the module's docstring), in their
    first round's order.
    """
    return (Case("h1-wrk", "wrk", "h1", connections),
            Case("h1-h2load", "h2load", "h1", connections, h1=True),
            Case("h2c", "h2load", "h2c", connections),
            Case("h2c-mux", "h2load", "h2c", max(1, connections // MUX), MUX),
            Case("h2-tls", "h2load", "tls", connections))


_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: [\d.]+\w* \((\d+)\) total")
_TIME = re.compile(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_h2load(output: str, peak_rss_kb: int = 0, cpu_seconds: float = 0.0) -> LoadResult | None:
    """
    What h2load printed, as a L{LoadResult}: the requests that succeeded
    with a 2xx over the measured time; C{p50_ms} holds the mean time for
    a request and C{max_ms} the longest (h2load gives no percentiles, so
    C{p90_ms} and C{p99_ms} are 0). C{None} when the output has no
    summary.
    """
    finished, requests, statuses = _FINISHED.search(output), _REQUESTS.search(output), _STATUS.search(output)
    if finished is None or requests is None or statuses is None:
        return None
    seconds = float(finished.group(1)) * (0.001 if finished.group(2) == "ms" else 1.0)
    _, _, done, succeeded, failed, errored, timeout = (int(n) for n in requests.groups())
    ok, _, client_errors, server_errors = (int(n) for n in statuses.groups())
    errors = {name: count for name, count in (("failed", failed), ("errored", errored), ("timeout", timeout),
                                              ("status", client_errors + server_errors)) if count}
    timing = _TIME.search(output)
    mean = max_ms = 0.0
    if timing is not None:
        max_ms = float(timing.group(3)) * _UNITS[timing.group(4)]
        mean = float(timing.group(5)) * _UNITS[timing.group(6)]
    traffic = _TRAFFIC.search(output)
    return LoadResult(requests=ok, seconds=seconds, bytes=int(traffic.group(1)) if traffic else 0, errors=errors,
                      p50_ms=mean, p90_ms=0.0, p99_ms=0.0, max_ms=max_ms, peak_rss_kb=peak_rss_kb,
                      cpu=cpu_seconds / seconds if seconds else 0.0)


def h2load_argv(case: Case, url: str, seconds: int, cpus: str | None) -> list[str]:
    """
    The h2load command of C{case} against C{url}, for C{seconds}, on one
    thread (no warm-up of its own: with one, the time it reports counts
    the warm-up too).
    """
    return (["taskset", "-c", cpus] if cpus else []) + [
        H2LOAD, "-t", "1", "-c", str(case.connections), "-m", str(case.streams), "-D", str(seconds),
        *(["--h1"] if case.h1 else []), url]


def run_h2load(case: Case, url: str, seconds: int, server: Process, cpus: str | None) -> LoadResult:
    """
    Run h2load for C{case}, and account the node's CPU and peak RSS
    meanwhile.

    @raise BenchError: h2load failed, did not end in time or printed no
        summary.
    """
    argv = h2load_argv(case, url, seconds, cpus)
    server.reset_peak()
    before = server.cpu_seconds()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"h2load did not end: {' '.join(argv)}") from e
    cpu = server.cpu_seconds() - before
    found = parse_h2load(done.stdout, server.status().get("VmHWM", 0), cpu)
    if done.returncode != 0 or found is None:
        raise BenchError(f"h2load failed ({done.returncode}): {' '.join(argv)}\n{(done.stdout + done.stderr)[-2000:]}")
    return found


def start_node(directory: Path, upstream_port: int, cpus: str | None) -> tuple[EchogateNode, dict[str, int]]:
    """
    Start a DB-less node with its three listeners, one service to the
    upstream and a route C{/}, and wait until it serves.

    @return: the node and its ports by listener (C{h1}, C{h2c}, C{tls}).
    """
    ports = {"h1": free_port(), "h2c": free_port(), "tls": free_port()}
    listen = (f"127.0.0.1:{ports['h1']} backlog={BACKLOG}, 127.0.0.1:{ports['h2c']} http2 backlog={BACKLOG}, "
              f"127.0.0.1:{ports['tls']} http2 ssl backlog={BACKLOG}")
    config = directory / "kong.yml"
    config.write_text(f'_format_version: "3.0"\nservices:\n- name: bench\n  url: http://127.0.0.1:{upstream_port}\n'
                      f"  routes:\n  - name: bench\n    paths: [/]\n")
    node = EchogateNode("echogate", Path(sys.executable).parent, "off", directory / "node", cpus,
                        options=("--proxy-listen", listen, "--declarative-config", str(config))).start()
    node.proxy_port = ports["h1"]
    node.wait_until_served(PATH)
    return node, ports


def probe_h2(url: str) -> None:
    """
    One h2load request to C{url}: it must be a 2xx over HTTP/2.

    @raise BenchError: it is not.
    """
    done = subprocess.run([H2LOAD, "-n", "1", "-c", "1", url], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    found = parse_h2load(done.stdout)
    if done.returncode != 0 or found is None or found.requests != 1 or "Application protocol: h2" not in done.stdout:
        raise BenchError(f"{url} does not answer over HTTP/2:\n{(done.stdout + done.stderr)[-2000:]}")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, help=f"rounds of the loads, at most {MAX_ROUNDS} "
                        "(default 3, 2 with --quick)")
    parser.add_argument("--seconds", type=int, help=f"seconds per load, at most {MAX_SECONDS} "
                        "(default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up load per case before the rounds "
                        "(default 2, 1 with --quick)")
    parser.add_argument("--connections", type=int, default=50, help=f"connections (streams in flight), at most "
                        f"{MAX_CONNECTIONS} (default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    arguments = parser.parse_args(argv)
    scripts.fill_defaults(arguments, (("rounds", 3, 2), ("seconds", 10, 3), ("warmup", 2, 1)))
    scripts.check_ranges(parser, arguments, (("seconds", 1, MAX_SECONDS), ("rounds", 1, MAX_ROUNDS),
                                             ("warmup", 0, MAX_SECONDS), ("connections", 1, MAX_CONNECTIONS)))
    return arguments


def run_case(case: Case, urls: dict[str, str], seconds: int, node: Process, cpus: str | None) -> LoadResult:
    """
    One load of C{case}.
    """
    if case.tool == "wrk":
        return run_load(Load(urls[case.listener], case.connections, seconds), node, cpus)
    return run_h2load(case, urls[case.listener], seconds, node, cpus)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop_on_terminate()
    if shutil.which("wrk") is None or nginx.nginx_binary() is None or not Path(H2LOAD).exists():
        say(f"bench: needs wrk, nginx and {H2LOAD} (apt-get install -y wrk nginx nghttp2-client)")
        return 1
    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe().replace("wrk,", "wrk, h2load,"))
    every = cases(arguments.connections)
    with WorkDirectory("echogate-h2-", arguments.keep) as work:
        directory = work.path
        _, upstream_port = nginx.start_upstream(directory, cores.other)
        node, ports = start_node(directory, upstream_port, cores.proxy)
        urls = {"h1": f"http://127.0.0.1:{ports['h1']}{PATH}", "h2c": f"http://127.0.0.1:{ports['h2c']}{PATH}",
                "tls": f"https://127.0.0.1:{ports['tls']}{PATH}"}
        probe_h2(urls["h2c"])
        try:
            probe_h2(urls["tls"])
        except BenchError as e:
            say(f"the TLS listener does not speak HTTP/2, h2-tls left out: {str(e).splitlines()[0]}")
            every = tuple(case for case in every if case.listener != "tls")
        say(f"upstream nginx on 127.0.0.1:{upstream_port}; echogate (DB-less) HTTP/1.1 {ports['h1']}, "
            f"h2c {ports['h2c']}, TLS {ports['tls']}")
        say("; ".join(f"{c.name}: {c.tool} -c {c.connections}" + (f" -m {c.streams}" if c.tool == "h2load" else "")
                      + (" --h1" if c.h1 else "") for c in every))
        say(f"{arguments.rounds} round(s) of {arguments.seconds} s")
        if arguments.warmup:
            for case in every:
                run_case(case, urls, arguments.warmup, node.process, cores.other)
        results: dict[str, list[LoadResult]] = {case.name: [] for case in every}
        width = max(len(case.name) for case in every)
        for number in range(arguments.rounds):
            for case in scripts.rotated(every, number):
                result = run_case(case, urls, arguments.seconds, node.process, cores.other)
                results[case.name].append(result)
                say(_round_text(number, case, width, result))
        summaries = {name: report.summarize(runs) for name, runs in results.items()}
        say("")
        for case in every:
            s = summaries[case.name]
            latency = (f"p50 {s.p50_ms:.2f} ms  p99 {s.p99_ms:.2f} ms" if case.tool == "wrk"
                       else f"mean {s.p50_ms:.2f} ms")
            say(scripts.summary_text(case.name, width, s) + f"  {latency}  node CPU {s.cpu:.0%}  errors {s.errors}")
        for top, goal in (("h2c", " (goal >= 0.8)"), ("h2c-mux", ""), ("h2-tls", ""), ("h1-h2load", "")):
            if top not in summaries:
                continue
            say(scripts.ratio_text(f"{top} / h1-wrk", *report.ratio(summaries[top], summaries["h1-wrk"])) + goal)
        say(scripts.ratio_text("h2c / h1-h2load", *report.ratio(summaries["h2c"], summaries["h1-h2load"]))
            + " (the same generator)")
        say(scripts.load_average())
    return work.status


def _round_text(number: int, case: Case, width: int, result: LoadResult) -> str:
    if case.tool == "wrk":
        return scripts.round_text(number, case.name, width, result)
    return (f"round {number + 1}  {case.name:>{width}}: {result.rps:9,.0f} req/s  mean {result.p50_ms:5.2f} ms  "
            f"max {result.max_ms:6.2f} ms  server CPU {result.cpu:.0%}"
            + (f"  errors {result.errors}" if result.error_count else ""))


if __name__ == "__main__":
    sys.exit(main())
