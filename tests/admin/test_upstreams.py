"""
Upstreams and targets through the Admin API: a gateway node on 127.0.0.1
with the real PostgreSQL (C{/upstreams}, C{/upstreams/{u}/targets},
C{/upstreams/{u}/health}, the health overrides), and the health endpoint
answering from a given L{echogate.admin.health.HealthView}.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import psycopg2
from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from echogate.admin import AdminAPI
from echogate.admin.health import HealthchecksOff
from tests.admin.test_admin import NODE, NOW, ids
from tests.gateway import start_gateway
from tests.postgres import fresh_database

NOT_FOUND = {"message": "Not found"}


class UpstreamsTestCase(unittest.TestCase):
    """
    A gateway node on a fresh database.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.dsn = await fresh_database(migrated=True)
        self.gw = await start_gateway(self, database=self.dsn)

    async def ok(self, method: str, path: str, code: int = 200, **kw: Any) -> Any:
        """
        Call the Admin API, check the status, return the JSON body.
        """
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer.body)
        return answer.json() if answer.body else None

    async def upstream(self, name: str = "svc.test", **fields: Any) -> dict:
        return await self.ok("POST", "/upstreams", 201, json={"name": name, **fields})

    async def target(self, target: str, upstream: str = "svc.test", **fields: Any) -> dict:
        return await self.ok("POST", f"/upstreams/{upstream}/targets", 201, json={"target": target, **fields})

    def rows(self, sql: str) -> list[tuple]:
        connection = psycopg2.connect(self.dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()


class UpstreamEndpointTests(UpstreamsTestCase):
    """
    C{/upstreams} and C{/upstreams/{id or name}}.
    """

    async def test_createAndGet(self) -> None:
        """
        POST answers 201 with Kong's defaults; GET by name and by id finds it.
        """
        created = await self.upstream(tags=["lb"])
        self.assertEqual((created["algorithm"], created["slots"], created["tags"]), ("round-robin", 10000, ["lb"]))
        self.assertEqual(await self.ok("GET", "/upstreams/svc.test"), created)
        self.assertEqual(await self.ok("GET", f"/upstreams/{created['id']}"), created)

    async def test_formBody(self) -> None:
        """
        A form body is typed by the schema, nested health check fields included.
        """
        created = await self.ok("POST", "/upstreams", 201, data={
            "name": "svc.test", "slots": "100", "healthchecks.active.healthy.interval": "5",
            "healthchecks.active.healthy.http_statuses": "200"})
        self.assertEqual(created["slots"], 100)
        self.assertEqual(created["healthchecks"]["active"]["healthy"],
                         {"interval": 5, "http_statuses": [200], "successes": 0})

    async def test_invalid(self) -> None:
        """
        An invalid upstream: 400 with Kong's messages, nothing stored.
        """
        answer = await self.gw.admin("POST", "/upstreams", json={"name": "1.2.3.4", "slots": 1})
        self.assertEqual((answer.code, answer.json()), (400, {
            "code": 2, "name": "schema violation",
            "message": "2 schema violations (name: Invalid name ('1.2.3.4'); no ip addresses allowed;"
                       " slots: value should be between 10 and 65536)",
            "fields": {"name": "Invalid name ('1.2.3.4'); no ip addresses allowed",
                       "slots": "value should be between 10 and 65536"}}))
        answer = await self.gw.admin("POST", "/upstreams", json={"name": "u", "hash_on": "header"})
        self.assertEqual(answer.json()["fields"], {
            "hash_on_header": "required field missing",
            "@entity": ["failed conditional validation given value of field 'hash_on'"]})
        self.assertEqual((await self.ok("GET", "/upstreams"))["data"], [])

    async def test_uniqueName(self) -> None:
        """
        A taken name: 409.
        """
        await self.upstream()
        answer = await self.gw.admin("POST", "/upstreams", json={"name": "svc.test"})
        self.assertEqual((answer.code, answer.json()["fields"]), (409, {"name": "svc.test"}))

    async def test_putPatch(self) -> None:
        """
        PUT by name creates then replaces (defaults back); PATCH changes given fields.
        """
        created = await self.ok("PUT", "/upstreams/svc.test", json={"slots": 20})
        self.assertEqual((created["name"], created["slots"]), ("svc.test", 20))
        patched = await self.ok("PATCH", "/upstreams/svc.test", json={"hash_on": "ip"})
        self.assertEqual((patched["id"], patched["slots"], patched["algorithm"], patched["hash_on"]),
                         (created["id"], 20, "consistent-hashing", "ip"))
        replaced = await self.ok("PUT", "/upstreams/svc.test", json={})
        self.assertEqual((replaced["id"], replaced["slots"], replaced["algorithm"]),
                         (created["id"], 10000, "round-robin"))

    async def test_paging(self) -> None:
        """
        Lists page with size and filter by tags like every collection.
        """
        for name in ("a.test", "b.test", "c.test"):
            await self.upstream(name, tags=["t"] if name != "b.test" else ["other"])
        page = await self.ok("GET", "/upstreams?size=2")
        self.assertEqual(len(page["data"]), 2)
        rest = await self.ok("GET", page["next"])
        self.assertEqual((len(rest["data"]), rest["next"]), (1, None))
        tagged = await self.ok("GET", "/upstreams?tags=t")
        self.assertEqual(sorted(u["name"] for u in tagged["data"]), ["a.test", "c.test"])

    async def test_deleteCascades(self) -> None:
        """
        Deleting an upstream deletes its targets and health overrides.
        """
        await self.upstream()
        await self.upstream("other.test")
        await self.target("10.0.0.1")
        await self.target("10.0.0.2", "other.test")
        await self.ok("PUT", "/upstreams/svc.test/targets/10.0.0.1:8000/unhealthy", 204)
        await self.ok("DELETE", "/upstreams/svc.test", 204)
        self.assertEqual((await self.gw.admin("GET", "/upstreams/svc.test")).code, 404)
        self.assertEqual((await self.gw.admin("GET", "/upstreams/svc.test/targets")).code, 404)
        self.assertEqual([t for (t,) in self.rows("SELECT target FROM targets")], ["10.0.0.2:8000"])
        self.assertEqual(self.rows("SELECT count(*) FROM target_health_overrides"), [(0,)])
        self.assertEqual((await self.gw.admin("DELETE", "/upstreams/svc.test")).code, 204)

    async def test_schema(self) -> None:
        """
        GET /schemas/upstreams and /schemas/targets describe the fields.
        """
        fields = [next(iter(f)) for f in (await self.ok("GET", "/schemas/upstreams"))["fields"]]
        self.assertIn("healthchecks", fields)
        targets = (await self.ok("GET", "/schemas/targets"))["fields"]
        self.assertIn({"weight": {"type": "integer", "required": False, "default": 100, "between": [0, 65535],
                                  "description": "The weight this target gets within the upstream"
                                                 " loadbalancer (0-65535)."}}, targets)


class TargetEndpointTests(UpstreamsTestCase):
    """
    C{/upstreams/{u}/targets} and one target under its upstream.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.up = await self.upstream()

    async def test_create(self) -> None:
        """
        POST normalises the target, adds port 8000, and links the upstream from the path.
        """
        created = await self.ok("POST", "/upstreams/svc.test/targets", 201,
                                data={"target": "::1", "weight": "5",
                                      "upstream": "00000000-0000-4000-8000-000000000001"})
        self.assertEqual((created["target"], created["weight"], created["upstream"]),
                         ("[0000:0000:0000:0000:0000:0000:0000:0001]:8000", 5, {"id": self.up["id"]}))

    async def test_invalid(self) -> None:
        """
        An invalid target: 400 with the targets DAO's message.
        """
        answer = await self.gw.admin("POST", "/upstreams/svc.test/targets", json={"target": "a b", "weight": -1})
        self.assertEqual((answer.code, answer.json()["fields"]), (400, {
            "target": "Invalid target; not a valid hostname or ip address",
            "weight": "value should be between 0 and 65535"}))

    async def test_uniqueWithinUpstream(self) -> None:
        """
        The same target twice in one upstream: 409; in another upstream: fine.
        """
        await self.target("10.0.0.1:80")
        answer = await self.gw.admin("POST", "/upstreams/svc.test/targets", json={"target": "10.0.0.1:80"})
        self.assertEqual((answer.code, answer.json()["fields"]),
                         (409, {"upstream": {"id": self.up["id"]}, "target": "10.0.0.1:80"}))
        await self.upstream("other.test")
        await self.target("10.0.0.1:80", "other.test")

    async def test_listAndAll(self) -> None:
        """
        /targets and /targets/all list the upstream's targets only, paged.
        """
        await self.upstream("other.test")
        await self.target("10.0.0.9", "other.test")
        mine = {(await self.target(f"10.0.0.{n}"))["id"] for n in (1, 2, 3)}
        for path in ("targets", "targets/all"):
            page = await self.ok("GET", f"/upstreams/svc.test/{path}?size=2")
            self.assertEqual(page["next"], f"/upstreams/{self.up['id']}/{path}?offset={page['offset']}&size=2")
            rest = await self.ok("GET", page["next"])
            self.assertEqual({t["id"] for t in page["data"] + rest["data"]}, mine)

    async def test_byIdOrTarget(self) -> None:
        """
        One target by id or by its stored target; another upstream's is 404.
        """
        created = await self.target("a.test")
        self.assertEqual(await self.ok("GET", "/upstreams/svc.test/targets/a.test:8000"), created)
        self.assertEqual(await self.ok("GET", f"/upstreams/{self.up['id']}/targets/{created['id']}"), created)
        await self.upstream("other.test")
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            answer = await self.gw.admin(method, f"/upstreams/other.test/targets/{created['id']}", json={})
            self.assertEqual((answer.code, answer.json()), (404, NOT_FOUND), method)
            answer = await self.gw.admin(method, "/upstreams/svc.test/targets/b.test:8000", json={})
            self.assertEqual((answer.code, answer.json()), (404, NOT_FOUND), method)

    async def test_patchAndPut(self) -> None:
        """
        PATCH and PUT change the given fields (Kong 3); a changed target is normalised.
        """
        created = await self.target("a.test", tags=["x"])
        patched = await self.ok("PATCH", "/upstreams/svc.test/targets/a.test:8000", json={"weight": 0})
        self.assertEqual((patched["id"], patched["weight"], patched["tags"]), (created["id"], 0, ["x"]))
        put = await self.ok("PUT", f"/upstreams/svc.test/targets/{created['id']}", json={"target": "b.test"})
        self.assertEqual((put["target"], put["weight"]), ("b.test:8000", 0))
        answer = await self.gw.admin("PATCH", f"/upstreams/svc.test/targets/{created['id']}", json={"target": "a b"})
        self.assertEqual(answer.json()["fields"],
                         {"target": "Invalid target ('a b'); not a valid hostname or ip address"})

    async def test_delete(self) -> None:
        """
        DELETE answers 204 and the target is gone.
        """
        await self.target("a.test")
        await self.ok("DELETE", "/upstreams/svc.test/targets/a.test:8000", 204)
        self.assertEqual((await self.ok("GET", "/upstreams/svc.test/targets"))["data"], [])

    async def test_noTopLevelTargets(self) -> None:
        """
        Kong 3 has no /targets: 404.
        """
        created = await self.target("a.test")
        for path in ("/targets", f"/targets/{created['id']}"):
            answer = await self.gw.admin("GET", path)
            self.assertEqual((answer.code, answer.json()), (404, NOT_FOUND))

    async def test_unknownUpstream(self) -> None:
        """
        Under an upstream that does not exist: 404.
        """
        for method, path in [("GET", "/upstreams/none.test/targets"), ("POST", "/upstreams/none.test/targets"),
                             ("GET", "/upstreams/none.test/targets/all"), ("GET", "/upstreams/none.test/health"),
                             ("PUT", "/upstreams/none.test/targets/a:1/healthy")]:
            answer = await self.gw.admin(method, path, json={"target": "a.test"})
            self.assertEqual((answer.code, answer.json()), (404, NOT_FOUND), path)


class HealthEndpointTests(UpstreamsTestCase):
    """
    C{/upstreams/{u}/health} without a data plane view, and the stored
    health overrides.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.up = await self.upstream()
        self.t = await self.target("10.0.0.1:80")

    async def test_healthchecksOff(self) -> None:
        """
        With no health checks configured, every target and address is
        HEALTHCHECKS_OFF (Kong's shape: the target's fields, its health,
        its addresses under data.addresses).
        """
        body = await self.ok("GET", "/upstreams/svc.test/health")
        self.assertEqual((body["next"], body["node_id"]), (None, (await self.ok("GET", "/"))["node_id"]))
        [target] = body["data"]
        self.assertEqual({k: target[k] for k in self.t}, self.t)
        self.assertEqual(target["health"], "HEALTHCHECKS_OFF")
        self.assertEqual([(a["ip"], a["port"], a["health"]) for a in target["data"]["addresses"]],
                         [("10.0.0.1", 80, "HEALTHCHECKS_OFF")])

    async def test_balancerHealth(self) -> None:
        """
        ?balancer_health=1 answers the balancer's health.
        """
        body = await self.ok("GET", "/upstreams/svc.test/health?balancer_health=1")
        self.assertEqual((body["data"]["health"], body["data"]["id"], body["next"]),
                         ("HEALTHCHECKS_OFF", self.up["id"], None))

    async def test_override(self) -> None:
        """
        PUT .../healthy and .../unhealthy answer 204 and store one row per target and address.
        """
        await self.ok("PUT", "/upstreams/svc.test/targets/10.0.0.1:80/unhealthy", 204)
        await self.ok("PUT", f"/upstreams/svc.test/targets/{self.t['id']}/healthy", 204)
        await self.ok("PUT", "/upstreams/svc.test/targets/10.0.0.1:80/010.0.0.1/unhealthy", 204)
        rows = self.rows("SELECT target_id::text, address, entity->>'health' FROM target_health_overrides"
                         " ORDER BY address NULLS FIRST")
        self.assertEqual(rows, [(self.t["id"], None, "HEALTHY"), (self.t["id"], "10.0.0.1:8000", "UNHEALTHY")])

    async def test_overrideChangesVersion(self) -> None:
        """
        A health override bumps the configuration version (every node is notified).
        """
        before = (await self.ok("GET", "/status"))["configuration_version"]
        await self.ok("PUT", "/upstreams/svc.test/targets/10.0.0.1:80/healthy", 204)
        self.assertEqual((await self.ok("GET", "/status"))["configuration_version"], before + 1)

    async def test_overrideErrors(self) -> None:
        """
        An unknown target is 404; an address that is no address is 400.
        """
        answer = await self.gw.admin("PUT", "/upstreams/svc.test/targets/10.0.0.2:80/healthy")
        self.assertEqual((answer.code, answer.json()), (404, NOT_FOUND))
        answer = await self.gw.admin("PUT", "/upstreams/svc.test/targets/10.0.0.1:80/a%20b/healthy")
        self.assertEqual((answer.code, answer.json()), (400, {
            "message": "Invalid address ('a b'); not a valid hostname or ip address"}))
        self.assertEqual(self.rows("SELECT count(*) FROM target_health_overrides"), [(0,)])


class _Store:
    """
    Just enough of a store for the health endpoint: one upstream, its targets.
    """

    def __init__(self, upstream: dict, targets: list[dict]):
        self.upstream, self.targets = upstream, targets

    def get(self, entity: str, key: str) -> Any:
        return succeed(self.upstream if key in (self.upstream["id"], self.upstream["name"]) else None)

    def page(self, entity: str, size: int, offset: Any = None, **kw: Any) -> Any:
        return succeed((list(self.targets), None))


class _View:
    """
    A HealthView that knows one target, answering with Deferreds.
    """

    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def targets_health(self, upstream: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]) -> Any:
        self.asked.append((upstream["id"], [t["id"] for t in targets]))
        return succeed({"t1": {"health": "UNHEALTHY", "host": "a.test", "port": 80,
                               "addresses": [{"ip": "10.0.0.1", "port": 80, "weight": 100, "health": "UNHEALTHY"}]}})

    def balancer_health(self, upstream: Mapping[str, Any]) -> Any:
        return succeed({"health": "UNHEALTHY", "balancer_health": "UNHEALTHY", "id": upstream["id"], "details": {}})


