"""
Load balancing (issue 19): what an upstream with targets costs a node,
and how long a dead target costs requests, in one invocation.

Run: C{.venv/bin/python bench/balancing.py [--quick] [--rounds 3]
[--seconds 10] [--no-failover] [--no-throughput]}.

Throughput: one echogate node (pinned to the server core, on a fresh
database of a PostgreSQL server started on 127.0.0.1) proxies small-50
(GET, 100-byte answer, 50 connections; see C{bench/contenders.py}) to

 - C{plain}: a service whose url names one upstream nginx (the baseline),
 - C{round-robin}: an upstream with 4 targets (4 nginx processes,
   round-robin),
 - C{hashing}: the same 4 targets, consistent-hashing on C{X-User}, which
   wrk varies over 256 values.

wrk loads the three in turn, round after round (the order rotates), each
with the same Lua script (the header is sent to all three), and the
script prints req/s and the ratios round-robin / plain and hashing /
plain (medians of the per-round ratios).

Failover: a fourth upstream with 3 targets and active HTTP checks every
second (one failure of either kind makes an address unhealthy; passive
checks off). A paced client (200 requests a second over 8 keep-alive
connections) goes through the node for C{--failover-seconds}; one target
is killed (C{SIGKILL} to its nginx, by pid) after a third of that time.
It prints how many requests failed and when, from the kill, and when the
node's C{GET /upstreams/{u}/health} showed the target unhealthy.

Everything listens on 127.0.0.1, and only the processes started here are
stopped, by pid. Timings are reported, never asserted.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from bench import nginx, report, scripts
from bench.contenders import SCENARIOS
from bench.gateway import ECHO_HEADER, EchogateNode, fetch
from bench.loadgen import LoadResult, parse_summary, result_from, wrk_binary
from bench.processes import BenchError, CoreLayout, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, say

__all__ = ["Failover", "main"]

SCENARIO = SCENARIOS["small-50"]
PATH = nginx.PATHS[SCENARIO.kind]

#: The header the hashing upstream hashes on, and how many values wrk sends.
HASH_HEADER = "X-User"
HASH_KEYS = 256

#: The longest measurement the script allows (seconds), and the most rounds.
MAX_SECONDS = 10
MAX_ROUNDS = 10

#: The configurations measured, by the route prefix that reaches each.
CASES = ("plain", "round-robin", "hashing")

#: A target: a 100-byte answer to every GET, naming itself in a header.
_TARGET = """\
    server {{
        listen 127.0.0.1:{port} backlog=511;
        location / {{
            add_header X-Bench-Target {index};
            return 200 "{small}";
        }}
    }}
"""

#: The wrk script: the suite's (its summary line), plus one of
#: C{HASH_KEYS} values of the hash header on each request, in turn.
_LUA = """\
dofile("{suite_script}")
local requests = {{}}
local next_request = 0
function init(args)
  for i = 0, {keys} - 1 do
    wrk.headers["{header}"] = "user-" .. i
    requests[i] = wrk.format()
  end
end
function request()
  local r = requests[next_request]
  next_request = (next_request + 1) % {keys}
  return r
