"""
echogate's benchmark suite, in one command:

    .venv/bin/python bench/run.py            # everything: 3 runs of 10 s each, medians
    .venv/bin/python bench/run.py --quick    # one 2 s run of each, under 3 minutes

It starts nginx as the upstream and every contender on 127.0.0.1, pins
the server under test to one core and everything else to the other,
loads each contender in turn with wrk (round-robin, so that a burst of
other work on the machine does not land on one contender only), then
measures multi-node propagation, and prints the tables and the issue's
targets as ratios measured in this run. The same report goes to
C{bench/results/}. See C{docs/performance.md}.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx, propagation, pypy, report
from bench.contenders import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    PYPY_CONTENDERS,
    SCENARIOS,
    Bench,
    Contender,
    Running,
    Runtime,
    describe_runtime,
)
from bench.gateway import BACKLOG, ECHO_HEADER
from bench.loadgen import Load, LoadResult, run_load, wrk_binary
from bench.processes import BenchError, CoreLayout, stop_all, stop_on_terminate

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "echogate-bench"
PACKAGES = ("wrk", "nginx", "pypy3", "pypy3-dev", "libpq-dev")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run echogate's benchmark suite (see docs/performance.md).")
    parser.add_argument("--quick", action="store_true",
                        help="one 2 s run per measurement, one short warm-up per contender, "
                        "20 propagation changes (under 3 minutes)")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                        help=f"comma-separated, from: {', '.join(CONTENDERS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, help="measurements of each contender in each scenario "
                        "(medians are reported; default 3, 1 with --quick)")
    parser.add_argument("--duration", type=int, help="seconds per measurement (default 10, 2 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of load before each measurement of a "
                        "Python contender (default 2, 1 with --quick; 0 for none)")
    parser.add_argument("--warm-once", action="store_true", default=None,
                        help="warm each Python contender up before its first measurement only "
                        "(default with --quick)")
    parser.add_argument("--pypy", choices=("auto", "off"), default="auto",
                        help="also run the Twisted contenders under pypy3 when it is installed (default auto)")
    parser.add_argument("--pypy-scenarios", help="the scenarios PyPy contenders take part in "
                        "(default all, small-50,large-50 with --quick)")
    parser.add_argument("--pypy-warmup", type=int,
                        help="seconds of load before a PyPy contender's first measurement in each "
                        "scenario, for the JIT (default 10, 2 with --quick)")
    parser.add_argument("--pypy-venv", type=Path, default=CACHE / "pypy-venv",
                        help="where the PyPy virtualenv lives (made on first use)")
    parser.add_argument("--pypy-root", type=Path, default=CACHE / "pypy-root",
                        help="a Debian 13 root with a PyPy for Python 3.11, used when the machine's pypy3 "
                        "is older (made by bench/pypy_root.sh on first use, when run as root)")
    parser.add_argument("--propagation-changes", type=int,
                        help="route changes in the propagation test (default 50, 20 with --quick; 0 skips it)")
    parser.add_argument("--no-install", action="store_true",
                        help=f"do not apt-get install missing tools ({', '.join(PACKAGES)})")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    for name, full, short in (("runs", 3, 1), ("duration", 10, 2), ("warmup", 2, 1), ("pypy_warmup", 10, 2),
                              ("propagation_changes", 50, 20), ("warm_once", False, True),
                              ("pypy_scenarios", ",".join(SCENARIOS), "small-50,large-50")):
        if getattr(arguments, name) is None:
            setattr(arguments, name, short if quick else full)
    arguments.contenders = _choices(arguments.contenders, CONTENDERS, "contender", parser)
    arguments.scenarios = _choices(arguments.scenarios, SCENARIOS, "scenario", parser)
    arguments.pypy_scenarios = _choices(arguments.pypy_scenarios, SCENARIOS, "scenario", parser)
    return arguments


def _choices(text: str, known: dict[str, Any], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown {what}(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def say(text: str) -> None:
    print(text, flush=True)


def ensure_tools(install: bool) -> None:
    """
    Install wrk and nginx (and pypy3, for the PyPy runs) from Debian's
    packages when they are missing and we may.
    """
    missing = [p for p in PACKAGES if not _installed(p)]
    if not missing:
        return
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        if wrk_binary() is None:
            raise BenchError(f"wrk is missing; install it: apt-get install -y {' '.join(PACKAGES)}")
        say(f"not installing {', '.join(missing)} (the runs that need them are skipped)")
        return
    say(f"installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            say(f"apt-get install failed: {done.stderr.strip()[-500:]}")


def _installed(package: str) -> bool:
    program = {"wrk": "wrk", "nginx": "nginx", "pypy3": "pypy3"}.get(package)
    if program is not None:
        return (shutil.which(program) or (nginx.nginx_binary() if program == "nginx" else None)) is not None
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in done.stdout


def environment(cores: CoreLayout) -> dict[str, Any]:
    """
    The machine and the software, for the report.
    """
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    memory = Path("/proc/meminfo").read_text().split()[1] if Path("/proc/meminfo").exists() else "0"
    nginx_version = subprocess.run([nginx.nginx_binary() or "false", "-v"], capture_output=True,
                                   text=True).stderr.strip()
    wrk_version = subprocess.run([wrk_binary() or "false", "-v"], capture_output=True,
                                 text=True).stdout.split()[:2]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": f"{os.cpu_count()} × {model}",
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "pinning": cores.describe(),
        "nginx": nginx_version.replace("nginx version: ", ""),
        "wrk": " ".join(wrk_version),
        "load_average_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def probe(running: Running, scenario_kind: str, label: str) -> None:
    """
    Check once that the contender gives the upstream's answer for this
    kind of request (and, with header-echo, echoes), before loading it.
    """
    path = running.prefix + nginx.PATHS[scenario_kind]
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    try:
        headers = dict([ECHO_HEADER, *running.headers])
        body = b"a" * (64 * 1024) if scenario_kind == "post" else None
        connection.request("POST" if body else "GET", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    size = nginx.LARGE_SIZE if scenario_kind == "large" else len(nginx.SMALL_BODY)
    if response.status != 200 or len(data) != size:
        raise BenchError(f"{label} answers {path} with {response.status} and {len(data)} bytes "
                         f"(expected 200 and {size}): {data[:200]!r}")
    if "header-echo" in label and response.getheader("X-Response-Echo") != ECHO_HEADER[1]:
        raise BenchError(f"{label} does not echo {ECHO_HEADER[0]}")


class Suite:
    """
    One invocation: the contenders started, measured round-robin, and
    their results.
    """

    def __init__(self, arguments: argparse.Namespace, cores: CoreLayout, directory: Path):
        self.arguments = arguments
        self.cores = cores
        self.directory = directory
        self.results: dict[tuple[str, str], list[LoadResult]] = {}
        self.notes: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}
        self.instances: list[tuple[str, Contender, Runtime]] = []
        self.running: dict[str, Running] = {}
        self.pypy_label: str | None = None
        self.pypy_why = ""
        self.runtimes: list[str] = []
        self._server: Any = None

    def database(self) -> str:
        """
        A fresh migrated database on the suite's PostgreSQL server
        (started on first use, on 127.0.0.1).
        """
        from tests.postgres import TemporaryServer, create_database

        if self._server is None:
            say("starting PostgreSQL on 127.0.0.1")
            self._server = TemporaryServer()
            self._server.start()
        return create_database(True, server=self._server)

    def plan(self) -> None:
        """
        Decide which contenders run under which Python.
        """
        cpython = Runtime("CPython", Path(sys.executable).parent, Path(sys.executable))
        self.runtimes.append(describe_runtime(cpython))
        chosen = [CONTENDERS[n] for n in self.arguments.contenders]
        self.instances = [(c.name, c, cpython) for c in chosen]
        if self.arguments.pypy == "off":
            self.pypy_why = "PyPy runs were turned off (--pypy off)"
            return
        say("preparing the PyPy environment")
        root = self.arguments.pypy_root
        if pypy.wants_root(root) and not self.arguments.no_install and os.geteuid() == 0:
            say(f"the machine's pypy3 is missing or older than Python 3.11: making a Debian 13 root with "
                f"its pypy3 in {root} (bench/pypy_root.sh, once: about 2 minutes and 650 MB)")
            done = subprocess.run([str(pypy.MAKE_ROOT), str(root)], capture_output=True, text=True)
            if done.returncode != 0:
                say(f"bench/pypy_root.sh failed: {(done.stdout + done.stderr).strip()[-500:]}")
        setup = pypy.prepare(self.arguments.pypy_venv, self.directory / "pypy-setup.log", root)
        if setup.bin_dir is None:
            self.pypy_why = setup.reason
            say(f"PyPy skipped: {setup.reason}")
            return
        runtime = Runtime("PyPy", setup.bin_dir, setup.bin_dir / "pypy3", echogate=setup.echogate_reason is None,
                          launcher=setup.launcher)
        self.runtimes.append(setup.version)
        self.pypy_label = runtime.suffix
        if setup.echogate_reason:
            self.pypy_why = f"echogate cannot run under PyPy: {setup.echogate_reason}"
            say(f"PyPy: the baselines run; {self.pypy_why}")
        for contender in chosen:
            if contender.name in PYPY_CONTENDERS and (runtime.echogate or not contender.echogate):
                self.instances.append((contender.name + runtime.suffix, contender, runtime))

    def start(self, upstream: Any, upstream_port: int) -> None:
        bench = Bench(self.directory, self.cores, upstream, upstream_port, self.database)
        for label, contender, runtime in self.instances:
            say(f"starting {label}: {contender.description}")
            running = self.running[label] = contender.start(bench, runtime)
            self.descriptions[label] = contender.description + runtime.suffix
            if running.note:
                self.notes[label] = running.note

    def measure(self) -> None:
        arguments = self.arguments
        plan = [(s, label, contender, runtime) for s in arguments.scenarios
                for label, contender, runtime in self.instances
                if contender.takes_part(s) and (runtime.name != "PyPy" or s in arguments.pypy_scenarios)]
        warmups = len({label for _, label, _, _ in plan}) if arguments.warm_once else len(plan) * arguments.runs
        total = (len(plan) * arguments.runs * arguments.duration + warmups * arguments.warmup
                 + sum(arguments.pypy_warmup for _, _, _, r in plan if r.name == "PyPy"))
        say(f"{len(plan)} measurements × {arguments.runs} run(s), about {total / 60:.1f} minutes of load")
        for scenario, label, _, _ in plan:
            probe(self.running[label], SCENARIOS[scenario].kind, label)
        warmed: set[str] = set()
        for round_ in range(arguments.runs):
            for scenario_name, label, contender, runtime in plan:
                scenario = SCENARIOS[scenario_name]
                running = self.running[label]
                url = f"http://127.0.0.1:{running.port}{running.prefix}{nginx.PATHS[scenario.kind]}"
                headers = tuple(f"{name}: {value}" for name, value in (ECHO_HEADER, *running.headers))
                warmup = arguments.warmup if contender.python else 0
                if arguments.warm_once and label in warmed:
                    warmup = 0
                if runtime.name == "PyPy" and round_ == 0:
                    warmup = max(warmup, arguments.pypy_warmup)
                warmed.add(label)
                load_cpus = self.cores.other if running.pin_load else self.cores.every
                if warmup:
                    run_load(Load(url, scenario.connections, warmup, scenario.post_bytes, headers), None,
                             load_cpus)
                result = run_load(Load(url, scenario.connections, arguments.duration, scenario.post_bytes,
                                       headers), running.process, load_cpus)
                self.results.setdefault((label, scenario_name), []).append(result)
                errors = f"  errors {result.errors}" if result.errors else ""
                say(f"[{round_ + 1}/{arguments.runs}] {scenario_name:<9} {label:<30} {result.rps:>9,.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  RSS {result.peak_rss_kb / 1024:6.1f} MB  CPU {result.cpu:4.0%}{errors}")

    def stop(self) -> None:
        for running in self.running.values():
            running.stop()
        self.running.clear()
        if self._server is not None:
            self._server.remove()
            self._server = None


def render(suite: Suite, env: dict[str, Any], command: str,
           spread: propagation.Propagation | None, spread_why: str) -> str:
    """
    The whole report, in markdown.
    """
    summaries = report.merge(suite.results)
    get = lambda label, scenario: summaries.get((label, scenario))  # noqa: E731
    arguments = suite.arguments
    out = [
        f"# echogate benchmark, {env['date']}",
        "",
        f"`{command}`",
        "",
        f"- machine: {env['cpu']}, {env['memory_gb']} GB, Linux {env['kernel']}",
        f"- {env['pinning']}",
        f"- {'; '.join(suite.runtimes)}; {env['nginx']}; {env['wrk']}",
        f"- every server listens with a backlog of {BACKLOG} (nginx's default)",
        f"- {arguments.runs} run(s) of {arguments.duration:g} s per measurement (medians; peak RSS is the "
        f"lowest of the runs' peaks, see docs/performance.md), after {arguments.warmup:g} s of warm-up "
        "for Python servers"
        + (" (before each one's first measurement only)" if arguments.warm_once else "")
        + (f" ({arguments.pypy_warmup:g} s before PyPy's first run)" if suite.pypy_label else "")
        + "; runs interleaved round-robin across contenders",
        f"- load average at start {' '.join(env['load_average_start'])}, at end "
        f"{' '.join(env['load_average_end'])} (the machine is shared: figures are noisy, ratios within "
        "one run are what counts)",
        "",
        "## Targets (issue 5)",
        "",
        report.targets_table(report.targets(get, suite.pypy_label, suite.pypy_why),
                             report.baseline_ratios(get, suite.pypy_label)),
    ]
    if suite.pypy_why:
        out += ["", f"PyPy: {suite.pypy_why}"]
    for name in arguments.scenarios:
        rows = [(label, summaries[(label, name)]) for label, _, _ in suite.instances
                if (label, name) in summaries]
        if rows:
            out += ["", f"## {name}: {SCENARIOS[name].description}", "", report.scenario_table(rows)]
    out += ["", "## Contenders", ""]
    out += [f"- **{label}**: {suite.descriptions.get(label, '')}"
            + (f" ({suite.notes[label]})" if label in suite.notes else "") for label, _, _ in suite.instances]
    out += ["", "## Multi-node propagation (issue 4)", ""]
    out += [propagation.markdown(spread) if spread is not None else f"Not measured: {spread_why}"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    stop_on_terminate()
    arguments = parse_arguments(argv)
    command = " ".join([".venv/bin/python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    ensure_tools(not arguments.no_install)
    cores = CoreLayout.detect()
    cores.pin_self()
    env = environment(cores)
    say(cores.describe())
    directory = Path(tempfile.mkdtemp(prefix="echogate-bench-"))
    directory.chmod(0o755)
    suite = Suite(arguments, cores, directory)
    spread, spread_why = None, "turned off (--propagation-changes 0)"
    try:
        if nginx.nginx_binary() is None:
            raise BenchError("nginx is needed as the upstream: apt-get install -y nginx")
        upstream, upstream_port = nginx.start_upstream(directory, cores.other)
        say(f"upstream nginx on 127.0.0.1:{upstream_port}")
        suite.plan()
        suite.start(upstream, upstream_port)
        suite.measure()
        for running in suite.running.values():
            if running.process is not upstream:
                running.stop()
        if arguments.propagation_changes > 0:
            say(f"propagation: {arguments.propagation_changes} route changes through node A, node B under load")
            try:
                spread = propagation.measure(directory, cores, upstream_port, suite.database(),
                                             Path(sys.executable).parent, arguments.propagation_changes)
            except BenchError as e:
                spread_why = f"failed: {e}"
                say(spread_why)
        env["load_average_end"] = Path("/proc/loadavg").read_text().split()[:3]
        text = render(suite, env, command, spread, spread_why)
    except BenchError as e:
        say(f"bench: {e}\n(work directory kept: {directory})")
        return 1
    finally:
        suite.stop()
        stop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / "latest.md").write_text(text)
    (RESULTS / f"{stamp}.json").write_text(json.dumps({
        "command": command, "environment": env, "runtimes": suite.runtimes,
        "arguments": {k: str(v) for k, v in vars(arguments).items()},
        "notes": suite.notes, "pypy": suite.pypy_why,
        "results": [{"contender": label, "scenario": scenario, "runs": [r.as_dict() for r in runs]}
                    for (label, scenario), runs in suite.results.items()],
        "propagation": spread.as_dict() if spread is not None else spread_why,
    }, indent=1))
    if not arguments.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        say(f"work directory kept: {directory}")
    say("")
    say(text)
    say(f"written to {RESULTS / (stamp + '.md')} and {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
