"""
Tests for L{echogate.routing.router.Router.build}'s C{previous}: a table built
after a change takes the routes that did not change from the table it
replaces instead of compiling them again, and answers exactly as a table
compiled from scratch would.
"""
from __future__ import annotations

import random
from typing import Any, Callable

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.routing import router as router_module
from echogate.routing.matching import compile_route
from echogate.store.data import ConfigurationData
from tests.proxy.test_snapshot import _Store
from tests.routing.test_router import SERVICE_ID, build, request, route, service


class _Counting:
    """
    L{echogate.routing.matching.compile_route}, counting the routes it compiles.
    """

    def __init__(self, compile_route: Callable[..., Any]):
        self.compiled: list[str] = []
        self._compile_route = compile_route

    def __call__(self, record: dict[str, Any], *args: Any) -> Any:
        self.compiled.append(record["id"])
        return self._compile_route(record, *args)


class RenumberedTests(SynchronousTestCase):
    """
    L{CompiledRoute.renumbered} moves a compiled route to another position.
    """

    def test_onlyPositionChanges(self) -> None:
        """
        Every field is kept but the position, the last part of C{order}.
        """
        compiled, _ = compile_route(route(hosts=["a.test"], paths=["/x", "~/y[0-9]"], methods=["GET"],
                                          headers={"x-v": ["1"]}, regex_priority=3), service(), 4)
        moved = compiled.renumbered(9)
        self.assertEqual(attrs.asdict(moved, recurse=False),
                         attrs.asdict(attrs.evolve(compiled, order=compiled.order[:-1] + (9,)), recurse=False))
        self.assertEqual(moved.order[-1], 9)
        self.assertEqual(compiled.order[-1], 4)


class ReuseTests(SynchronousTestCase):
    """
    What a table takes from the one it replaces, and what it compiles.
    """

    def setUp(self) -> None:
        self.counting = _Counting(router_module.compile_route)
        self.patch(router_module, "compile_route", self.counting)
        self.service = service()
        self.routes = [route(paths=[f"/r{n}"]) for n in range(4)]
        self.first = build(self.routes, [self.service])
        self.counting.compiled.clear()

    def test_unchangedNotCompiled(self) -> None:
        """
        Records that are the objects the previous table compiled are not
        compiled again; a new one is.
        """
        added = route(paths=["/new"])
        table = build(self.routes + [added], [self.service], previous=self.first)
        self.assertEqual(self.counting.compiled, [added["id"]])
        self.assertEqual(len(table), 5)
        for n in range(4):
            match = request(table, path=f"/r{n}")
            assert match is not None
            self.assertIs(match.route, self.routes[n], f"row n={n!r}")
        match = request(table, path="/new")
        assert match is not None
        self.assertIs(match.route, added)

    def test_withoutPrevious(self) -> None:
        """
        Without C{previous}, every route is compiled.
        """
        build(self.routes, [self.service])
        self.assertEqual(self.counting.compiled, [r["id"] for r in self.routes])

    def test_changedRecordCompiled(self) -> None:
        """
        A new record for a route (the row changed) is compiled, even with
        the same id: the table routes by what it now says.
        """
        changed = dict(self.routes[1], paths=["/moved"])
        table = build([self.routes[0], changed] + self.routes[2:], [self.service], previous=self.first)
        self.assertEqual(self.counting.compiled, [changed["id"]])
        match = request(table, path="/moved")
        assert match is not None
        self.assertIs(match.route, changed)
        self.assertIsNone(request(table, path="/r1"))

    def test_changedServiceCompiled(self) -> None:
        """
        A new record for the service a route goes to recompiles its routes,
        whose matches then carry the new service.
        """
        moved = service(host="elsewhere.test")
        table = build(self.routes, [moved], previous=self.first)
        self.assertEqual(self.counting.compiled, [r["id"] for r in self.routes])
        match = request(table, path="/r0")
        assert match is not None
        self.assertIs(match.service, moved)

    def test_disabledServiceLeftOut(self) -> None:
        """
        Routes whose service is now disabled are left out, though their
        records did not change.
        """
        table = build(self.routes, [service(enabled=False)], previous=self.first)
        self.assertEqual(len(table), 0)
        self.assertIsNone(request(table, path="/r0"))

    def test_deletedRouteGone(self) -> None:
        """
        A route missing from the new records is not in the new table, and
        the routes after it keep matching.
        """
        table = build(self.routes[1:], [self.service], previous=self.first)
        self.assertEqual(self.counting.compiled, [])
        self.assertIsNone(request(table, path="/r0"))
        match = request(table, path="/r3")
        assert match is not None
        self.assertIs(match.route, self.routes[3])

    def test_entriesKept(self) -> None:
        """
        A route taken from the previous table at the same position keeps
        that table's very entry (so that freeing the replaced table frees
        little); a route that moved gets a new one.
        """
        added = build(self.routes + [route(paths=["/new"])], [self.service], previous=self.first)
        for r in self.routes:
            self.assertIs(added._compiled[r["id"]], self.first._compiled[r["id"]], f"row route={r['id']!r}")
        moved = build(self.routes[1:], [self.service], previous=self.first)
        for r in self.routes[1:]:
            self.assertIsNot(moved._compiled[r["id"]], self.first._compiled[r["id"]], f"row route={r['id']!r}")
            self.assertEqual(moved._compiled[r["id"]][1], self.first._compiled[r["id"]][1])

    def test_leftOutCompiledAgain(self) -> None:
        """
        A route that could not be compiled is tried again in the next
        table (nothing of it was kept).
        """
        bad = route(paths=["~/(unclosed"])
        first = build(self.routes + [bad], [self.service], previous=self.first)
        self.counting.compiled.clear()
        build(self.routes + [bad], [self.service], previous=first)
        self.assertEqual(self.counting.compiled, [bad["id"]])


