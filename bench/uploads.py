"""
Uploads (issue 21): request bodies through a node buffered (a route's
C{request_buffering} true, the default: the body is read whole, in
memory up to 100 KB, else in a temporary file, then sent) beside streamed
(C{request_buffering: false}: sent on as it arrives), in one invocation.

Run: C{.venv/bin/python bench/uploads.py [--quick] [--rounds 3]
[--count 20] [--size-mb 50] [--concurrency 4] [--keep]}.

The upstream is a sink (this script with C{--serve-sink PORT}, its own
process): a threaded HTTP/1.1 server that reads each body (Content-Length
or chunked, at most L{MAX_BODY} bytes), discards it and answers 200 with
the number of bytes it read. One DB-less echogate node (pinned to the
server core; C{database = off}, a declarative file with one service to
the sink and the routes C{/buffered} and C{/streamed}; its C{TMPDIR} a
directory of the run's own) proxies to it. This harness (on the other
core(s), with the sink) makes C{--count} C{POST}s of C{--size-mb} MB
each (Content-Length, sent in 1 MiB writes), C{--concurrency} at a time,
to each route in turn, round after round (the order rotating), and checks
that the sink read every byte.

For each mode it prints the aggregate MB/s (all bytes over the wall
time), the median MB/s of one upload, the node's CPU use, its peak RSS
(C{VmHWM} after a reset, else C{VmRSS} sampled) and what it wrote to
files: bytes (C{write_bytes} of C{/proc/PID/io}) and the temporary files
seen open in its C{TMPDIR} (C{/proc/PID/fd}, sampled); then the ratio
streamed / buffered (the median of the per-round ratios).

Everything listens on 127.0.0.1, every run is bounded in time and count,
and only the processes started here are stopped, by pid. Figures are
reported, never asserted.
"""
from __future__ import annotations

import argparse
import http.client
import http.server
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from bench.gateway import EchogateNode
from bench.processes import BenchError, CoreLayout, MemorySampler, Process, free_port, stop_on_terminate
from bench.scripts import WorkDirectory, check_ranges, fill_defaults, load_average, ratio_text, rotated, say

__all__ = ["Mode", "TempFileWatcher", "Upload", "main", "parse_arguments", "read_chunked", "summarize_mode"]

#: The bounds: rounds, uploads per round and mode, MB per upload, uploads
#: at once, and the largest body the sink reads.
MAX_ROUNDS = 5
MAX_COUNT = 100
MAX_SIZE_MB = 200
MAX_CONCURRENCY = 16
MAX_BODY = MAX_SIZE_MB * 1024 * 1024

#: Seconds a socket may wait on the other side before an upload fails.
SOCKET_TIMEOUT = 60

#: The modes, in their first round's order, and the route path of each.
MODES = ("buffered", "streamed")

CHUNK = 1024 * 1024
MB = 1024 * 1024

ROOT = Path(__file__).resolve().parent.parent


def read_chunked(stream: "_Reader", limit: int, buffer: memoryview) -> int:
    """
    Read a chunked body from C{stream} to its end (trailers included),
    discarding it.

    @return: the body's length.
    @raise ValueError: a malformed chunk, or more than C{limit} bytes.
    """
    total = 0
    while True:
        line = stream.readline(1024)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return total
        total += size
        if total > limit:
            raise ValueError(f"body over {limit} bytes")
        _discard(stream, size, buffer)
        if stream.readline(1024) not in (b"\r\n", b"\n"):
            raise ValueError("no CRLF after a chunk")


class _Reader(Protocol):
    """
    What L{read_chunked} reads from (a buffered binary file).
    """

    def readline(self, limit: int) -> bytes: ...

    def readinto(self, buffer: memoryview) -> int | None: ...


def _discard(stream: "_Reader", size: int, buffer: memoryview) -> None:
    while size:
        got = stream.readinto(buffer[:min(size, len(buffer))])
        if not got:
            raise ValueError("the body ended early")
        size -= got


