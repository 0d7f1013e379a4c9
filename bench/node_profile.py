"""
Profile echogate's data path: one node (one route, optionally with
plugins) under wrk load, sampled with py-spy when it is available
(C{--py-spy PATH}, or on the PATH; install it anywhere with C{pip install
py-spy}, it is not an echogate dependency), else run under C{twistd
--profile} (cProfile, which slows everything by about half: read its
figures as shares).

Run: C{.venv/bin/python bench/node_profile.py [--plugins header-echo | --stack realistic]
[--option=--upstream-client=agent] [--routes 10000] [--seconds 10]
[--path /100b] [--cprofile]}. Prints the functions with
the most samples, by their own time and with their callees.
"""
from __future__ import annotations

import argparse
import collections
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx
from bench.gateway import ECHO_HEADER, EchogateNode
from bench.loadgen import Load, LoadResult, run_load
from bench.processes import CoreLayout
from bench.stack import STACKS, add_stack


def _frame(entry: str) -> str:
    """
    C{function (path/to/file.py:line)} shortened to C{function (file.py)}.
    """
    name, _, where = entry.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summarize_collapsed(text: str, limit: int) -> str:
    """
    Self and inclusive sample shares per function from py-spy's
    collapsed stacks (C{frame;frame;... count} per line).
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # not a stack line (py-spy can split a frame name over lines)
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(limit)]
    out += ["", "with callees:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(limit * 2)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--plugins", default="", help="comma-separated plugins to put on the route")
    parser.add_argument("--stack", default="", choices=("", *STACKS),
                        help="a plugin stack of bench/stack.py on the route instead (its consumer and key too)")
    parser.add_argument("--option", action="append", default=[], dest="options",
                        help="an echogate option for the node, e.g. --option=--upstream-client=agent")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--path", default=nginx.PATHS["small"])
    parser.add_argument("--routes", type=int, default=1,
                        help="total routes (fillers the requests never match are added; see bench/routes.py)")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile even if py-spy is there")
    parser.add_argument("--py-spy", dest="py_spy", default=shutil.which("py-spy"), help="the py-spy program")
    parser.add_argument("--blocking", action="store_true",
                        help="let py-spy pause the node for each sample (whole stacks, slower node)")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--output", type=Path, help="keep the raw profile here")
    arguments = parser.parse_args()
    from tests.postgres import TemporaryServer, create_database

    sampler = None if arguments.cprofile else arguments.py_spy
    cores = CoreLayout.detect()
    cores.pin_self()
    directory = Path(tempfile.mkdtemp(prefix="echogate-profile-"))
    directory.chmod(0o755)
    raw = directory / ("stacks.txt" if sampler else "echogate.prof")
    options = [] if sampler else ["--profile", str(raw), "--profiler", "cprofile", "--savestats"]
    upstream, port = nginx.start_upstream(directory, cores.other)
    server = TemporaryServer()
    try:
        server.start()
        node = EchogateNode("profiled", Path(sys.executable).parent, create_database(True, server=server),
                            directory / "node", cores.proxy, twistd_options=options,
                            options=arguments.options)
        node.start()
        service = node.add_service("bench", port)
        route = node.add_route("bench", "bench", paths=["/"])
        node.add_filler_routes(service["id"], arguments.routes)
        node.wait_until_served(nginx.PATHS["small"])
        names = [n for n in arguments.plugins.split(",") if n]
        if names and node.add_plugins(route["id"], names, nginx.PATHS["small"], len(names)) != names:
            raise SystemExit(f"could not add every plugin of {names}")
        stack = STACKS.get(arguments.stack)
        if stack is not None:
            add_stack(node, route["id"], stack)
        headers = (ECHO_HEADER, *(stack.headers if stack is not None else ()))
        load = Load(f"http://127.0.0.1:{node.proxy_port}{arguments.path}", arguments.connections,
                    arguments.seconds, headers=tuple(f"{name}: {value}" for name, value in headers))
        run_load(Load(load.url, load.connections, 2, headers=load.headers), None, cores.other)
        results: list[LoadResult] = []
        loader = threading.Thread(target=lambda: results.append(run_load(load, node.process, cores.other)))
        loader.start()
        if sampler:
            subprocess.run([sampler, "record", "-p", str(node.process.pid), "-d",
                            str(max(1, int(arguments.seconds) - 2)), "-r", "200",
                            *([] if arguments.blocking else ["--nonblocking"]), "-f", "raw", "-o", str(raw)],
                           capture_output=True, check=True)
        loader.join()
        node.stop()
        result = results[0]
        print(f"{result.requests} requests in {result.seconds:.1f} s ({result.rps:,.0f} req/s)"
              f"{' under cProfile' if not sampler else ', sampled by py-spy'}\n")
        if sampler:
            print(summarize_collapsed(raw.read_text(), arguments.limit))
        else:
            out = io.StringIO()
            pstats.Stats(str(raw), stream=out).sort_stats("tottime").print_stats(arguments.limit)
            print(out.getvalue())
        if arguments.output:
            shutil.copy(raw, arguments.output)
    finally:
        upstream.stop()
        server.remove()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
