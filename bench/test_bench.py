"""
Tests for the benchmark's own logic (parsing, summaries, verdicts): the
parts whose mistakes would print a wrong "met" without anyone noticing.

Run: C{.venv/bin/trial bench.test_bench}. Nothing here starts a process.
"""
from __future__ import annotations

import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench import nginx, pypy, report
from bench.loadgen import LoadResult, parse_summary, result_from
from bench.node_profile import summarize_collapsed
from bench.processes import MemorySampler
from bench.routes import filler_body

_WRK = ('Running 2s test @ http://127.0.0.1:1/100b\n'
        'BENCH-RESULT {"requests": 5000, "duration_us": 2000000, "bytes": 1300000, "connect": 0, '
        '"read": 0, "write": 0, "status": 3, "timeout": 1, "p50_us": 1500, "p90_us": 2500, '
        '"p99_us": 9000, "max_us": 12000, "mean_us": 1700.5}\n')


def _result(rps: float, rss_kb: int = 1024) -> LoadResult:
    return LoadResult(requests=int(rps * 10), seconds=10.0, bytes=0, errors={}, p50_ms=1.0, p90_ms=2.0,
                      p99_ms=3.0, max_ms=4.0, peak_rss_kb=rss_kb, cpu=1.0)


class WrkSummaryTests(SynchronousTestCase):
    """
    wrk's output becomes a L{LoadResult}.
    """

    def test_parsed(self) -> None:
        """
        The C{BENCH-RESULT} line is found among wrk's other output.
        """
        data = parse_summary(_WRK)
        assert data is not None
        self.assertEqual((data["requests"], data["p99_us"]), (5000, 9000))

    def test_missing(self) -> None:
        """
        Output without the line gives C{None}.
        """
        self.assertIsNone(parse_summary("Running 2s test\n"))

    def test_result(self) -> None:
        """
        Throughput, latencies in ms, CPU per second, and only the error
        kinds that happened.
        """
        data = parse_summary(_WRK)
        assert data is not None
        result = result_from(data, 2048, 1.5)
        self.assertEqual(result.rps, 2500)
        self.assertEqual((result.p50_ms, result.p99_ms), (1.5, 9.0))
        self.assertEqual(result.errors, {"status": 3, "timeout": 1})
        self.assertEqual(result.error_count, 4)
        self.assertEqual(result.cpu, 0.75)
        self.assertEqual(result.peak_rss_kb, 2048)


class _Tree:
    """
    A process tree for L{MemorySampler}: counts the walks of C{/proc}.
    """

    def __init__(self) -> None:
        self.walks = 0
        self.asked: list[list[int] | None] = []

    def pids(self) -> list[int]:
        self.walks += 1
        return [10, 11]

    def status(self, pids: list[int] | None = None) -> dict[str, int]:
        self.asked.append(pids)
        return {"VmRSS": 100 * len(self.asked)}


class MemorySamplerTests(SynchronousTestCase):
    """
    L{MemorySampler} watches the tree without walking C{/proc} each time.
    """

    def test_walksOnce(self) -> None:
        """
        The tree is found once, when sampling starts; every sample reads
        those processes, and the peak is the largest reading.
        """
        tree = _Tree()
        deadline = time.monotonic() + 10
        with MemorySampler(tree, interval=0.001) as sampler:  # type: ignore[arg-type]
            while len(tree.asked) < 3 and time.monotonic() < deadline:
                time.sleep(0.001)
        self.assertEqual(tree.walks, 1)
        self.assertEqual(set(map(tuple, tree.asked)), {(10, 11)})
        self.assertEqual(sampler.peak_kb, 100 * len(tree.asked))


class SummaryTests(SynchronousTestCase):
    """
    Several runs become one summary.
    """

    def test_medians(self) -> None:
        """
        Throughput is the median run, not the mean.
        """
        summary = report.summarize([_result(100), _result(300), _result(110)])
        self.assertEqual(summary.rps, 110)
        self.assertEqual(summary.all_rps, (100, 300, 110))

    def test_lowest_peak(self) -> None:
        """
        Peak RSS is the lowest of the runs' peaks.
        """
        summary = report.summarize([_result(1, 3 * 1024), _result(1, 2 * 1024), _result(1, 5 * 1024)])
        self.assertEqual(summary.peak_rss_mb, 2)


class RatioTests(SynchronousTestCase):
    """
    Ratios pair runs of the same round.
    """

    def test_paired(self) -> None:
        """
        The median of the per-round ratios, not the ratio of medians.
        """
        top = report.summarize([_result(90), _result(45), _result(100)])
        bottom = report.summarize([_result(100), _result(50), _result(200)])
        value, each = report.ratio(top, bottom)
        self.assertEqual(each, (0.9, 0.9, 0.5))
        self.assertEqual(value, 0.9)

    def test_unequal_runs(self) -> None:
        """
        With different run counts, the ratio of the medians.
        """
        top = report.summarize([_result(90)])
        bottom = report.summarize([_result(100), _result(300)])
        self.assertEqual(report.ratio(top, bottom), (90 / 200, ()))