end
"""


def start_targets(directory: Path, count: int, name: str, cpus: str | None) -> list[tuple[Process, int]]:
    """
    Start C{count} nginx processes (one each, C{master_process off}: the
    failover run kills one), each
    answering every GET with the suite's 100 bytes and C{X-Bench-Target:
    N}.

    @return: each process and its port.
    """
    binary = nginx.nginx_binary()
    if binary is None:
        raise BenchError("nginx is not installed (apt-get install -y nginx)")
    small = nginx.SMALL_BODY.decode().replace("\n", "\\n")
    started = []
    for index in range(count):
        label = f"{name}-{index}"
        port = free_port()
        conf = directory / f"{label}.conf"
        body = _TARGET.format(port=port, index=index, small=small)
        conf.write_text(nginx._COMMON.format(dir=directory, name=label, body=body))
        process = Process(label, [binary, "-p", str(directory), "-c", str(conf), "-e",
                                  str(directory / f"{label}-error.log")],
                          directory / f"{label}.log", cpus=cpus, stop_signal=signal.SIGQUIT)
        process.start()
        process.wait_for_port(port)
        started.append((process, port))
    return started


def start_shared_targets(directory: Path, count: int, name: str,
                         cpus: str | None) -> list[tuple[Process, int]]:
    """
    Start one nginx process listening on C{count} ports (a server block
    each, answering as L{start_targets}' do): the issue's "the same
    nginx", so that the plain service and the balanced ones are served by
    the same process and the comparison measures the gateway, not how many
    nginx processes share the load generator's core.

    @return: the process and each port (the same process C{count} times).
    """
    binary = nginx.nginx_binary()
    if binary is None:
        raise BenchError("nginx is not installed (apt-get install -y nginx)")
    small = nginx.SMALL_BODY.decode().replace("\n", "\\n")
    ports = [free_port() for _ in range(count)]
    body = "".join(_TARGET.format(port=port, index=index, small=small) for index, port in enumerate(ports))
    conf = directory / f"{name}.conf"
    conf.write_text(nginx._COMMON.format(dir=directory, name=name, body=body))
    process = Process(name, [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / f"{name}-error.log")],
                      directory / f"{name}.log", cpus=cpus, stop_signal=signal.SIGQUIT)
    process.start()
    for port in ports:
        process.wait_for_port(port)
    return [(process, port) for port in ports]


def admin_json(node: EchogateNode, method: str, path: str, body: dict[str, Any]) -> Any:
    """
    One Admin API call with a JSON body (nested C{healthchecks} are
    simplest in JSON); the decoded answer.

    @raise BenchError: any answer but 2xx.
    """
    connection = http.client.HTTPConnection("127.0.0.1", node.api.port, timeout=60)
    try:
        connection.request(method, path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise BenchError(f"{method} {path} {body} answered {response.status}: {data.decode(errors='replace')}")
    return json.loads(data) if data else None


def add_balanced_service(node: EchogateNode, name: str, upstream: dict[str, Any],
                         ports: Sequence[int]) -> None:
    """
    C{POST /upstreams} (C{upstream}'s fields), a target of weight 100 for
    each port, a service C{name} on it and a route C{/name}; then wait
    until the node serves the route.
    """
    admin_json(node, "POST", "/upstreams", upstream)
    for port in ports:
        admin_json(node, "POST", f"/upstreams/{upstream['name']}/targets",
                   {"target": f"127.0.0.1:{port}", "weight": 100})
    admin_json(node, "POST", "/services", {"name": name, "url": f"http://{upstream['name']}"})
    node.add_route(name, name, paths=[f"/{name}"])
    node.wait_until_served(f"/{name}{PATH}")


def targets_reached(node: EchogateNode, prefix: str, requests: int, hashed: bool) -> dict[str, int]:
    """
    How C{requests} GETs of C{prefix} spread over the targets (by their
    C{X-Bench-Target}), with the hash header varied as wrk varies it.
    """
    connection = http.client.HTTPConnection("127.0.0.1", node.proxy_port, timeout=30)
    seen: dict[str, int] = {}
    try:
        for number in range(requests):
            headers = {HASH_HEADER: f"user-{number % HASH_KEYS}"} if hashed else {}
            status, answer, _ = fetch(node.proxy_port, prefix + PATH, headers, connection)
            key = answer.get("x-bench-target", "?") if status == 200 else f"status {status}"
            seen[key] = seen.get(key, 0) + 1
    finally:
        connection.close()
    return dict(sorted(seen.items()))


def run_wrk(url: str, seconds: int, script: Path, server: Process, cpus: str | None) -> LoadResult:
    """
    One small-50 wrk run of C{url} with C{script}, pinned to C{cpus},
    with the CPU that C{server} used meanwhile.

    @raise BenchError: wrk failed or printed no summary.
    """
    binary = wrk_binary()
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    argv = (["taskset", "-c", cpus] if cpus else []) + [
        binary, "-t", "1", "-c", str(SCENARIO.connections), "-d", f"{seconds}s", "--timeout", "10s",
        "-s", str(script), "-H", f"{ECHO_HEADER[0]}: {ECHO_HEADER[1]}", url]
    before = server.cpu_seconds()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 70)
    data = parse_summary(done.stdout)
    if done.returncode != 0 or data is None:
        raise BenchError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{(done.stdout + done.stderr)[-2000:]}")
    return result_from(data, server.status().get("VmRSS", 0), server.cpu_seconds() - before)


def measure_throughput(node: EchogateNode, script: Path, rounds: int, seconds: int, warmup: int,
                       cpus: str | None) -> dict[str, list[LoadResult]]:
    """
    Load each case in turn, C{rounds} times, the order rotating each
    round, after one warm-up run of each.
    """
    urls = {case: f"http://127.0.0.1:{node.proxy_port}/{case}{PATH}" for case in CASES}
    if warmup:
        for case in CASES:
            run_wrk(urls[case], warmup, script, node.process, cpus)
    results: dict[str, list[LoadResult]] = {case: [] for case in CASES}
    for number in range(rounds):
        for case in scripts.rotated(CASES, number):
            result = run_wrk(urls[case], seconds, script, node.process, cpus)
            results[case].append(result)
            say(scripts.round_text(number, case, 11, result))
    return results


def cpu_per_request(runs: Sequence[LoadResult]) -> float:
    """
    The node's CPU time per request (microseconds), the median over
    C{runs}: less moved than req/s when the machine's other work, not
    the node, limits a run (server CPU under 100%).
    """
    return statistics.median(r.cpu / r.rps * 1e6 if r.rps else 0.0 for r in runs)


@attrs.frozen
class Failover:
    """
    What L{measure_failover} saw, times in ms from the kill.

    @ivar requests: requests the client sent.
    @ivar failed_before: requests that failed before the kill.
    @ivar failed_after: requests that failed after it, and their
        statuses (0: no answer).
    @ivar last_failure_ms: when the last failed request after the kill
        was sent, and when it ended (C{None}: none failed).
    @ivar unhealthy_ms: when the node's health view first showed the
        target C{UNHEALTHY} (C{None}: not within the run).
    """

    requests: int
    rate: float
    failed_before: int
    failed_after: int
    statuses: dict[int, int]
    last_failure_ms: tuple[float, float] | None
    unhealthy_ms: float | None
    max_latency_after_ms: float
    p99_latency_after_ms: float


@attrs.frozen
class _Outcome:
    start: float
    end: float
    status: int


def _client(port: int, path: str, due: float, interval: float, deadline: float,
            outcomes: list[_Outcome]) -> None:
    """
    Send one GET every C{interval} seconds from C{due} until C{deadline}
    on a keep-alive connection (a new one after any error), each answer
    read whole; record every request in C{outcomes}.
    """
    connection: http.client.HTTPConnection | None = None
    while due < deadline:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        start = time.monotonic()
        status = 0
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            if connection is not None:
                connection.close()
            connection = None
        outcomes.append(_Outcome(start, time.monotonic(), status))
        due += interval
    if connection is not None:
        connection.close()


def _health(node: EchogateNode, upstream: str, port: int) -> str:
    status, _, body = fetch(node.api.port, f"/upstreams/{upstream}/health")
    if status != 200:
        return f"status {status}"
    for target in json.loads(body)["data"]:
        if target["target"] == f"127.0.0.1:{port}":
            return str(target["health"])
    return "absent"


def measure_failover(node: EchogateNode, directory: Path, cpus: str | None, seconds: float,
                     rate: float = 200.0, connections: int = 8) -> Failover:
    """
    Three targets with active HTTP checks every second; a client at
    C{rate} requests a second for C{seconds}; one target killed
    (C{SIGKILL}, by pid) after a third of that time.
    """
    targets = start_targets(directory, 3, "failover-target", cpus)
    upstream = "failover.bench"
    add_balanced_service(node, "failover", {
        "name": upstream,
        "healthchecks": {
            "active": {"type": "http", "http_path": "/health", "timeout": 1, "concurrency": 10,
                       "healthy": {"interval": 1, "successes": 1},
                       "unhealthy": {"interval": 1, "tcp_failures": 1, "http_failures": 1, "timeouts": 1}},
            "passive": {"healthy": {"successes": 0},
                        "unhealthy": {"tcp_failures": 0, "http_failures": 0, "timeouts": 0}},
        }}, [port for _, port in targets])
    victim, victim_port = targets[0]
    deadline = time.monotonic() + 5
    while _health(node, upstream, victim_port) != "HEALTHY":
        if time.monotonic() > deadline:
            raise BenchError(f"the failover targets are not healthy: {_health(node, upstream, victim_port)}")
        time.sleep(0.05)
    outcomes: list[_Outcome] = []
    interval = connections / rate
    begin = time.monotonic() + 0.1
    end = begin + seconds
    threads = [threading.Thread(target=_client, daemon=True,
                                args=(node.proxy_port, "/failover" + PATH, begin + n * interval / connections,
                                      interval, end, outcomes))
               for n in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, begin + seconds / 3 - time.monotonic()))
    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    unhealthy: float | None = None
    while time.monotonic() < end:
        if unhealthy is None and _health(node, upstream, victim_port) == "UNHEALTHY":
            unhealthy = time.monotonic()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
    victim.stop()
    after = [o for o in outcomes if o.start >= killed]
    failed = [o for o in after if o.status != 200]
    statuses: dict[int, int] = {}
    for outcome in failed:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    last = max(failed, key=lambda o: o.start, default=None)
    latencies = sorted((o.end - o.start) * 1000 for o in after) or [0.0]
    return Failover(
        requests=len(outcomes),
        rate=len(outcomes) / seconds,
        failed_before=sum(1 for o in outcomes if o.start < killed and o.status != 200),
        failed_after=len(failed),
        statuses=statuses,
        last_failure_ms=((last.start - killed) * 1000, (last.end - killed) * 1000) if last else None,
        unhealthy_ms=(unhealthy - killed) * 1000 if unhealthy is not None else None,
        max_latency_after_ms=latencies[-1],
        p99_latency_after_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def failover_text(found: Failover, seconds: float) -> str:
    """
    The failover figures, as the lines the script prints.
    """
    last = ("none failed" if found.last_failure_ms is None else
            f"the last failed request was sent {found.last_failure_ms[0]:.0f} ms after the kill "
            f"(it ended at {found.last_failure_ms[1]:.0f} ms)")
    unhealthy = ("not within the run" if found.unhealthy_ms is None
                 else f"{found.unhealthy_ms:.0f} ms after the kill")
    return "\n".join([
        f"failover: {found.requests} requests in {seconds:g} s ({found.rate:.0f}/s), one of 3 targets "
        f"killed at {seconds / 3:.1f} s",
        f"  failed after the kill: {found.failed_after}"
        + (f" (statuses {found.statuses}; 0 = no answer)" if found.statuses else "")
        + f"; before it: {found.failed_before}",
        f"  {last}",
        f"  the node's health view showed the target UNHEALTHY {unhealthy}",
        f"  latency after the kill: p99 {found.p99_latency_after_ms:.1f} ms, max {found.max_latency_after_ms:.1f} ms",
    ])


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-ups, 6 s of failover")
    parser.add_argument("--rounds", type=int, help="rounds of the three loads (default 3, 2 with --quick)")
    parser.add_argument("--seconds", type=int, help=f"seconds per load, at most {MAX_SECONDS} "
                        "(default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up load per case (default 2, 1 with --quick)")
    parser.add_argument("--failover-seconds", type=float,
                        help=f"length of the failover run, at most {MAX_SECONDS} (default 10, 6 with --quick)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput comparison")
    parser.add_argument("--no-failover", action="store_true", help="skip the failover measurement")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    arguments = parser.parse_args(argv)
    scripts.fill_defaults(
        arguments, (("rounds", 3, 2), ("seconds", 10, 3), ("warmup", 2, 1), ("failover_seconds", 10.0, 6.0)))
    scripts.check_ranges(
        parser, arguments, ((("seconds", "failover_seconds"), 1, MAX_SECONDS), ("rounds", 1, MAX_ROUNDS),
            ("warmup", 0, MAX_SECONDS)))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    stop_on_terminate()
    arguments = parse_arguments(argv)
    from tests.postgres import TemporaryServer, create_database

    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe())
    with WorkDirectory("echogate-balancing-", arguments.keep, mode=0o755) as work:
        directory = work.path
        server = TemporaryServer()
        work.stop_also(server.stop)
        targets = start_shared_targets(directory, 4, "target", cores.other)
        ports = [port for _, port in targets]
        say(f"4 upstream nginx processes on 127.0.0.1:{', '.join(map(str, ports))}")
        server.start()
        node = EchogateNode("echogate", Path(sys.executable).parent, create_database(True, server=server),
                            directory / "node", cores.proxy).start()
        node.add_service("plain", ports[0])
        node.add_route("plain", "plain", paths=["/plain"])
        node.wait_until_served(f"/plain{PATH}")
        add_balanced_service(node, "round-robin", {"name": "rr.bench", "algorithm": "round-robin"}, ports)
        add_balanced_service(node, "hashing", {"name": "hash.bench", "algorithm": "consistent-hashing",
                                               "hash_on": "header", "hash_on_header": HASH_HEADER}, ports)
        if not arguments.no_throughput:
            for case in CASES:
                say(f"{case:>11}: 1,000 requests reach the targets "
                    f"{targets_reached(node, '/' + case, 1000, case == 'hashing')}")
            script = directory / "balancing.lua"
            script.write_text(_LUA.format(suite_script=Path(__file__).with_name("wrk.lua"), keys=HASH_KEYS,
                                          header=HASH_HEADER))
            say(f"small-50 ({SCENARIO.description}), {arguments.rounds} round(s) of {arguments.seconds} s, "
                f"node pinned to core {cores.proxy}, wrk and nginx on {cores.other}")
            results = measure_throughput(node, script, arguments.rounds, arguments.seconds, arguments.warmup,
                                         cores.other)
            summaries = {case: report.summarize(runs) for case, runs in results.items()}
            say("")
            for case in CASES:
                s = summaries[case]
                say(scripts.summary_text(case, 11, s) + f"  p99 {s.p99_ms:.2f} ms  "
                    f"server CPU {cpu_per_request(results[case]):.0f} us/request  errors {s.errors}")
            for case, goal in (("round-robin", 0.95), ("hashing", 0.9)):
                value, each = report.ratio(summaries[case], summaries["plain"])
                say(scripts.ratio_text(f"{case} / plain", value, each, f"; goal >= {goal}"))
        if not arguments.no_failover:
            say("")
            found = measure_failover(node, directory, cores.other, arguments.failover_seconds)
            say(failover_text(found, arguments.failover_seconds))
        say(scripts.load_average())
    return work.status


if __name__ == "__main__":
    sys.exit(main())