class _Sink(http.server.BaseHTTPRequestHandler):
    """
    Reads a request's body, discards it, answers 200 with its length.
    """

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT

    def do_POST(self) -> None:
        buffer = memoryview(bytearray(CHUNK))
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                total = read_chunked(self.rfile, MAX_BODY, buffer)
            else:
                total = int(self.headers.get("Content-Length", "0"))
                if total > MAX_BODY:
                    raise ValueError(f"body over {MAX_BODY} bytes")
                _discard(self.rfile, total, buffer)
        except ValueError as e:
            self.send_error(400, str(e))
            self.close_connection = True
            return
        body = str(total).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_sink(port: int) -> None:
    """
    Run the sink on 127.0.0.1:C{port} until the process is stopped.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Sink)
    server.daemon_threads = True
    say(f"sink listening on 127.0.0.1:{port}")
    server.serve_forever()


@attrs.frozen
class Upload:
    """
    One upload: its bytes and seconds (from connecting to the answer's
    end), and an error (C{None} when the sink read every byte).
    """

    bytes: int
    seconds: float
    error: str | None = None

    @property
    def mb_per_second(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds else 0.0


def upload(port: int, path: str, size: int) -> Upload:
    """
    C{POST} C{size} bytes (Content-Length, 1 MiB writes) to
    127.0.0.1:C{port}C{path}; the sink's answer must be their count.
    """
    block = memoryview(b"u" * CHUNK)
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", str(size))
        connection.putheader("Content-Type", "application/octet-stream")
        connection.endheaders()
        left = size
        while left:
            piece = block[:min(left, CHUNK)]
            connection.send(piece)
            left -= len(piece)
        response = connection.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as e:
        return Upload(size, time.perf_counter() - started, f"{type(e).__name__}: {e}")
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    if response.status != 200 or answer != str(size).encode():
        return Upload(size, seconds, f"{response.status} {answer[:200]!r}")
    return Upload(size, seconds)


class TempFileWatcher:
    """
    Samples, in a thread, the files a process has open under a directory
    (its C{TMPDIR}: a temporary file is unlinked at once, but stays in
    C{/proc/PID/fd}), and reads the bytes it wrote to files
    (C{write_bytes} of C{/proc/PID/io}: counted when a page is dirtied,
    so sockets are not counted) before and after.
    """

    def __init__(self, pid: int, directory: Path, interval: float = 0.02):
        self._pid = pid
        self._prefix = str(directory) + "/"
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: set[str] = set()
        self.largest = 0
        self._written_before = 0
        self.written = 0

    @property
    def files(self) -> int:
        """
        The distinct temporary files seen open (by their C{/proc} link,
        which names the inode: a file open on two descriptors counts
        once; a later file given a freed inode number is not counted).
        """
        return len(self._seen)

    def written_bytes(self) -> int:
        try:
            for line in Path(f"/proc/{self._pid}/io").read_text().splitlines():
                name, _, value = line.partition(":")
                if name == "write_bytes":
                    return int(value)
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        fds = Path(f"/proc/{self._pid}/fd")
        try:
            entries = os.listdir(fds)
        except OSError:
            return
        for fd in entries:
            try:
                target = os.readlink(fds / fd)
                if not target.startswith(self._prefix):
                    continue
                size = os.stat(fds / fd).st_size
            except OSError:
                continue
            self._seen.add(target)
            self.largest = max(self.largest, size)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> "TempFileWatcher":
        self._written_before = self.written_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.written = self.written_bytes() - self._written_before


@attrs.frozen
class Mode:
    """
    One mode's run: its uploads, the wall time, the node's CPU seconds,
    peak RSS (kB), bytes written to files and temporary files seen (and
    the largest's size).
    """

    uploads: tuple[Upload, ...]
    seconds: float
    cpu_seconds: float
    peak_rss_kb: int
    written: int
    temp_files: int
    largest_temp: int

    @property
    def mb_per_second(self) -> float:
        """
        All the bytes over the wall time.
        """
        return sum(u.bytes for u in self.uploads) / MB / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> list[str]:
        return [u.error for u in self.uploads if u.error is not None]


def run_mode(node: EchogateNode, tmpdir: Path, mode: str, count: int, size: int, concurrency: int) -> Mode:
    """
    C{count} uploads of C{size} bytes to the node's C{/MODE}, C{concurrency}
    at a time, watching the node's memory, CPU and temporary files.
    """
    process = node.process
    exact = process.reset_peak()
    before = process.cpu_seconds()
    with MemorySampler(process) as sampler, TempFileWatcher(process.pid, tmpdir) as watcher:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            uploads = tuple(pool.map(lambda _: upload(node.proxy_port, f"/{mode}", size), range(count)))
        seconds = time.perf_counter() - started
    cpu = process.cpu_seconds() - before
    peak = process.status().get("VmHWM", 0) if exact else sampler.peak_kb
    return Mode(uploads, seconds, cpu, peak, watcher.written, watcher.files, watcher.largest)


def summarize_mode(name: str, runs: Sequence[Mode]) -> str:
    """
    One line for a mode over its rounds: medians of the aggregate and of
    each upload's MB/s, CPU, the highest peak RSS, the most written to
    files.
    """
    each = [u.mb_per_second for run in runs for u in run.uploads if u.error is None]
    errors = sum(len(run.errors) for run in runs)
    cpu = statistics.median(run.cpu_seconds / run.seconds if run.seconds else 0.0 for run in runs)
    written = max(run.written for run in runs)
    files = max(run.temp_files for run in runs)
    largest = max(run.largest_temp for run in runs)
    return (f"{name:>8}: {statistics.median(r.mb_per_second for r in runs):8,.1f} MB/s (median; runs "
            f"{', '.join(f'{r.mb_per_second:,.1f}' for r in runs)})  one upload {statistics.median(each or [0.0]):,.1f}"
            f" MB/s (median)  node CPU {cpu:.0%}  peak RSS {max(r.peak_rss_kb for r in runs) / 1024:,.1f} MB  "
            f"written to files {written / MB:,.1f} MB  temporary files {files}"
            + (f" (largest {largest / MB:,.1f} MB)" if files else "") + f"  errors {errors}")


def start_sink(directory: Path, cpus: str | None) -> tuple[Process, int]:
    """
    Start the sink (this script, C{--serve-sink}) on a free port.
    """
    port = free_port()
    process = Process("sink", [sys.executable, str(Path(__file__).resolve()), "--serve-sink", str(port)],
                      directory / "sink.log", cpus=cpus, cwd=ROOT).start()
    process.wait_for_port(port)
    return process, port


def start_node(directory: Path, sink_port: int, tmpdir: Path, cpus: str | None) -> EchogateNode:
    """
    Start a DB-less node (its C{TMPDIR} C{tmpdir}) whose declarative file
    has one service (the sink) and the routes C{/buffered} and
    C{/streamed}.
    """
    config = directory / "kong.yml"
    config.write_text(f'_format_version: "3.0"\nservices:\n- name: sink\n  url: http://127.0.0.1:{sink_port}\n'
                      "  routes:\n  - name: buffered\n    paths: [/buffered]\n    strip_path: false\n"
                      "  - name: streamed\n    paths: [/streamed]\n    strip_path: false\n"
                      "    request_buffering: false\n")
    return EchogateNode("echogate", Path(sys.executable).parent, "off", directory / "node", cpus,
                        env={**os.environ, "TMPDIR": str(tmpdir)},
                        options=("--declarative-config", str(config))).start()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 uploads of 50 MB per mode")
    parser.add_argument("--rounds", type=int, help=f"rounds of the two modes, at most {MAX_ROUNDS} "
                        "(default 3, 2 with --quick)")
    parser.add_argument("--count", type=int, help=f"uploads per mode and round, at most {MAX_COUNT} "
                        "(default 20, 10 with --quick)")
    parser.add_argument("--size-mb", type=int, default=50, help=f"MB (MiB) per upload, at most {MAX_SIZE_MB} "
                        "(default 50)")
    parser.add_argument("--concurrency", type=int, default=4, help=f"uploads at once, at most {MAX_CONCURRENCY} "
                        "(default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    fill_defaults(arguments, (("rounds", 3, 2), ("count", 20, 10)))
    check_ranges(parser, arguments, (("rounds", 1, MAX_ROUNDS), ("count", 1, MAX_COUNT),
                                     ("size_mb", 1, MAX_SIZE_MB), ("concurrency", 1, MAX_CONCURRENCY)))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve_sink is not None:
        serve_sink(arguments.serve_sink)
        return 0
    stop_on_terminate()
    cores = CoreLayout.detect()
    cores.pin_self()
    say(cores.describe().replace("wrk, upstream nginx, PostgreSQL", "the uploading client, the sink"))
    with WorkDirectory("echogate-uploads-", arguments.keep) as work:
        directory = work.path
        tmpdir = directory / "tmp"
        tmpdir.mkdir()
        size = arguments.size_mb * MB
        _, sink_port = start_sink(directory, cores.other)
        node = start_node(directory, sink_port, tmpdir, cores.proxy)
        for mode in MODES:
            probe = upload(node.proxy_port, f"/{mode}", 1000)
            if probe.error is not None:
                raise BenchError(f"/{mode} through the node: {probe.error}")
        say(f"sink on 127.0.0.1:{sink_port}; echogate on {node.proxy_port} (DB-less), TMPDIR {tmpdir}")
        say(f"{arguments.count} uploads of {arguments.size_mb} MB per mode and round, {arguments.concurrency} at "
            f"once; {arguments.rounds} round(s)")
        results: dict[str, list[Mode]] = {mode: [] for mode in MODES}
        for number in range(arguments.rounds):
            for mode in rotated(MODES, number):
                found = run_mode(node, tmpdir, mode, arguments.count, size, arguments.concurrency)
                results[mode].append(found)
                say(f"round {number + 1}  {mode:>8}: {found.mb_per_second:8,.1f} MB/s in {found.seconds:.1f} s  "
                    f"peak RSS {found.peak_rss_kb / 1024:,.1f} MB  written {found.written / MB:,.1f} MB  "
                    f"temporary files {found.temp_files}" + (f"  errors {found.errors[:3]}" if found.errors else ""))
        say("")
        for mode in MODES:
            say(summarize_mode(mode, results[mode]))
        each = [s.mb_per_second / b.mb_per_second if b.mb_per_second else 0.0
                for s, b in zip(results["streamed"], results["buffered"])]
        say(ratio_text("streamed / buffered", statistics.median(each), each))
        say(load_average())
    return work.status


if __name__ == "__main__":
    sys.exit(main())