class TargetTests(SynchronousTestCase):
    """
    The issue's targets are judged from the summaries.
    """

    def _targets(self, rows: dict[tuple[str, str], list[LoadResult]]) -> dict[str, report.Target]:
        summaries = report.merge(rows)
        found = report.targets(lambda label, scenario: summaries.get((label, scenario)), None, "no pypy")
        return {t.name: t for t in found}

    def test_met_and_not_met(self) -> None:
        """
        Each ratio is compared with its goal.
        """
        targets = self._targets({
            ("echogate-header-echo", "small-50"): [_result(3100)],
            ("twisted-proxy", "small-50"): [_result(1000)],
            ("echogate", "small-50"): [_result(3000)],
            ("hello", "small-50"): [_result(10000)],
        })
        self.assertIs(targets["echogate (one route, header-echo) vs ReverseProxyResource, small-50"].met, True)
        self.assertIs(targets["echogate (one route, no plugins) vs bare Twisted hello, small-50"].met, False)

    def test_boundary(self) -> None:
        """
        Just under a goal is not met, and is shown precisely enough to see why.
        """
        targets = self._targets({
            ("echogate-10000-routes", "small-50"): [_result(899.7)],
            ("echogate-10-routes", "small-50"): [_result(1000)],
        })
        routes = targets["10,000 routes vs 10 routes, small-50"]
        self.assertIs(routes.met, False)
        self.assertIn("90.0%", routes.measured)

    def test_not_measured(self) -> None:
        """
        A target whose contenders did not run says so instead of passing.
        """
        targets = self._targets({})
        self.assertIsNone(targets["10,000 routes vs 10 routes, small-50"].met)
        self.assertIn("not measured", targets["10,000 routes vs 10 routes, small-50"].verdict)
        for scenario in ("small-50", "small-500"):
            self.assertIn(f"needs echogate-workers-1 and echogate-workers-2 in {scenario}",
                          targets[f"2 workers vs 1 (--workers 2, not pinned), {scenario}"].verdict)
        self.assertFalse(any("Agent client" in name for name in targets))

    def test_agent(self) -> None:
        """
        The Agent client's rows appear once its contenders ran.
        """
        targets = self._targets({
            ("echogate-agent", "small-50"): [_result(4000)],
            ("hello", "small-50"): [_result(10000)],
            ("echogate-workers-2", "small-50"): [_result(1700)],
            ("echogate-workers-1", "small-50"): [_result(1000)],
            ("echogate-workers-2", "small-500"): [_result(1500)],
            ("echogate-workers-1", "small-500"): [_result(1000)],
        })
        self.assertIs(targets["echogate (Agent client) (one route, no plugins) vs bare Twisted hello, small-50"].met,
                      True)
        self.assertIs(targets["2 workers vs 1 (--workers 2, not pinned), small-50"].met, True)
        self.assertIs(targets["2 workers vs 1 (--workers 2, not pinned), small-500"].met, False)

    def test_round_two(self) -> None:
        """
        Issue 25's targets: the realistic stack against no plugins (0.75),
        echogate against nginx's proxy_pass under CPython (0.30) and PyPy
        (0.6), and the stack under PyPy reported.
        """
        summaries = report.merge({
            ("echogate-realistic", "small-50"): [_result(2300)],
            ("echogate", "small-50"): [_result(3000)],
            ("nginx", "small-50"): [_result(10000)],
            ("echogate (PyPy)", "small-50"): [_result(6100)],
            ("echogate-realistic (PyPy)", "small-50"): [_result(4880)],
        })
        found = report.targets(lambda label, scenario: summaries.get((label, scenario)), " (PyPy)", "")
        targets = {t.name: t for t in found}
        self.assertIs(targets["realistic stack vs no plugins, small-50"].met, True)
        self.assertIs(targets["echogate (no plugins) vs nginx proxy_pass, small-50"].met, True)
        self.assertIs(targets["echogate under PyPy (no plugins) vs nginx proxy_pass, small-50"].met, True)
        stack = targets["realistic stack vs no plugins under PyPy, small-50"]
        self.assertIsNone(stack.met)
        self.assertIn("0.80×", stack.measured)
        self.assertEqual(stack.verdict, "reported")
        below = self._targets({("echogate-realistic", "small-50"): [_result(2200)],
                               ("echogate", "small-50"): [_result(3000)],
                               ("nginx", "small-50"): [_result(10001)]})
        self.assertIs(below["realistic stack vs no plugins, small-50"].met, False)
        self.assertIs(below["echogate (no plugins) vs nginx proxy_pass, small-50"].met, False)
        self.assertIn("see PyPy below", below["echogate under PyPy (no plugins) vs nginx proxy_pass, "
                                                "small-50"].verdict)

    def test_memory(self) -> None:
        """
        The 1 MiB peak RSS is compared with 150 MB.
        """
        targets = self._targets({("echogate", "large-50"): [_result(1, 151 * 1024)]})
        self.assertIs(targets["echogate peak RSS, 1 MiB bodies, 50 connections"].met, False)


