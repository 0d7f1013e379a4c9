"""
WebSocket proxying (issue 21): messages a second through an echogate
tunnel beside the same load straight to the upstream, in one invocation.

Run: C{.venv/bin/python bench/websocket.py [--quick] [--rounds 3]
[--seconds 10] [--connections 100] [--size 32] [--keep]}.

The upstream is a C{websockets} asyncio echo server (this script with
C{--serve-echo PORT}, its own process). One DB-less echogate node (pinned
to the server core; C{database = off}, a declarative file with one
service to the echo server and a route C{/}) tunnels to it. The load
generator is this script with C{--generate URL} (its own process, a
bounded asyncio client of the C{websockets} package): it opens
C{--connections} connections, then each sends a C{--size}-byte binary
message and waits for its echo, again and again, for C{--seconds}. It
prints the echoes received (each one message a second counted), the
round trips' latencies and the errors.

The generator and the echo server share the other core(s); the cases run
round after round, the order rotating: C{direct} (to the echo server)
and C{echogate} (through the node). The script prints messages a second,
latencies, the node's CPU use and the ratio echogate / direct (the
median of the per-round ratios). Compression is off on both sides, and
neither sends pings.

Everything listens on 127.0.0.1, every run is bounded in time (and the
generator's connections in count), and only the processes started here
are stopped, by pid. Figures are reported, never asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, scripts
from bench.gateway import BACKLOG, EchogateNode
from bench.loadgen import LoadResult
from bench.processes import BenchError, CoreLayout, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, last_json_with, say

__all__ = ["cpu_per_message", "generate", "main", "parse_arguments", "parse_generator", "percentile", "result_of"]

#: The bounds: seconds per run, rounds, connections, message size.
MAX_SECONDS = 10
MAX_ROUNDS = 10
MAX_CONNECTIONS = 1000
MAX_SIZE = 65536

#: The cases, in their first round's order.
CASES = ("direct", "echogate")

#: How much longer than its C{--seconds} a generator may take (connecting,
#: closing) before it is stopped.
GRACE_SECONDS = 60

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    The value below which C{fraction} of C{values} lie (nearest rank), 0.0
    for none.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def _echo_server(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, ping_interval=None, backlog=BACKLOG,
                     max_size=MAX_SIZE):
        say(f"echo server listening on 127.0.0.1:{port}")
        await asyncio.Future()


async def generate(url: str, connections: int, size: int, seconds: float) -> dict[str, Any]:
    """
    Open C{connections} WebSocket connections to C{url}, then have each
    send C{size} bytes and wait for their echo in a loop for C{seconds}.

    @return: C{messages} (echoes received), C{seconds} (from the first
        send to the last echo), C{connected}, C{errors} (by kind),
        C{p50_ms}, C{p90_ms}, C{p99_ms}, C{max_ms} (round trips).
    """
    from websockets.asyncio.client import ClientConnection, connect

    payload = b"x" * size
    errors: dict[str, int] = {}
    latencies: list[float] = []

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    opened = await asyncio.gather(
        *(connect(url, compression=None, proxy=None, ping_interval=None, open_timeout=30, max_size=MAX_SIZE)
          for _ in range(connections)), return_exceptions=True)
    sockets: list[ClientConnection] = []
    for one in opened:
        if isinstance(one, BaseException):
            error(f"connect: {type(one).__name__}")
        else:
            sockets.append(one)

    async def loop(connection: ClientConnection, deadline: float) -> None:
        clock = time.perf_counter
        while (sent := clock()) < deadline:
            await connection.send(payload)
            reply = await connection.recv()
            latencies.append(clock() - sent)
            if reply != payload:
                error("mismatch")

    started = time.perf_counter()
    deadline = started + seconds
    try:
        ended = await asyncio.wait_for(asyncio.gather(*(loop(c, deadline) for c in sockets),
                                                      return_exceptions=True), seconds + GRACE_SECONDS / 2)
        for outcome in ended:
            if isinstance(outcome, BaseException):
                error(f"message: {type(outcome).__name__}")
    except asyncio.TimeoutError:
        error("timeout")
    wall = time.perf_counter() - started
    try:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in sockets), return_exceptions=True), 10)
    except asyncio.TimeoutError:
        error("close timeout")
    milliseconds = [value * 1000 for value in latencies]
    return {"messages": len(latencies), "seconds": wall, "connected": len(sockets), "errors": errors,
            "p50_ms": percentile(milliseconds, 0.5), "p90_ms": percentile(milliseconds, 0.9),
            "p99_ms": percentile(milliseconds, 0.99), "max_ms": max(milliseconds, default=0.0)}


def parse_generator(output: str) -> dict[str, Any] | None:
    """
    The generator's figures: the last line of C{output} that is a JSON
    object with C{messages}, or C{None} when there is none (it failed).
    """
    return last_json_with(output, "messages")


def result_of(found: dict[str, Any], size: int, peak_rss_kb: int, cpu_seconds: float) -> LoadResult:
    """
    A L{LoadResult} (so that L{report.summarize} and L{report.ratio} apply)
    from the generator's figures: a message is a request, C{bytes} what
    went both ways, and C{cpu} the server's CPU seconds per second.
    """
    seconds = float(found["seconds"])
    return LoadResult(requests=int(found["messages"]), seconds=seconds, bytes=int(found["messages"]) * size * 2,
                      errors=dict(found["errors"]), p50_ms=float(found["p50_ms"]), p90_ms=float(found["p90_ms"]),
                      p99_ms=float(found["p99_ms"]), max_ms=float(found["max_ms"]), peak_rss_kb=peak_rss_kb,
                      cpu=cpu_seconds / seconds if seconds else 0.0)


def cpu_per_message(runs: Sequence[LoadResult]) -> float:
    """
    The server's CPU time per message (a round trip: two frames through
    a tunnel), in microseconds: the median over C{runs}.
    """
    return statistics.median(r.cpu / r.rps * 1e6 if r.rps else 0.0 for r in runs)


def run_generator(url: str, connections: int, size: int, seconds: int, server: Process,
                  cpus: str | None) -> LoadResult:
    """
    Run the generator (its own process, pinned to C{cpus}) against C{url},
    and account the CPU and peak RSS of C{server} (the node, or the echo
    server) meanwhile.

    @raise BenchError: the generator failed, or did not end in time.
    """
    argv = (["taskset", "-c", cpus] if cpus else []) + [
        sys.executable, str(Path(__file__).resolve()), "--generate", url, "--connections", str(connections),
        "--size", str(size), "--seconds", str(seconds)]
    server.reset_peak()
    before = server.cpu_seconds()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + GRACE_SECONDS,
                              stdin=subprocess.DEVNULL, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"the generator did not end: {' '.join(argv)}") from e
    cpu = server.cpu_seconds() - before
    found = parse_generator(done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(f"the generator failed ({done.returncode}): {' '.join(argv)}\n"
                         f"{(done.stdout + done.stderr)[-3000:]}")
    return result_of(found, size, server.status().get("VmHWM", 0), cpu)


def start_echo(directory: Path, cpus: str | None) -> tuple[Process, int]:
    """
    Start the echo server (this script, C{--serve-echo}) on a free port.
    """
    port = free_port()
    process = Process("ws-echo", [sys.executable, str(Path(__file__).resolve()), "--serve-echo", str(port)],
                      directory / "ws-echo.log", cpus=cpus, cwd=ROOT).start()
    process.wait_for_port(port)
    return process, port


def start_node(directory: Path, echo_port: int, cpus: str | None) -> EchogateNode:
    """
    Start a DB-less node whose declarative file has one service (the echo
    server) and a route C{/}.
    """
    config = directory / "kong.yml"
    config.write_text(f'_format_version: "3.0"\nservices:\n- name: ws\n  url: http://127.0.0.1:{echo_port}\n'
                      f"  routes:\n  - name: ws\n    paths: [/]\n")
    return EchogateNode("echogate", Path(sys.executable).parent, "off", directory / "node", cpus,
                        options=("--declarative-config", str(config))).start()


def probe(url: str, timeout: float = 30.0) -> None:
    """
    Wait until one message makes it to C{url}'s echo server and back.

    @raise BenchError: it does not, within C{timeout}.
    """
    from websockets.sync.client import connect

    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            with connect(url, compression=None, proxy=None, open_timeout=10) as connection:
                connection.send(b"probe")
                if connection.recv(timeout=10) == b"probe":
                    return
        except Exception as e:  # noqa: BLE001 -- any failure means "not yet"
            seen = e
        time.sleep(0.1)
    raise BenchError(f"{url} does not echo: {seen!r}")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, help=f"rounds of the two loads, at most {MAX_ROUNDS} "
                        "(default 3, 2 with --quick)")
    parser.add_argument("--seconds", type=int, help=f"seconds per load, at most {MAX_SECONDS} "
                        "(default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up load per case (default 2, 1 with --quick)")
    parser.add_argument("--connections", type=int, default=100, help=f"WebSocket connections, at most "
                        f"{MAX_CONNECTIONS} (default 100)")
    parser.add_argument("--size", type=int, default=32, help=f"message bytes, at most {MAX_SIZE} (default 32)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    roles = parser.add_mutually_exclusive_group()
    roles.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    roles.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    scripts.fill_defaults(
        arguments, (("rounds", 3, 2), ("seconds", 10, 3), ("warmup", 2, 1)))
    scripts.check_ranges(
        parser, arguments, (("seconds", 1, MAX_SECONDS), ("rounds", 1, MAX_ROUNDS), ("warmup", 0, MAX_SECONDS),
            ("connections", 1, MAX_CONNECTIONS), ("size", 1, MAX_SIZE)))
    if arguments.generate is not None and not arguments.generate.startswith("ws://127.0.0.1:"):
        parser.error("--generate takes a ws://127.0.0.1:PORT/ URL")
    return arguments


def measure(urls: dict[str, str], servers: dict[str, Process], arguments: argparse.Namespace,
            cpus: str | None) -> dict[str, list[LoadResult]]:
    """
    One warm-up run of each case, then C{rounds} rounds, the order
    rotating each round.
    """
    if arguments.warmup:
        for case in CASES:
            run_generator(urls[case], arguments.connections, arguments.size, arguments.warmup, servers[case], cpus)
    results: dict[str, list[LoadResult]] = {case: [] for case in CASES}
    for number in range(arguments.rounds):
        for case in scripts.rotated(CASES, number):
            result = run_generator(urls[case], arguments.connections, arguments.size, arguments.seconds,
                                   servers[case], cpus)
            results[case].append(result)
            say(scripts.round_text(number, case, 8, result, "msg/s"))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve_echo is not None:
        asyncio.run(_echo_server(arguments.serve_echo))
        return 0
    if arguments.generate is not None:
        found = asyncio.run(generate(arguments.generate, arguments.connections, arguments.size,
                                     arguments.seconds))
        print(json.dumps(found), flush=True)
        return 0
    stop_on_terminate()
    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe().replace("wrk, upstream nginx, PostgreSQL", "the generator, the echo server"))
    with WorkDirectory("echogate-websocket-", arguments.keep) as work:
        directory = work.path
        echo, echo_port = start_echo(directory, cores.other)
        node = start_node(directory, echo_port, cores.proxy)
        urls = {"direct": f"ws://127.0.0.1:{echo_port}/", "echogate": f"ws://127.0.0.1:{node.proxy_port}/"}
        for url in urls.values():
            probe(url)
        say(f"echo server on 127.0.0.1:{echo_port}; echogate on {node.proxy_port} (DB-less)")
        say(f"{arguments.connections} connections, {arguments.size}-byte messages, each waiting for its echo; "
            f"{arguments.rounds} round(s) of {arguments.seconds} s")
        results = measure(urls, {"direct": echo, "echogate": node.process}, arguments, cores.other)
        summaries = {case: report.summarize(runs) for case, runs in results.items()}
        say("")
        for case in CASES:
            s = summaries[case]
            say(scripts.summary_text(case, 8, s, "msg/s") + f"  p50 {s.p50_ms:.2f} ms  p99 {s.p99_ms:.2f} ms  "
                f"{'node' if case == 'echogate' else 'echo server'} CPU {s.cpu:.0%}  "
                f"peak RSS {s.peak_rss_mb:.1f} MB  errors {s.errors}")
        say(scripts.ratio_text("echogate / direct", *report.ratio(summaries["echogate"], summaries["direct"])))
        node_cpu = summaries["echogate"]
        say(f"node CPU per message: {cpu_per_message(results['echogate']):.1f} us (its CPU {node_cpu.cpu:.0%} "
            f"of one core: below 100%, the generator and the echo server on core(s) {cores.other} set the pace)")
        say(scripts.load_average())
    return work.status


if __name__ == "__main__":
    sys.exit(main())
