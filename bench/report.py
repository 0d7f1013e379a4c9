"""
The benchmark's report: medians of the runs, one markdown table per
scenario, and the issue's targets as ratios measured in the same run,
each marked met or not met.
"""
from __future__ import annotations

import statistics
from typing import Callable, Mapping, Sequence

import attrs

from bench.loadgen import LoadResult

__all__ = ["Summary", "summarize", "ratio", "Target", "targets", "baseline_ratios", "scenario_table",
           "targets_table", "merge"]


@attrs.frozen
class Summary:
    """
    The runs of one contender in one scenario: medians of req/s and
    latencies, the lowest of the runs' peak RSS (a process's RSS seldom
    shrinks, so a later run carries what the other scenarios left behind;
    the lowest is the one nearest to this scenario's own peak), the
    median CPU use, all errors.
    """

    runs: int
    rps: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    cpu: float
    errors: int
    bytes_per_request: float
    all_rps: tuple[float, ...]


def summarize(results: Sequence[LoadResult]) -> Summary:
    """
    The L{Summary} of one or more runs.
    """
    requests = sum(r.requests for r in results)
    return Summary(
        runs=len(results),
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        peak_rss_mb=min(r.peak_rss_kb for r in results) / 1024,
        cpu=statistics.median(r.cpu for r in results),
        errors=sum(r.error_count for r in results),
        bytes_per_request=sum(r.bytes for r in results) / requests if requests else 0.0,
        all_rps=tuple(r.rps for r in results),
    )


def ratio(top: Summary, bottom: Summary) -> tuple[float, tuple[float, ...]]:
    """
    C{top}'s throughput over C{bottom}'s: the median of the ratios of
    their runs taken in the same round (measured a minute apart at most,
    so a burst of other work on the machine hits both), or the ratio of
    the medians when the run counts differ. Also returns each round's
    ratio.
    """
    if len(top.all_rps) == len(bottom.all_rps) and all(bottom.all_rps):
        each = tuple(a / b for a, b in zip(top.all_rps, bottom.all_rps))
        return statistics.median(each), each
    return (top.rps / bottom.rps if bottom.rps else 0.0), ()