class HealthViewTests(unittest.SynchronousTestCase):
    """
    C{GET /upstreams/{u}/health} answers from the L{HealthView} given to the Admin API.
    """

    def get(self, path: str, health: Any) -> Any:
        clock = Clock()
        clock.advance(NOW)
        store = _Store({"id": "u1", "name": "svc.test"},
                       [{"id": "t1", "target": "a.test:80"}, {"id": "t2", "target": "b.test:80"}])
        api = AdminAPI(store=store, plugins={}, clock=clock, node=NODE, new_id=ids(), health=health)
        treq = StubTreq(api.resource())
        started = treq.get("http://127.0.0.1:8001" + path)
        treq.flush()
        response = self.successResultOf(started)
        self.assertEqual(response.code, 200)
        return self.successResultOf(response.json())

    def test_targets(self) -> None:
        """
        Each target gets the view's health and data; one it does not know is DNS_ERROR.
        """
        view = _View()
        body = self.get("/upstreams/svc.test/health", view)
        self.assertEqual(view.asked, [("u1", ["t1", "t2"])])
        self.assertEqual(body, {"data": [
            {"id": "t1", "target": "a.test:80", "health": "UNHEALTHY",
             "data": {"host": "a.test", "port": 80, "addresses": [
                 {"ip": "10.0.0.1", "port": 80, "weight": 100, "health": "UNHEALTHY"}]}},
            {"id": "t2", "target": "b.test:80", "health": "DNS_ERROR", "data": None},
        ], "next": None, "node_id": NODE.node_id})

    def test_balancer(self) -> None:
        """
        ?balancer_health=1 answers the view's balancer health.
        """
        body = self.get("/upstreams/svc.test/health?balancer_health=1", _View())
        self.assertEqual(body["data"]["balancer_health"], "UNHEALTHY")

    def test_default(self) -> None:
        """
        Without a view, the default is HealthchecksOff.
        """
        body = self.get("/upstreams/u1/health", None)
        self.assertEqual([t["health"] for t in body["data"]], ["HEALTHCHECKS_OFF"] * 2)
        self.assertEqual(HealthchecksOff().targets_health({}, [{"id": "x"}]),
                         {"x": {"health": "HEALTHCHECKS_OFF", "addresses": []}})
