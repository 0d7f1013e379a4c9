"""
Tests for L{echogate.routing.router.Router.build}: what it leaves out of the
table, and that it logs why.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.routing.test_router import build, request, route, service


def _messages(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") >= LogLevel.info]


class BuildTests(SynchronousTestCase):
    """
    L{Router.build} rejects nothing, but leaves out what cannot or must not
    be routed.
    """

    def test_disabled_service(self) -> None:
        """
        A route whose service is disabled is left out, and that is logged.
        """
        off = service(id="off", enabled=False)
        routes = [route(paths=["/off"], service={"id": "off"}), route(paths=["/"])]
        with capturedLogs() as events:
            router = build(routes, [service(), off])
        self.assertEqual(len(router), 1)
        match = request(router, path="/off")
        assert match is not None
        self.assertEqual(match.route, routes[1])
        self.assertTrue(any(routes[0]["id"] in m and "disabled" in m for m in _messages(events)))

    def test_enabled_unset(self) -> None:
        """
        A service whose C{enabled} is null counts as enabled.
        """
        router = build([route(paths=["/"])], [service(enabled=None)])
        self.assertIsNotNone(request(router, path="/"))

    def test_missing_service(self) -> None:
        """
        A route whose service is not in the mapping matches with no service,
        and that is logged.
        """
        r = route(paths=["/"], service={"id": "gone"})
        with capturedLogs() as events:
            router = build([r])
        match = request(router, path="/")
        assert match is not None
        self.assertIsNone(match.service)
        self.assertTrue(any("gone" in m for m in _messages(events)))

    def test_left_out(self) -> None:
        """
        A route with a bad regex path, a bad header regex, a malformed
        wildcard host or no condition at all is left out and logged; the
        others stay.
        """
        bad = [
            route(paths=["~/(unclosed"]),
            route(paths=["/ok", "~/a)"]),
            route(headers={"x-v": ["~*("]}),
            route(hosts=["a.*.com"]),
            route(hosts=["*"]),
            route(hosts=["*.*.com"]),
            route(),
            route(headers={"host": ["a.com"]}),
        ]
        good = route(paths=["/"])
        with capturedLogs() as events:
            router = build(bad + [good])
        self.assertEqual(len(router), 1)
        messages = _messages(events)
        for r in bad:
            with self.subTest(route=r):
                self.assertTrue(any(r["id"] in m and "left out" in m for m in messages), f"row r={r!r}")
        for path in ("/ok", "/a)", "/(unclosed"):
            match = request(router, path=path, host="a.x.com", headers={"x-v": ["("]})
            assert match is not None
            self.assertEqual(match.route, good, f"row path={path!r}")

    def test_malformed_fields(self) -> None:
        """
        A route whose fields have the wrong shape is left out with its
        traceback logged, instead of breaking the whole table.
        """
        bad = [route(paths=5), route(hosts=[None]), route(paths=["/x"], regex_priority="high")]
        with capturedLogs():
            router = build(bad + [route(paths=["/"])])
        # paths=5 and hosts=[None] fail to compile (logged with their
        # traceback); the bad regex_priority is refused by validation.
        self.assertEqual(len(self.flushLoggedErrors(TypeError, AttributeError)), 2)
        self.assertEqual(len(router), 1)

    def test_input_untouched(self) -> None:
        """
        Building leaves the route and service records as they were.
        """
        r = route(hosts=["A.com"], paths=["/b", "/a"], methods=["get"], headers={"X": ["Y"]})
        copy = {k: (list(v) if isinstance(v, list) else v) for k, v in r.items()}
        build([r])
        self.assertEqual(r, copy)
