"""
A probe of the reactor thread for C{bench/reload_stall.py --probe}: put
on the C{PYTHONPATH} of a node (with C{ECHOGATE_BENCH_PROBE} naming a file),
it ticks every millisecond on the node's reactor and appends to that file a
line C{WALL-TIME GAP-MS CPU-MS} for each tick that came more than 2 ms of
the reactor thread's CPU time after the one before: what held the reactor
(a request's work, a slice of a compile, a garbage collection), measured in
CPU time, so that other processes taking the core do not count. Nothing
happens in a process other than C{twistd}, or without the variable.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

_OUT = os.environ.get("ECHOGATE_BENCH_PROBE")


def _install(reactor: Any, path: str) -> None:
    from twisted.internet.task import LoopingCall

    out = open(path, "a", buffering=1)
    last = [time.perf_counter(), time.thread_time()]

    def tick() -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        if cpu - last[1] > 0.002:
            out.write(f"{time.time():.4f} {1000 * (wall - last[0]):.2f} {1000 * (cpu - last[1]):.2f}\n")
        last[0], last[1] = wall, cpu

    LoopingCall(tick).start(0.001)


def _wait(path: str) -> None:
    while True:
        time.sleep(0.2)
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is not None and getattr(reactor, "running", False):
            reactor.callFromThread(_install, reactor, path)
            return


if _OUT and os.path.basename(sys.argv[0] if sys.argv else "") == "twistd":
    threading.Thread(target=_wait, args=(_OUT,), daemon=True, name="bench-probe").start()
