"""
Tests for the bundled correlation-id plugin
(L{echogate.bundled.correlation_id}).
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.correlation_id import ConnectionSerials, CorrelationId, random_uuid
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.registry import check_plugin
from echogate.testing import GatewayHarness
from tests.proxy.test_plugin_contract import make_plugin

NAME = "correlation-id"
PROCESS = "11111111-2222-4333-8444-555555555555"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def harness(plugin: CorrelationId | None = None, **config: Any) -> GatewayHarness:
    return GatewayHarness([plugin or CorrelationId(process_id=PROCESS)], configs=[(NAME, config)])


class CorrelationIdTests(SynchronousTestCase):
    """
    correlation-id puts an id in a request header, and optionally echoes it.
    """

    def request(self, gateway: GatewayHarness, headers: dict[str, str] | None = None, path: str = "/") -> Any:
        return self.successResultOf(gateway.request("GET", path, headers=headers))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority, and is
        immutable.
        """
        plugin = CorrelationId()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 100001))
        check_plugin(plugin)

    def test_counterByDefault(self) -> None:
        """
        By default the upstream gets C{Kong-Request-ID: <process uuid>#<n>},
        counting up.
        """
        gateway = harness()
        self.request(gateway)
        self.request(gateway)
        self.assertEqual([r.header("kong-request-id") for r in gateway.upstream_requests],
                         [f"{PROCESS}#1", f"{PROCESS}#2"])

    def test_processIdIsUuid(self) -> None:
        """
        Without an injected one, the process id is a fresh UUID, different
        for each plugin object.
        """
        first, second = CorrelationId(), CorrelationId()
        self.assertRegex(first.process_id, _UUID)
        self.assertNotEqual(first.process_id, second.process_id)

    def test_uuid(self) -> None:
        """
        The C{uuid} generator makes a new UUID for each request.
        """
        gateway = harness(generator="uuid")
        self.request(gateway)
        self.request(gateway)
        values = [r.header("kong-request-id") for r in gateway.upstream_requests]
        for value in values:
            self.assertRegex(value, _UUID)
        self.assertNotEqual(values[0], values[1])

    def test_uuidWithoutUUID(self) -> None:
        """
        The C{uuid} generator formats random bytes itself, without making
        a L{uuid.UUID} (L{random_uuid}).
        """
        def uuid4() -> None:
            raise AssertionError("uuid.uuid4 called")

        gateway = harness(generator="uuid")
        self.patch(uuid, "uuid4", uuid4)
        self.request(gateway)
        self.assertRegex(gateway.upstream_requests[0].header("kong-request-id") or "", _UUID)

    def test_randomUuid(self) -> None:
        """
        L{random_uuid} gives version 4 UUIDs of the RFC 4122 variant, in
        the text form L{uuid.UUID} gives, each different.
        """
        values = [random_uuid() for _ in range(200)]
        for value in values:
            parsed = uuid.UUID(value)
            self.assertEqual((parsed.version, parsed.variant, str(parsed)), (4, uuid.RFC_4122, value))
            self.assertRegex(value, _UUID)
        self.assertEqual(len(set(values)), len(values))

    def test_tracker(self) -> None:
        """
        The C{tracker} generator gives the server address and port, the
        process id, the connection's serial and request count, and the time
        the request started (by the gateway's clock).
        """
        clock = Clock()
        clock.advance(1700000000.25)
        gateway = GatewayHarness([CorrelationId()], configs=[(NAME, {"generator": "tracker"})], clock=clock)
        self.request(gateway)
        self.request(gateway)
        values = [r.header("kong-request-id") for r in gateway.upstream_requests]
        pid = os.getpid()
        self.assertEqual(values, [f"127.0.0.1-8000-{pid}-1-1-1700000000.250",
                                  f"127.0.0.1-8000-{pid}-2-1-1700000000.250"])

    def test_connectionSerials(self) -> None:
        """
        Requests on the same connection share its serial and count up.
        """
        serials = ConnectionSerials()

        class Connection:
            pass

        one, two = Connection(), Connection()
        self.assertEqual([serials.count(one), serials.count(one), serials.count(two), serials.count(one)],
                         [(1, 1), (1, 2), (2, 1), (1, 3)])

    def test_keepsClientValue(self) -> None:
        """
        A request that has the header keeps its value.
        """
        gateway = harness()
        self.request(gateway, {"Kong-Request-ID": "mine"})
        self.assertEqual(gateway.upstream_requests[0].header("kong-request-id"), "mine")

    def test_emptyClientValueReplaced(self) -> None:
        """
        An empty header gets a generated value.
        """
        gateway = harness()
        self.request(gateway, {"Kong-Request-ID": ""})
        self.assertEqual(gateway.upstream_requests[0].header("kong-request-id"), f"{PROCESS}#1")

    def test_headerName(self) -> None:
        """
        C{header_name} names the header.
        """
        gateway = harness(header_name="X-Trace")
        self.request(gateway)
        seen = gateway.upstream_requests[0]
        self.assertEqual((seen.header("x-trace"), seen.header("kong-request-id")), (f"{PROCESS}#1", None))

    def test_nullHeaderName(self) -> None:
        """
        A null C{header_name} sets nothing, even when echoing.
        """
        gateway = harness(header_name=None, echo_downstream=True)
        response = self.request(gateway)
        self.assertEqual(response.status, 200)
        self.assertIsNone(gateway.upstream_requests[0].header("kong-request-id"))
        self.assertIsNone(response.header("kong-request-id"))

    def test_noEchoByDefault(self) -> None:
        """
        By default the client does not get the header back.
        """
        response = self.request(harness())
        self.assertIsNone(response.header("kong-request-id"))

    def test_echoDownstream(self) -> None:
        """
        With C{echo_downstream} the client gets the id the service got.
        """
        gateway = harness(echo_downstream=True)
        response = self.request(gateway)
        self.assertEqual(response.header("kong-request-id"), f"{PROCESS}#1")
        self.assertEqual(gateway.upstream_requests[0].header("kong-request-id"), f"{PROCESS}#1")

    def test_echoClientValue(self) -> None:
        """
        A client's own value is echoed.
        """
        response = self.request(harness(echo_downstream=True), {"Kong-Request-ID": "mine"})
        self.assertEqual(response.header("kong-request-id"), "mine")

    def test_echoReplacesServiceHeader(self) -> None:
        """
        The echoed id replaces a header of that name from the service.
        """

        def upstream(request: Any) -> Any:
            from echogate.testing import UpstreamAnswer

            return UpstreamAnswer(200, {"Kong-Request-ID": "service's"}, b"")

        gateway = GatewayHarness([CorrelationId(process_id=PROCESS)], configs=[(NAME, {"echo_downstream": True})],
                                 upstream=upstream)
        response = self.request(gateway)
        self.assertEqual(response.headers["kong-request-id"], [f"{PROCESS}#1"])

    def test_echoWithoutRoute(self) -> None:
        """
        A request that matched no route (so no access phase ran) still gets
        a generated id when echoing, as Kong does.
        """
        gateway = GatewayHarness([CorrelationId(process_id=PROCESS)], configs=[(NAME, {"echo_downstream": True})],
                                 route={"paths": ["/only"]})
        response = self.request(gateway, path="/elsewhere")
        self.assertEqual((response.status, response.header("kong-request-id")), (404, f"{PROCESS}#1"))

    def test_shared(self) -> None:
        """
        The id is left in C{ctx.shared["correlation_id"]} for later plugins.
        """
        seen = []

        def access(self_: Any, ctx: Any, config: Any) -> None:
            seen.append(ctx.shared.get("correlation_id"))

        gateway = GatewayHarness([CorrelationId(process_id=PROCESS), make_plugin("reader", 1, access=access)],
                                 configs=[(NAME, {}), ("reader", {})])
        self.request(gateway, {"Kong-Request-ID": "given"})
        self.request(gateway)
        self.assertEqual(seen, ["given", f"{PROCESS}#1"])

    def test_runsBeforeOtherPlugins(self) -> None:
        """
        Its priority puts it first, so a plugin that answers in access (here
        priority 100000) still has the id to echo.
        """

        def refuse(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(403, {"message": "no"})

        gateway = GatewayHarness([CorrelationId(process_id=PROCESS), make_plugin("refuser", 100000, access=refuse)],
                                 configs=[(NAME, {"echo_downstream": True}), ("refuser", {})])
        response = self.request(gateway)
        self.assertEqual((response.status, response.header("kong-request-id")), (403, f"{PROCESS}#1"))


class CorrelationIdSchemaTests(SynchronousTestCase):
    """
    correlation-id's config schema.
    """

    schema = CorrelationId.config_schema

    def violation(self, config: dict) -> dict:
        return self.assertRaises(SchemaViolation, self.schema.validate, config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults.
        """
        self.assertEqual(self.schema.validate({}), {"header_name": "Kong-Request-ID", "generator": "uuid#counter",
                                                    "echo_downstream": False})

    def test_headerName(self) -> None:
        """
        C{header_name} is a non-empty string.
        """
        self.assertEqual(self.violation({"header_name": 1}), {"header_name": "expected a string"})
        self.assertEqual(self.violation({"header_name": ""}), {"header_name": "length must be at least 1"})

    def test_generator(self) -> None:
        """
        C{generator} is one of the three, never null.
        """
        self.assertEqual(self.violation({"generator": "random"}),
                         {"generator": "expected one of: uuid, uuid#counter, tracker"})
        self.assertEqual(self.violation({"generator": None}), {"generator": "required field missing"})

    def test_echoDownstream(self) -> None:
        """
        C{echo_downstream} is a boolean, never null.
        """
        self.assertEqual(self.violation({"echo_downstream": 1}), {"echo_downstream": "expected a boolean"})
        self.assertEqual(self.violation({"echo_downstream": None}), {"echo_downstream": "required field missing"})