def _probes() -> list[dict[str, Any]]:
    probes: list[dict[str, Any]] = []
    for host in (None, "a.test", "b.test", "x.a.test"):
        for path in ("/", "/p0", "/p1/x", "/p2", "/p3/deep/er", "/q"):
            for method in ("GET", "POST"):
                probes.append({"method": method, "host": host, "path": path})
    return probes


class EquivalenceTests(SynchronousTestCase):
    """
    Over a seeded series of random changes (routes added, changed and
    removed, the service replaced), the table built from the previous one
    answers every probe as the table compiled from scratch does, ranks
    every route as it does, and compiles only what changed.
    """

    def _random_route(self, rng: random.Random, created_at: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"created_at": created_at}
        # Equal creation times: the order of the records breaks ties.
        if rng.random() < 0.5:
            fields["paths"] = rng.sample(["/", "/p0", "/p1", "/p2", "/p3/deep", "~/p[0-9]"], rng.randint(1, 2))
        if rng.random() < 0.4:
            fields["hosts"] = rng.sample(["a.test", "b.test", "*.a.test"], 1)
        if rng.random() < 0.3 or not fields.keys() - {"created_at"}:
            fields["methods"] = rng.sample(["GET", "POST"], 1)
        fields["regex_priority"] = rng.choice([0, 0, 1])
        return route(**fields)

    def test_sameAnswers(self) -> None:
        rng = random.Random(20261128)
        counting = _Counting(router_module.compile_route)
        self.patch(router_module, "compile_route", counting)
        current_service = service()
        routes = [self._random_route(rng, 1700000000 + rng.randint(0, 3)) for _ in range(12)]
        table = build(routes, [current_service])
        probes = _probes()
        for step in range(60):
            action = rng.choice(["add", "change", "remove", "service", "none"])
            if action == "add" or not routes:
                routes.insert(rng.randint(0, len(routes)), self._random_route(rng, 1700000000 + rng.randint(0, 3)))
            elif action == "change":
                n = rng.randrange(len(routes))
                fresh = self._random_route(rng, routes[n]["created_at"])
                routes[n] = dict(fresh, id=routes[n]["id"])
            elif action == "remove":
                del routes[rng.randrange(len(routes))]
            elif action == "service":
                current_service = service(host=f"up{step}.test")
            counting.compiled.clear()
            incremental = build(routes, [current_service], previous=table)
            compiled_incrementally = len(counting.compiled)
            scratch = build(routes, [current_service])
            with self.subTest(step=step, action=action):
                if action in ("none", "remove"):
                    self.assertEqual(compiled_incrementally, 0, f"row step={step!r}")
                elif action in ("add", "change"):
                    self.assertEqual(compiled_incrementally, 1, f"row step={step!r}")
                for probe in probes:
                    self.assertEqual(request(incremental, **probe), request(scratch, **probe), probe)
                # Down to the tie-breaking position of each record.
                self.assertEqual({i: c.order for i, (c, _) in incremental._compiled.items()},
                                 {i: c.order for i, (c, _) in scratch._compiled.items()}, f"row step={step!r}")
            table = incremental


class LiveReuseTests(SynchronousTestCase):
    """
    L{LiveConfiguration} builds each snapshot from the one it replaces.
    """

    def test_reloadCompilesOnlyChanges(self) -> None:
        counting = _Counting(router_module.compile_route)
        self.patch(router_module, "compile_route", counting)
        the_service = service()
        routes = tuple(route(paths=[f"/r{n}"]) for n in range(3))
        added = route(paths=["/added"])
        live = LiveConfiguration(
            store=_Store(ConfigurationData(version=1, services=(the_service,), routes=routes),
                         ConfigurationData(version=2, services=(the_service,), routes=routes + (added,))),
            plugins={}, clock=Clock(), build=Snapshot.build)
        self.addCleanup(live.stop)
        live.start()
        self.assertEqual(len(counting.compiled), 3)
        counting.compiled.clear()
        live.reload()
        self.assertEqual(counting.compiled, [added["id"]])
        self.assertEqual(live.current.version, 2)
        match = live.current.router.match("GET", None, "/r2", {})
        assert match is not None
        self.assertIs(match.route, routes[2])
        self.assertEqual(match.service["id"], SERVICE_ID)