def scenario_table(rows: Sequence[tuple[str, Summary]]) -> str:
    """
    One markdown table: a row per contender.
    """
    lines = ["| contender | req/s | p50 ms | p99 ms | peak RSS MB | server CPU | errors | req/s of each run |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, s in rows:
        lines.append(f"| {label} | {s.rps:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.peak_rss_mb:.1f} "
                     f"| {s.cpu:.0%} | {s.errors} | {', '.join(f'{r:,.0f}' for r in s.all_rps)} |")
    return "\n".join(lines)


@attrs.frozen
class Target:
    """
    One of the issue's targets, as measured: C{value} (C{None} when it
    could not be measured, C{why} then says why) against C{goal}.
    """

    name: str
    measured: str
    goal: str
    met: bool | None
    why: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return f"not measured: {self.why}" if self.why else "reported"
        return "**met**" if self.met else "**not met**"


Lookup = Callable[[str, str], "Summary | None"]


def _ratio(name: str, top: Summary | None, bottom: Summary | None, goal: float,
           missing: str, percent: bool = False) -> Target:
    shown = f"≥ {goal:.0%}" if percent else f"≥ {goal:g}×"
    if top is None or bottom is None or not bottom.rps:
        return Target(name, "–", shown, None, missing)
    value, each = ratio(top, bottom)
    return Target(name, _shown(value, each, top, bottom, percent), shown, value >= goal)


def _shown(value: float, each: tuple[float, ...], top: Summary, bottom: Summary, percent: bool) -> str:
    form = (lambda x: f"{x:.1%}") if percent else (lambda x: f"{x:.2f}×")
    rounds = f"runs {', '.join(form(x) for x in each)}; " if len(each) > 1 else ""
    return f"{form(value)} ({rounds}medians {top.rps:,.0f} / {bottom.rps:,.0f} req/s)"


def targets(get: Lookup, pypy_label: str | None, pypy_why: str) -> list[Target]:
    """
    The issue's targets from the summaries C{get(contender_label, scenario)}.

    @param pypy_label: the suffix of PyPy contenders' labels, or C{None}
        when PyPy did not run (C{pypy_why} says why).
    """
    out: list[Target] = []
    for suffix, client in (("", ""), ("-agent", " (Agent client)")):
        if suffix and not any(get(f"echogate{suffix}{p}", "small-50") for p in ("", "-header-echo")):
            continue
        for scenario in ("small-50", "small-500"):
            out.append(_ratio(f"echogate{client} (one route, header-echo) vs ReverseProxyResource, {scenario}",
                              get(f"echogate{suffix}-header-echo", scenario), get("twisted-proxy", scenario), 3,
                              f"needs echogate{suffix}-header-echo and twisted-proxy in {scenario}"))
        out.append(_ratio(f"echogate{client} (one route, no plugins) vs bare Twisted hello, small-50",
                          get(f"echogate{suffix}", "small-50"), get("hello", "small-50"), 0.35,
                          f"needs echogate{suffix} and hello in small-50", percent=True))
    out.append(_ratio("10,000 routes vs 10 routes, small-50",
                      get("echogate-10000-routes", "small-50"), get("echogate-10-routes", "small-50"), 0.9,
                      "needs echogate-10-routes and echogate-10000-routes", percent=True))
    large = get("echogate", "large-50")
    if large is None:
        out.append(Target("echogate peak RSS, 1 MiB bodies, 50 connections", "–", "< 150 MB", None,
                          "needs echogate in large-50"))
    else:
        small = get("echogate", "small-50")
        growth = f"; {small.peak_rss_mb:.0f} MB with 100-byte bodies" if small else ""
        out.append(Target("echogate peak RSS, 1 MiB bodies, 50 connections",
                          f"{large.peak_rss_mb:.0f} MB{growth}", "< 150 MB", large.peak_rss_mb < 150))
    for scenario, goal in (("small-50", 2.0), ("large-50", None)):
        name = f"echogate under PyPy vs CPython, {scenario}"
        shown = f"≥ {goal:g}×" if goal else "reported"
        pypy = get("echogate" + pypy_label, scenario) if pypy_label else None
        cpython = get("echogate", scenario)
        if pypy is None or cpython is None:
            why = "see PyPy below" if pypy_why else f"needs echogate in {scenario} under both"
            out.append(Target(name, "–", shown, None, why))
            continue
        value, each = ratio(pypy, cpython)
        out.append(Target(name, _shown(value, each, pypy, cpython, False), shown,
                          value >= goal if goal else None))
    for scenario in ("small-50", "small-500"):
        out.append(_ratio(f"2 workers vs 1 (--workers 2, not pinned), {scenario}",
                          get("echogate-workers-2", scenario), get("echogate-workers-1", scenario), 1.6,
                          f"needs echogate-workers-1 and echogate-workers-2 in {scenario}"))
    return out + round_two(get, pypy_label, pypy_why)


def round_two(get: Lookup, pypy_label: str | None, pypy_why: str) -> list[Target]:
    """
    Issue 25's targets: the realistic plugin stack against no plugins,
    and echogate against nginx's C{proxy_pass}, under CPython and PyPy
    (small-50).
    """
    out = [_ratio("realistic stack vs no plugins, small-50", get("echogate-realistic", "small-50"),
                  get("echogate", "small-50"), 0.75, "needs echogate-realistic and echogate in small-50"),
           _ratio("echogate (no plugins) vs nginx proxy_pass, small-50", get("echogate", "small-50"),
                  get("nginx", "small-50"), 0.30, "needs echogate and nginx in small-50")]
    name = "echogate under PyPy (no plugins) vs nginx proxy_pass, small-50"
    if not pypy_label:
        out.append(Target(name, "–", "≥ 0.6×", None, "see PyPy below" if pypy_why else "PyPy did not run"))
        return out
    out.append(_ratio(name, get("echogate" + pypy_label, "small-50"), get("nginx", "small-50"), 0.6,
                      "needs echogate under PyPy and nginx in small-50"))
    top, bottom = get("echogate-realistic" + pypy_label, "small-50"), get("echogate" + pypy_label, "small-50")
    name = "realistic stack vs no plugins under PyPy, small-50"
    if top is None or bottom is None or not bottom.rps:
        out.append(Target(name, "–", "reported", None, "needs echogate-realistic and echogate under PyPy"))
    else:
        value, each = ratio(top, bottom)
        out.append(Target(name, _shown(value, each, top, bottom, False), "reported", None))
    return out


def baseline_ratios(get: Lookup, pypy_label: str | None) -> list[tuple[str, str]]:
    """
    Ratios between the baselines, for context (no targets).
    """
    pairs = [("agent-proxy", "twisted-proxy"), ("hello", "agent-proxy"), ("lean-proxy", "twisted-proxy"),
             ("lean-proxy", "hello"), ("echogate", "lean-proxy"), ("nginx", "echogate"),
             ("echogate-5-plugins", "echogate"), ("echogate-header-echo", "echogate"),
             ("echogate", "echogate-agent"), ("echogate", "agent-proxy"),
             ("echogate-ratelimit-local", "echogate"), ("echogate-ratelimit-cluster", "echogate"),
             ("echogate-ratelimit-redis", "echogate"), ("echogate-realistic", "echogate"),
             ("echogate", "raw-proxy"), ("raw-proxy", "nginx")]
    if pypy_label:
        pairs += [(c + pypy_label, c) for c in ("hello", "agent-proxy", "twisted-proxy")]
        pairs += [("echogate" + pypy_label, "raw-proxy" + pypy_label), ("raw-proxy" + pypy_label, "nginx")]
    out = []
    for top, bottom in pairs:
        for scenario in ("small-50", "large-50"):
            a, b = get(top, scenario), get(bottom, scenario)
            if a is not None and b is not None and b.rps:
                out.append((f"{top} / {bottom}, {scenario}", f"{ratio(a, b)[0]:.2f}×"))
    return out


def targets_table(items: Sequence[Target], extra: Sequence[tuple[str, str]] = ()) -> str:
    lines = ["| target | measured | goal | verdict |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.goal} | {t.verdict} |" for t in items]
    if extra:
        lines += ["", "| ratio (context, no target) | measured |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in extra]
    return "\n".join(lines)


def merge(rows: Mapping[tuple[str, str], Sequence[LoadResult]]) -> dict[tuple[str, str], Summary]:
    """
    Summaries by (contender label, scenario).
    """
    return {key: summarize(results) for key, results in rows.items() if results}