class FillerTests(SynchronousTestCase):
    """
    The filler routes never match the benchmark's requests.
    """

    def test_shapes(self) -> None:
        """
        Three in four by path prefix, one in four by host.
        """
        bodies = [filler_body(n, "s") for n in range(8)]
        hosts = [b for b in bodies if "hosts" in b]
        self.assertEqual(len(hosts), 2)
        for body in bodies:
            for path in body["paths"]:
                self.assertFalse("/bench".startswith(path) and path != "/")
        self.assertEqual(bodies[0]["service"], {"id": "s"})

    def test_configs(self) -> None:
        """
        With C{configs}, a filler route gets a rate-limiting config, and a
        consumer with a key-auth key comes with it, each a complete record.
        """
        from bench.routes import _configs
        from echogate.registry import load_plugins

        route = {"id": "00000000-0000-4000-8000-000000000001"}
        writes = dict(_configs(route, 7, load_plugins("rate-limiting")))
        self.assertEqual(set(writes), {"plugins", "consumers", "keyauth_credentials"})
        self.assertEqual((writes["plugins"]["name"], writes["plugins"]["route"]), ("rate-limiting", route))
        self.assertEqual(writes["plugins"]["config"]["second"], 1000)
        self.assertEqual(writes["keyauth_credentials"]["consumer"], {"id": writes["consumers"]["id"]})
        self.assertEqual(writes["keyauth_credentials"]["key"], "filler-key-7")


class UpstreamBodyTests(SynchronousTestCase):
    """
    The upstream's small answer is exactly 100 bytes.
    """

    def test_size(self) -> None:
        self.assertEqual(len(nginx.SMALL_BODY), 100)


class CollapsedStackTests(SynchronousTestCase):
    """
    py-spy's collapsed stacks become shares per function.
    """

    def test_shares(self) -> None:
        """
        Own time counts the innermost frame; with callees counts each
        frame once per stack.
        """
        text = ("main (a.py:1);work (site-packages/b.py:2);work (site-packages/b.py:9) 3\n"
                "main (a.py:1);idle (a.py:5) 1\n")
        out = summarize_collapsed(text, 5)
        self.assertIn("4 samples", out)
        self.assertIn(" 75.0%  work (b.py)", out)
        self.assertIn("100.0%  main (a.py)", out)

    def test_brokenLinesSkipped(self) -> None:
        """
        A line that is not C{stack count} (py-spy can split a frame name
        over two lines) is skipped, not fatal.
        """
        text = "main (a.py:1);<lambda> (a.py:2) 2\nmain (a.py:1);weird (\nx.py:3) (\n"
        self.assertIn("2 samples", summarize_collapsed(text, 5))


class PyPyReasonTests(SynchronousTestCase):
    """
    Why PyPy cannot run echogate is reported in one readable line.
    """

    def test_last_error(self) -> None:
        """
        The last error line, without directories.
        """
        output = ("Traceback (most recent call last):\n  File \"x\"\n"
                  "ImportError: /a/b/_psycopg.so: undefined symbol: PyInterpreterState_Main\n")
        self.assertEqual(pypy._last_error(output),
                         "ImportError: _psycopg.so: undefined symbol: PyInterpreterState_Main")

    def test_plugins(self) -> None:
        """
        The plugin list is found even inside a log line.
        """
        self.assertEqual(pypy._plugins("2026 [-] PLUGINS a b\n"), ["a", "b"])


