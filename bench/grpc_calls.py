"""
gRPC (issue 22): unary calls a second through one echogate node beside
the same calls straight to the gRPC server, in one invocation.

Run: C{.venv/bin/python bench/grpc_calls.py [--quick] [--rounds 3] [--seconds
10] [--concurrency 50] [--keep]}.

The server is the test service of C{tests/h2/grpcservice.py} (grpcio,
a pool of 16 threads; this script with C{--serve}, its own process). One
DB-less echogate node (pinned to the server core; C{database = off}, a
declarative file with a C{grpc} service to the server and a C{grpc} route
for C{/echotest.Echo/}) listens on C{127.0.0.1:P http2} (h2c, prior
knowledge). The client is this script with C{--generate HOST:PORT} (its
own process, a C{grpc.aio} client): one channel (one HTTP/2 connection),
C{--concurrency} calls in flight, each task calling C{Unary} with a
short message again and again for C{--seconds}. It prints the calls that
ended OK, their latencies and the errors.

The client and the server share the other core(s); the cases run round
after round, the order rotating: C{direct} (to the server) and
C{echogate} (through the node). The script prints calls a second,
latencies, CPU and the ratio echogate / direct (the median of the
per-round ratios). The server's own cost is in both; the ratio says how
much a hop through the node takes away.

Everything listens on 127.0.0.1, every run is bounded in time, and only
the processes started here are stopped, by pid. Figures are reported,
never asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    # Run as a script: the checkout instead of this directory, where this
    # file would stand for the C{grpc} package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import report, scripts
from bench.gateway import BACKLOG, EchogateNode
from bench.loadgen import LoadResult
from bench.processes import BenchError, CoreLayout, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, last_json_with, say
from bench.websocket import percentile

__all__ = ["generate", "main", "parse_arguments", "parse_generator", "result_of"]

#: The bounds: seconds per run, rounds, calls in flight.
MAX_SECONDS = 10
MAX_ROUNDS = 10
MAX_CONCURRENCY = 1000

#: The cases, in their first round's order.
CASES = ("direct", "echogate")

#: How much longer than its C{--seconds} a generator may take before it
#: is stopped.
GRACE_SECONDS = 60

#: The message every call sends (and gets back).
MESSAGE = "echogate bench"

ROOT = Path(__file__).resolve().parent.parent


def _serve() -> None:
    """
    Run the test service until stopped, printing its port.
    """
    from tests.h2.grpcservice import GrpcServer

    server = GrpcServer(workers=16).start()
    say(f"grpc server listening on 127.0.0.1:{server.port}")
    while True:
        time.sleep(3600)


async def generate(target: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """
    Call C{Unary} on C{target} (C{127.0.0.1:PORT}) from C{concurrency}
    tasks on one channel, each again and again for C{seconds}.

    @return: C{calls} (ended OK), C{seconds} (from the first call to the
        last answer), C{errors} (by status), C{p50_ms}, C{p90_ms},
        C{p99_ms}, C{max_ms}.
    """
    import grpc

    from tests.h2.grpcservice import echo_modules

    messages, service = echo_modules()
    errors: dict[str, int] = {}
    latencies: list[float] = []
    request = messages.EchoRequest(message=MESSAGE)
    options = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = service.EchoStub(channel)
        await stub.Unary(request, timeout=30)

        async def loop(deadline: float) -> None:
            clock = time.perf_counter
            while (sent := clock()) < deadline:
                try:
                    reply = await stub.Unary(request, timeout=30)
                except grpc.aio.AioRpcError as e:
                    errors[e.code().name] = errors.get(e.code().name, 0) + 1
                    continue
                latencies.append(clock() - sent)
                if reply.message != MESSAGE:
                    errors["mismatch"] = errors.get("mismatch", 0) + 1

        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(loop(started + seconds) for _ in range(concurrency))),
                                   seconds + GRACE_SECONDS / 2)
        except asyncio.TimeoutError:
            errors["timeout"] = errors.get("timeout", 0) + 1
        wall = time.perf_counter() - started
    milliseconds = [value * 1000 for value in latencies]
    return {"calls": len(latencies), "seconds": wall, "errors": errors,
            "p50_ms": percentile(milliseconds, 0.5), "p90_ms": percentile(milliseconds, 0.9),
            "p99_ms": percentile(milliseconds, 0.99), "max_ms": max(milliseconds, default=0.0)}


def parse_generator(output: str) -> dict[str, Any] | None:
    """
    The generator's figures: the last line of C{output} that is a JSON
    object with C{calls}, or C{None} when there is none (it failed).
    """
    return last_json_with(output, "calls")


def result_of(found: dict[str, Any], peak_rss_kb: int, cpu_seconds: float) -> LoadResult:
    """
    A L{LoadResult} (so that L{report.summarize} and L{report.ratio} apply)
    from the generator's figures: a call is a request, and C{cpu} the
    server's CPU seconds per second.
    """
    seconds = float(found["seconds"])
    return LoadResult(requests=int(found["calls"]), seconds=seconds, bytes=0, errors=dict(found["errors"]),
                      p50_ms=float(found["p50_ms"]), p90_ms=float(found["p90_ms"]), p99_ms=float(found["p99_ms"]),
                      max_ms=float(found["max_ms"]), peak_rss_kb=peak_rss_kb,
                      cpu=cpu_seconds / seconds if seconds else 0.0)


def run_generator(target: str, concurrency: int, seconds: int, server: Process, cpus: str | None) -> LoadResult:
    """
    Run the generator (its own process, pinned to C{cpus}) against
    C{target}, and account the CPU and peak RSS of C{server} (the node,
    or the gRPC server) meanwhile.

    @raise BenchError: the generator failed, or did not end in time.
    """
    argv = (["taskset", "-c", cpus] if cpus else []) + [
        sys.executable, str(Path(__file__).resolve()), "--generate", target, "--concurrency", str(concurrency),
        "--seconds", str(seconds)]
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
    return result_of(found, server.status().get("VmHWM", 0), cpu)


def start_server(directory: Path, cpus: str | None) -> tuple[Process, int]:
    """
    Start the gRPC server (this script, C{--serve}); its port.
    """
    process = Process("grpc-server", [sys.executable, str(Path(__file__).resolve()), "--serve"],
                      directory / "grpc-server.log", cpus=cpus, cwd=ROOT).start()
    found = process.wait_for_log(r"grpc server listening on 127\.0\.0\.1:(\d+)")
    return process, int(found.group(1))


def start_node(directory: Path, server_port: int, cpus: str | None) -> EchogateNode:
    """
    Start a DB-less node with an h2c listener, a C{grpc} service to the
    server and a C{grpc} route for its methods.
    """
    port = free_port()
    config = directory / "kong.yml"
    config.write_text(f'_format_version: "3.0"\nservices:\n- name: echo\n  protocol: grpc\n  host: 127.0.0.1\n'
                      f"  port: {server_port}\n  routes:\n  - name: echo\n    protocols: [grpc]\n"
                      f"    paths: [/echotest.Echo/]\n")
    node = EchogateNode("echogate", Path(sys.executable).parent, "off", directory / "node", cpus,
                        options=("--proxy-listen", f"127.0.0.1:{port} http2 backlog={BACKLOG}",
                                 "--declarative-config", str(config))).start()
    node.proxy_port = port
    return node


def probe(target: str, timeout: float = 30.0) -> None:
    """
    Wait until a C{Unary} call to C{target} ends OK.

    @raise BenchError: none does, within C{timeout}.
    """
    import grpc

    from tests.h2.grpcservice import echo_modules

    messages, service = echo_modules()
    deadline = time.monotonic() + timeout
    seen: object = None
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = service.EchoStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Unary(messages.EchoRequest(message="probe"), timeout=10).message == "probe":
                    return
            except grpc.RpcError as e:
                seen = e
            time.sleep(0.1)
    raise BenchError(f"{target} does not answer Unary: {seen!r}")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, help=f"rounds of the two loads, at most {MAX_ROUNDS} "
                        "(default 3, 2 with --quick)")
    parser.add_argument("--seconds", type=int, help=f"seconds per load, at most {MAX_SECONDS} "
                        "(default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up load per case (default 2, 1 with --quick)")
    parser.add_argument("--concurrency", type=int, default=50, help=f"calls in flight on the one channel, at "
                        f"most {MAX_CONCURRENCY} (default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    roles = parser.add_mutually_exclusive_group()
    roles.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    roles.add_argument("--generate", metavar="HOST:PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    scripts.fill_defaults(arguments, (("rounds", 3, 2), ("seconds", 10, 3), ("warmup", 2, 1)))
    scripts.check_ranges(parser, arguments, (("seconds", 1, MAX_SECONDS), ("rounds", 1, MAX_ROUNDS),
                                             ("warmup", 0, MAX_SECONDS), ("concurrency", 1, MAX_CONCURRENCY)))
    if arguments.generate is not None and not arguments.generate.startswith("127.0.0.1:"):
        parser.error("--generate takes 127.0.0.1:PORT")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve:
        _serve()
        return 0
    if arguments.generate is not None:
        found = asyncio.run(generate(arguments.generate, arguments.concurrency, arguments.seconds))
        print(json.dumps(found), flush=True)
        return 0
    stop_on_terminate()
    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe().replace("wrk, upstream nginx, PostgreSQL", "the client, the gRPC server"))
    with WorkDirectory("echogate-grpc-", arguments.keep) as work:
        directory = work.path
        server, server_port = start_server(directory, cores.other)
        node = start_node(directory, server_port, cores.proxy)
        targets = {"direct": f"127.0.0.1:{server_port}", "echogate": f"127.0.0.1:{node.proxy_port}"}
        for target in targets.values():
            probe(target)
        say(f"gRPC server on 127.0.0.1:{server_port}; echogate (DB-less, h2c) on {node.proxy_port}")
        say(f"unary calls, {arguments.concurrency} in flight on one channel; {arguments.rounds} round(s) of "
            f"{arguments.seconds} s")
        processes = {"direct": server, "echogate": node.process}
        if arguments.warmup:
            for case in CASES:
                run_generator(targets[case], arguments.concurrency, arguments.warmup, processes[case], cores.other)
        results: dict[str, list[LoadResult]] = {case: [] for case in CASES}
        for number in range(arguments.rounds):
            for case in scripts.rotated(CASES, number):
                result = run_generator(targets[case], arguments.concurrency, arguments.seconds, processes[case],
                                       cores.other)
                results[case].append(result)
                say(scripts.round_text(number, case, 8, result, "calls/s"))
        summaries = {case: report.summarize(runs) for case, runs in results.items()}
        say("")
        for case in CASES:
            s = summaries[case]
            say(scripts.summary_text(case, 8, s, "calls/s") + f"  p50 {s.p50_ms:.2f} ms  p99 {s.p99_ms:.2f} ms  "
                f"{'node' if case == 'echogate' else 'server'} CPU {s.cpu:.0%}  peak RSS {s.peak_rss_mb:.1f} MB  "
                f"errors {s.errors}")
        say(scripts.ratio_text("echogate / direct", *report.ratio(summaries["echogate"], summaries["direct"])))
        say(scripts.load_average())
    return work.status


if __name__ == "__main__":
    sys.exit(main())
