"""
The node's balancers end to end: a real node and PostgreSQL, upstreams and
targets created through the Admin API, their health in
C{GET /upstreams/{u}/health}, active health checks against real ports on
127.0.0.1, health overrides reaching a second node, and the prometheus
plugin's C{echogate_upstream_target_health}.
"""
from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from tests.gateway import RunningGateway, start_gateway
from tests.postgres import PostgresMixin
from tests.upstream_server import start_upstream
from tests.waiting import until


async def refusing_port(testcase: unittest.TestCase) -> int:
    """
    A port on 127.0.0.1 that refuses connections: bound, then closed.
    """
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number: int = port.getHost().port
    await port.stopListening()
    return number


def by_target(answer: Any) -> dict[str, dict[str, Any]]:
    """
    The C{data} of a health answer, by C{target}.
    """
    return {item["target"]: item for item in answer.json()["data"]}


#: Active checks every 0.1 s; one failure or success decides.
ACTIVE = {"active": {"timeout": 1, "healthy": {"interval": 0.1, "successes": 1},
                     "unhealthy": {"interval": 0.1, "tcp_failures": 1, "http_failures": 1,
                                   "timeouts": 1}}}


class HealthEndpointTests(unittest.TestCase):
    """
    C{GET /upstreams/{u}/health} answers from the node's balancers.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.upstream, self.live = start_upstream(self)
        self.dead = await refusing_port(self)
        self.gw = await start_gateway(self)

    async def make(self, healthchecks: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"name": "orders.internal"}
        if healthchecks is not None:
            body["healthchecks"] = healthchecks
        answer = await self.gw.admin("POST", "/upstreams", json=body)
        self.assertEqual(answer.code, 201, answer.body)
        for port in (self.live, self.dead):
            answer = await self.gw.admin("POST", "/upstreams/orders.internal/targets",
                                         json={"target": f"127.0.0.1:{port}"})
            self.assertEqual(answer.code, 201, answer.body)

    async def health(self, query: str = "") -> Any:
        answer = await self.gw.admin("GET", "/upstreams/orders.internal/health" + query)
        self.assertEqual(answer.code, 200, answer.body)
        return answer

    async def test_targetsAndAddresses(self) -> None:
        """
        Every target is listed with its addresses, their weight and, health
        checks being off, C{HEALTHCHECKS_OFF}; with the node's id.
        """
        await self.make()

        async def both() -> Any:
            found = by_target(await self.health())
            return len(found) == 2 and all(item["data"]["addresses"] for item in found.values()) and found

        found = await until(both, message="both targets with addresses")
        live = found[f"127.0.0.1:{self.live}"]
        self.assertEqual(live["health"], "HEALTHCHECKS_OFF")
        self.assertEqual(live["data"]["addresses"], [
            {"ip": "127.0.0.1", "port": self.live, "health": "HEALTHCHECKS_OFF", "weight": 100}])
        self.assertEqual((live["data"]["host"], live["data"]["port"], live["data"]["dns"],
                          live["data"]["nodeWeight"]), ("127.0.0.1", self.live, "A", 100))
        self.assertEqual(live["data"]["weight"], {"total": 100, "available": 100, "unavailable": 0})
        self.assertEqual((await self.health()).json()["node_id"], self.gw.service.node_id)

    async def test_balancerHealth(self) -> None:
        """
        C{?balancer_health=1} gives the balancer's health and its weights.
        """
        await self.make()

        async def known() -> Any:
            data = (await self.health("?balancer_health=1")).json()["data"]
            return data and data.get("details") and data["details"]["weight"]["total"] == 200 and data

        data = await until(known, message="the balancer's health")
        self.assertEqual((data["health"], data["balancer_health"]), ("HEALTHCHECKS_OFF", "HEALTHY"))
        self.assertEqual(data["details"]["weight"], {"total": 200, "available": 200, "unavailable": 0})

    async def test_activeChecks(self) -> None:
        """
        With active checks on, the target whose port refuses turns
        C{UNHEALTHY} and the live one is C{HEALTHY}.
        """
        await self.make(ACTIVE)

        async def decided() -> Any:
            found = by_target(await self.health())
            states = {target: item["health"] for target, item in found.items()}
            return states.get(f"127.0.0.1:{self.dead}") == "UNHEALTHY" and found

        found = await until(decided, message="the dead target found unhealthy")
        self.assertEqual(found[f"127.0.0.1:{self.live}"]["health"], "HEALTHY")
        self.assertEqual(found[f"127.0.0.1:{self.dead}"]["data"]["addresses"][0]["health"], "UNHEALTHY")
        # Set unhealthy by hand, the live target is found healthy again.
        live = f"127.0.0.1:{self.live}"
        await self.gw.admin("PUT", f"/upstreams/orders.internal/targets/{live}/unhealthy")
        await until(lambda: self._state(live, "UNHEALTHY"), message="set unhealthy")
        await until(lambda: self._state(live, "HEALTHY"), message="found healthy by the checks")

    async def test_activeHttpStatus(self) -> None:
        """
        An HTTP check counts the status of a GET of C{http_path}: a
        target answering 503 there turns C{UNHEALTHY}.
        """
        await self.make({"active": {**ACTIVE["active"], "http_path": "/status/503"}})
        live = f"127.0.0.1:{self.live}"
        await until(lambda: self._state(live, "UNHEALTHY"), message="the 503 target unhealthy")

    async def test_overrideApplied(self) -> None:
        """
        C{PUT .../targets/{t}/unhealthy} makes the target C{UNHEALTHY} on
        the node; C{.../healthy} brings it back.
        """
        await self.make({"passive": {"unhealthy": {"tcp_failures": 3}}})
        target = f"127.0.0.1:{self.live}"
        await until(lambda: self._state(target, "HEALTHY"), message="healthy first")
        answer = await self.gw.admin("PUT", f"/upstreams/orders.internal/targets/{target}/unhealthy")
        self.assertEqual(answer.code, 204, answer.body)
        await until(lambda: self._state(target, "UNHEALTHY"), message="unhealthy after the PUT")
        await self.gw.admin("PUT", f"/upstreams/orders.internal/targets/{target}/127.0.0.1:{self.live}/healthy")
        await until(lambda: self._state(target, "HEALTHY"), message="healthy after the address PUT")

    async def _state(self, target: str, state: str) -> bool:
        item = by_target(await self.health()).get(target)
        return item is not None and item["health"] == state


class OverrideAcrossNodesTests(unittest.TestCase, PostgresMixin):
    """
    A health override set through one node's Admin API reaches the other
    nodes with the configuration.
    """

    timeout = 60

    async def test_otherNodeSeesIt(self) -> None:
        """
        C{PUT .../unhealthy} on node A: node B's C{/upstreams/{u}/health}
        shows the target C{UNHEALTHY}.
        """
        dsn = self.database()
        quiet = {"config_check_interval": "600"}
        a = await start_gateway(self, database=dsn, settings=quiet)
        b = await start_gateway(self, database=dsn, settings=quiet)
        await a.admin("POST", "/upstreams", json={
            "name": "u", "healthchecks": {"passive": {"unhealthy": {"timeouts": 2}}}})
        await a.admin("POST", "/upstreams/u/targets", json={"target": "127.0.0.1:9"})

        async def state(node: RunningGateway) -> str | None:
            data = (await node.admin("GET", "/upstreams/u/health")).json()["data"]
            return data[0]["health"] if data else None

        await until(lambda: _is(state(b), "HEALTHY"), message="B knows the target")
        answer = await a.admin("PUT", "/upstreams/u/targets/127.0.0.1:9/unhealthy")
        self.assertEqual(answer.code, 204, answer.body)
        await until(lambda: _is(state(b), "UNHEALTHY"), message="B sees the override")
        self.assertEqual(await state(a), "UNHEALTHY")


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


class TargetHealthMetricTests(unittest.TestCase, PostgresMixin):
    """
    The prometheus plugin's C{echogate_upstream_target_health}.
    """

    timeout = 60

    async def test_exported(self) -> None:
        """
        With a prometheus config asking for C{upstream_health_metrics}, a
        node's C{/metrics} has one sample per state of each address, 1
        for its state.
        """
        dsn = self.database()
        a = await start_gateway(self, database=dsn)
        await a.admin("POST", "/upstreams", json={"name": "u"})
        await a.admin("POST", "/upstreams/u/targets", json={"target": "127.0.0.1:9"})
        answer = await a.admin("POST", "/plugins", json={
            "name": "prometheus", "config": {"upstream_health_metrics": True}})
        self.assertEqual(answer.code, 201, answer.body)
        # A node started now is told of the config at start-up (init).
        b = await start_gateway(self, database=dsn)

        async def samples() -> Any:
            text = (await b.admin("GET", "/metrics")).body.decode()
            found = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "echogate_upstream_target_health":
                        found[sample.labels["state"]] = (sample.labels, sample.value)
            return found

        found = await until(samples, message="the target health metric")
        labels, value = found["healthchecks_off"]
        self.assertEqual(value, 1)
        self.assertEqual((labels["upstream"], labels["target"], labels["address"], labels["subsystem"]),
                         ("u", "127.0.0.1:9", "127.0.0.1:9", "http"))
        self.assertEqual({state: value for state, (_, value) in found.items()},
                         {"healthchecks_off": 1, "healthy": 0, "unhealthy": 0, "dns_error": 0})