class PyPyChoiceTests(SynchronousTestCase):
    """
    Which C{pypy3} the bench uses: the machine's when it is Python 3.11+,
    else the one in the Debian root, else the machine's old one.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.versions: dict[str, tuple[int, int]] = {"/usr/bin/pypy3": (3, 9)}
        self.patch(pypy.shutil, "which", lambda name: "/usr/bin/pypy3" if self.versions else None)
        self.patch(pypy, "_version", lambda launcher, python: self.versions.get(python))

    def _make_root(self) -> None:
        (self.root / "usr" / "bin").mkdir(parents=True)
        (self.root / "usr" / "bin" / "pypy3").write_text("")

    def test_modern_machine(self) -> None:
        """
        A machine C{pypy3} for Python 3.11 is used as it is, root or not.
        """
        self.versions["/usr/bin/pypy3"] = (3, 11)
        self._make_root()
        self.assertEqual(pypy.choose(self.root), ((), "/usr/bin/pypy3"))
        self.assertFalse(pypy.wants_root(self.root))

    def test_old_machine_with_root(self) -> None:
        """
        With an old machine C{pypy3}, the root's runs under C{in_root.sh}.
        """
        self._make_root()
        self.assertEqual(pypy.choose(self.root), ((str(pypy.IN_ROOT), str(self.root)), "/usr/bin/pypy3"))
        self.assertFalse(pypy.wants_root(self.root))

    def test_old_machine_without_root(self) -> None:
        """
        Without a root, the old machine C{pypy3} (baselines only), and the
        root is wanted.
        """
        self.assertEqual(pypy.choose(self.root), ((), "/usr/bin/pypy3"))
        self.assertTrue(pypy.wants_root(self.root))

    def test_no_pypy(self) -> None:
        """
        No C{pypy3} at all and no root: none, and the root is wanted.
        """
        self.versions.clear()
        self.assertEqual(pypy.choose(self.root), ((), None))
        self.assertTrue(pypy.wants_root(self.root))


class PathCostTests(SynchronousTestCase):
    """
    L{bench.path_cost} drives echogate's real data path in one process.
    """

    def test_measures(self) -> None:
        """
        It proxies (it checks the answer itself, and the echo with
        header-echo) and gives a positive cost per request for each run.
        """
        import gc

        from bench.path_cost import measure

        try:
            figures = measure(["header-echo"], 20, 2)
        finally:
            gc.unfreeze()
        self.assertEqual(len(figures), 2)
        self.assertTrue(all(f > 0 for f in figures), figures)


class BuildCostTests(SynchronousTestCase):
    """
    L{bench.build_cost} times snapshot builds after one change.
    """

    def test_measures(self) -> None:
        """
        Each change is built from scratch and from the previous snapshot,
        as many times as asked, and each build takes some time; so do its
        longest step and freeing the snapshot it replaces.
        """
        from bench.build_cost import measure

        figures = measure(20, 2)
        self.assertEqual(set(figures), {"a route added", "a route changed", "the first route deleted"})
        for scratch, incremental, steps, freeing in figures.values():
            self.assertEqual((len(scratch), len(incremental), len(steps), len(freeing)), (2, 2, 2, 2))
            self.assertTrue(all(f > 0 for f in scratch + incremental))
            self.assertTrue(all(f >= 0 for f in steps + freeing))

    def test_withConfigs(self) -> None:
        """
        With C{configs}, a plugin config changed, a key added or changed
        and a consumer added are measured too.
        """
        from bench.build_cost import measure

        figures = measure(20, 1, configs=True)
        self.assertEqual(set(figures), {"a route added", "a route changed", "the first route deleted",
                                        "a plugin config changed", "a key added", "a key changed",
                                        "a consumer added"})


class ScriptNameTests(SynchronousTestCase):
    """
    The bench's scripts are run by path (C{python bench/NAME.py}), which
    puts C{bench/} first on C{sys.path}: a script named as a module that
    echogate or Twisted imports would be imported in its place (a
    C{bench/h2.py} stopped every script whose imports reach the C{h2}
    library, the baselines among them).
    """

    def test_noScriptShadowsAModule(self) -> None:
        """
        No module of C{bench/} has the name of a module importable without
        it.
        """
        import importlib.util
        import sys

        here = Path(__file__).resolve().parent
        names = sorted(p.stem for p in here.glob("*.py") if p.stem != "__init__")
        saved = sys.path[:]
        sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
        try:
            shadowing = [name for name in names if importlib.util.find_spec(name) is not None]
        finally:
            sys.path[:] = saved
        self.assertEqual(shadowing, [])


class RawHelloTests(SynchronousTestCase):
    """
    L{bench.raw_hello}'s protocol: one answer per whole head, in order,
    whatever the reads' boundaries.
    """

    def test_pipelinedAndSplit(self) -> None:
        from twisted.internet.testing import StringTransport

        from bench.raw_hello import RESPONSE, RawHello

        hello = RawHello()
        transport = StringTransport()
        hello.makeConnection(transport)
        head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        hello.dataReceived(head + head[:10])
        self.assertEqual(transport.value(), RESPONSE)
        hello.dataReceived(head[10:] + head)
        self.assertEqual(transport.value(), RESPONSE * 3)
        self.assertEqual(len(RESPONSE.split(b"\r\n\r\n", 1)[1]), 100)
