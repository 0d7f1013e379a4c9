"""
The processes a benchmark starts: pinned to a core with C{taskset},
logging to a file, watched through C{/proc}, and stopped by their own
process id (never by name).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs

__all__ = ["BenchError", "CoreLayout", "Process", "MemorySampler", "free_port", "stop_all",
           "stop_on_terminate"]


class BenchError(Exception):
    """
    Something the benchmark needs did not work; the message says what.
    """


@attrs.frozen
class CoreLayout:
    """
    Which cores run what: the server under test on C{proxy}, everything
    else (load generator, upstream, PostgreSQL, this harness) on C{other}.
    Both C{None} when there is nothing to pin (one core, or no
    C{taskset}).
    """

    proxy: str | None
    other: str | None
    #: Every core: for what runs on all of them (as children of this
    #: harness, which is pinned to C{other}, they would not otherwise).
    every: str | None = None

    @classmethod
    def detect(cls) -> "CoreLayout":
        """
        The last available core for the server under test, the others
        for the rest.
        """
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or shutil.which("taskset") is None:
            return cls(proxy=None, other=None)
        return cls(proxy=str(cores[-1]), other=",".join(str(c) for c in cores[:-1]),
                   every=",".join(str(c) for c in cores))

    def describe(self) -> str:
        """
        One line for the report.
        """
        if self.proxy is None:
            return "no CPU pinning (fewer than 2 cores or no taskset)"
        return (f"server under test pinned to core {self.proxy}; wrk, upstream nginx, PostgreSQL"
                f" and this harness on core(s) {self.other} (taskset)")

    def pin_self(self) -> None:
        """
        Move this harness (and whatever it starts without a pin) off the
        server's core.
        """
        if self.other is not None:
            os.sched_setaffinity(0, {int(c) for c in self.other.split(",")})


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now (for
    servers, like nginx, that cannot listen on port 0 and report it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_started: list["Process"] = []


def stop_all() -> None:
    """
    Stop every process this harness started that still runs.
    """
    for process in reversed(_started):
        process.stop()


atexit.register(stop_all)


def stop_on_terminate() -> None:
    """
    SIGTERM (or SIGHUP) ends the run like Ctrl-C: through the C{finally}
    that stops every process the run started, by pid.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


class Process:
    """
    One child process: started (optionally under C{taskset -c CPUS}, which
    execs, so the pid is the program's own) with its output in C{log}.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, *, cpus: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.name = name
        self.argv = (["taskset", "-c", cpus] if cpus is not None else []) + list(argv)
        self.log = log
        self.cpus = cpus
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None
        #: Account for the whole process tree (RSS, CPU), not the process alone.
        self.tree = False

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise BenchError(f"{self.name} is not running")
        return self._popen.pid

    def start(self) -> "Process":
        """
        Start the program (its own session, so a Ctrl-C at the terminal
        reaches only the harness, which then stops it).
        """
        with open(self.log, "wb") as out:
            self._popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=self._env, cwd=self._cwd,
                                           start_new_session=True)
        _started.append(self)
        return self

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """
        Wait until the log matches C{pattern} (a regular expression).

        @raise BenchError: the process exited or the time ran out first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_tail(1_000_000))
            if match:
                return match
            if not self.running():
                raise BenchError(f"{self.name} exited before it was ready; its log ends:\n"
                                 f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} was not ready after {timeout:.0f}s; its log ends:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.05)

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        """
        Wait until 127.0.0.1:C{port} accepts connections.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                pass
            if not self.running():
                raise BenchError(f"{self.name} exited before listening; its log ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not listen on {port} after {timeout:.0f}s")
            time.sleep(0.05)

    def family(self) -> list[int]:
        """
        This process and every process it started, still running (found
        through C{/proc}: the parent of each): an echogate with
        C{--workers} is several processes.
        """
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        return found

    def pids(self) -> list[int]:
        """
        The processes accounted for: the tree when C{tree} is set (a walk
        of all of C{/proc}), else this one.
        """
        return self.family() if self.tree else [self.pid]

    def status(self, pids: list[int] | None = None) -> dict[str, int]:
        """
        The C{/proc/PID/status} memory fields, in kB (C{VmRSS}, C{VmHWM}),
        summed over the process tree when C{tree} is set (or over C{pids}).
        """
        fields: dict[str, int] = {}
        for pid in self.pids() if pids is None else pids:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = fields.get(name, 0) + int(value.split()[0])
        return fields

    def reset_peak(self) -> bool:
        """
        Reset the peak RSS (C{VmHWM}) to the current RSS, so the next
        reading is the peak of what follows. Returns whether the kernel
        allowed it.
        """
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """
        The user and system CPU time used (by the process tree when
        C{tree} is set, by the processes still running).
        """
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 20.0) -> None:
        """
        Stop the process (its stop signal, then C{SIGKILL} after
        C{timeout}) and wait for it.
        """
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            popen.send_signal(self._stop_signal)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        if self in _started:
            _started.remove(self)


class MemorySampler:
    """
    Samples a process's RSS every C{interval} seconds in a thread, as a
    fallback for kernels that do not let us reset C{VmHWM}. The process
    tree is walked once, when sampling starts, not at every sample: a walk
    reads every process's C{/proc} entry, and twenty walks a second took
    CPU from the processes being measured.
    """

    def __init__(self, process: Process, interval: float = 0.05):
        self._process = process
        self._pids: list[int] | None = None
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_kb = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._process.status(self._pids).get("VmRSS", 0))
            self._stop.wait(self._interval)

    def __enter__(self) -> "MemorySampler":
        self._pids = self._process.pids()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._process.status(self._pids).get("VmRSS", 0))
