"""
The load generator: C{wrk} on 127.0.0.1, bounded in time (C{-d}), with
C{bench/wrk.lua} for POST bodies and a machine-readable summary, while
the server under test's peak RSS and CPU time are watched.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs

from bench.processes import BenchError, MemorySampler, Process

__all__ = ["Load", "LoadResult", "wrk_binary", "run_load", "parse_summary", "result_from"]

_SCRIPT = Path(__file__).with_name("wrk.lua")


@attrs.frozen
class Load:
    """
    One wrk run.

    @ivar url: what every request asks for (C{http://127.0.0.1:PORT/path}).
    @ivar connections: open connections, each with one request in flight.
    @ivar duration: seconds (wrk takes whole seconds; at least 1).
    @ivar post_bytes: a POST body of this size, or 0 for GET.
    @ivar headers: extra request headers, C{"Name: value"}.
    """

    url: str
    connections: int
    duration: float
    post_bytes: int = 0
    headers: tuple[str, ...] = ()
    threads: int = 1
    timeout: float = 10.0


@attrs.frozen
class LoadResult:
    """
    What one wrk run measured, plus the server's peak RSS (kB) and CPU
    use (seconds of CPU per second) during it.
    """

    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    peak_rss_kb: int
    cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {**attrs.asdict(self), "rps": self.rps}


def wrk_binary() -> str | None:
    """
    The wrk program, or C{None} when it is not installed.
    """
    return shutil.which("wrk")


def run_load(load: Load, server: Process | None, cpus: str | None) -> LoadResult:
    """
    Run C{load} with wrk (pinned to C{cpus}) against C{server}, resetting
    the server's peak RSS first and watching it throughout.

    @raise BenchError: wrk failed or printed no summary.
    """
    binary = wrk_binary()
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    argv: list[str] = (["taskset", "-c", cpus] if cpus else []) + [
        binary, "-t", str(load.threads), "-c", str(load.connections), "-d", f"{max(1, round(load.duration))}s",
        "--timeout", f"{load.timeout:g}s", "-s", str(_SCRIPT)]
    for header in load.headers:
        argv += ["-H", header]
    argv.append(load.url)
    env = {**os.environ, "BENCH_POST_BYTES": str(load.post_bytes)}
    reset = server.reset_peak() if server is not None else False
    cpu_before = server.cpu_seconds() if server is not None else 0.0
    # The kernel keeps each process's peak (VmHWM) once it has been reset;
    # sampling, which costs CPU the server could have used, is the fallback.
    sampler = MemorySampler(server) if server is not None and not reset else None
    try:
        with sampler if sampler is not None else contextlib.nullcontext():
            done = subprocess.run(argv, capture_output=True, text=True, env=env,
                                  timeout=load.duration + load.timeout + 60)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from e
    cpu = (server.cpu_seconds() - cpu_before) if server is not None else 0.0
    data = parse_summary(done.stdout)
    if done.returncode != 0 or data is None:
        raise BenchError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n"
                         f"{(done.stdout + done.stderr)[-2000:]}")
    peak = 0
    if server is not None:
        hwm = server.status().get("VmHWM", 0) if reset else 0
        peak = max(hwm, sampler.peak_kb if sampler is not None else 0)
    return result_from(data, peak, cpu)


def parse_summary(output: str) -> dict[str, Any] | None:
    """
    The summary C{bench/wrk.lua} prints (C{BENCH-RESULT {json}}), or
    C{None} when the output has none.
    """
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH-RESULT ")), None)
    return json.loads(line.split(" ", 1)[1]) if line is not None else None


def result_from(data: dict[str, Any], peak_rss_kb: int, cpu_seconds: float) -> LoadResult:
    """
    A L{LoadResult} from wrk's summary, the server's peak RSS and the CPU
    time it used meanwhile.
    """
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        requests=data["requests"],
        seconds=seconds,
        bytes=data["bytes"],
        errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]},
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        peak_rss_kb=peak_rss_kb,
        cpu=cpu_seconds / seconds if seconds else 0.0,
    )
