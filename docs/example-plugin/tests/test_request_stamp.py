"""
Tests for the request-stamp example plugin, through echogate's in-memory
gateway. Run them from the project directory:

    PYTHONPATH=. trial tests
"""
from __future__ import annotations

import random

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.plugins.request_stamp import RequestStamp
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import SchemaViolation
from echogate.plugin import NodeNotBound
from echogate.registry import check_plugin, discover, is_bundled
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen


def gateway(config: dict | None = None, upstream=None) -> GatewayHarness:
    """
    A gateway with request-stamp configured globally; the plugin takes the
    harness's node, whose reactor is the gateway's fake clock.
    """
    extra = {"upstream": upstream} if upstream is not None else {}
    return GatewayHarness([RequestStamp()], configs=[("request-stamp", config or {})], clock=Clock(), **extra)


def held_upstream(pending: list[Deferred]):
    """
    An upstream that answers only when the test fires its Deferred.
    """

    def upstream(request: UpstreamRequestSeen) -> Deferred:
        d: Deferred = Deferred()
        pending.append(d)
        return d

    return upstream


class DiscoveryTests(SynchronousTestCase):
    """
    The drop-in is found the way the gateway finds plugins at start-up.
    """

    def test_found(self) -> None:
        """
        C{getPlugins} finds request-stamp, a third-party plugin that passes
        the start-up checks.
        """
        available, failures = discover()
        self.assertEqual(failures, [])
        plugin = available["request-stamp"]
        self.assertFalse(is_bundled(plugin))
        check_plugin(plugin)

    def test_nodeReactor(self) -> None:
        """
        The plugin measures with its node's reactor, given through
        C{node_service}; before a node is given it has no clock (and never
        falls back to the global reactor).
        """
        plugin = RequestStamp()
        self.assertRaises(NodeNotBound, plugin._now)
        clock = Clock()
        clock.advance(42)
        GatewayHarness([plugin], clock=clock)
        self.assertEqual(plugin._now(), 42)

    def test_immutable(self) -> None:
        """
        The plugin object refuses request state.
        """
        self.assertRaises(AttributeError, setattr, RequestStamp(), "started", 0)


class StampTests(SynchronousTestCase):
    """
    Every response is stamped with the request id and the time spent.
    """

    def test_stamp(self) -> None:
        """
        The stamp carries the id sent upstream and the milliseconds that
        passed while the upstream answered.
        """
        pending: list[Deferred] = []
        harness = gateway(upstream=held_upstream(pending))
        result = harness.request("GET", "/")
        harness.clock.advance(0.25)
        pending[0].callback(UpstreamAnswer(200, {}, b"ok"))
        response = self.successResultOf(result)
        request_id = harness.upstream_requests[0].header("x-request-id")
        self.assertEqual(len(request_id), 32)
        self.assertEqual(response.header("x-request-stamp"), f"id={request_id}; ms=250")

    def test_customHeaders(self) -> None:
        """
        Both header names come from the config.
        """
        harness = gateway({"header": "X-Stamp", "forward_id_as": "X-Trace"})
        response = self.successResultOf(harness.request("GET", "/"))
        request_id = harness.upstream_requests[0].header("x-trace")
        self.assertEqual(response.header("x-stamp"), f"id={request_id}; ms=0")
        self.assertIsNone(response.header("x-request-stamp"))

    def test_noForwarding(self) -> None:
        """
        With C{forward_id_as} null, the id is not sent upstream.
        """
        harness = gateway({"forward_id_as": None})
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertIsNone(harness.upstream_requests[0].header("x-request-id"))
        self.assertTrue(response.header("x-request-stamp").startswith("id="))

    def test_concurrent(self) -> None:
        """
        With many requests in flight, answered in any order, each response
        carries its own request's id and time.
        """
        pending: list[Deferred] = []
        harness = gateway(upstream=held_upstream(pending))
        results = [harness.request("GET", f"/{i}") for i in range(200)]
        order = list(range(200))
        random.Random(7).shuffle(order)
        for _step, index in enumerate(order):
            harness.clock.advance(0.001)
            pending[index].callback(UpstreamAnswer(200, {}, b"%d" % index))
        for index, result in enumerate(results):
            response = self.successResultOf(result)
            request_id = harness.upstream_requests[index].header("x-request-id")
            spent = order.index(index) + 1
            self.assertEqual(response.header("x-request-stamp"), f"id={request_id}; ms={spent}")


class RefusalTests(SynchronousTestCase):
    """
    With C{required_header} set, requests without it are refused.
    """

    def test_refused(self) -> None:
        """
        A request without the header gets the refusal, stamped, and never
        reaches the service.
        """
        harness = gateway({"required_header": "X-Api-Version"})
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json(), {"message": "the X-Api-Version header is required"})
        self.assertTrue(response.header("x-request-stamp").startswith("id="))
        self.assertEqual(harness.upstream_requests, [])

    def test_allowed(self) -> None:
        """
        A request with the header goes through.
        """
        harness = gateway({"required_header": "X-Api-Version"})
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Api-Version": "2"}))
        self.assertEqual(response.status, 200)
        self.assertEqual(len(harness.upstream_requests), 1)

    def test_status(self) -> None:
        """
        The refusal's status comes from the config.
        """
        harness = gateway({"required_header": "X-Api-Version", "reject_status": 412})
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).status, 412)

    def test_delay(self) -> None:
        """
        With C{reject_delay}, the refusal waits that long; the stamp counts
        the wait.
        """
        harness = gateway({"required_header": "X-Api-Version", "reject_delay": 1.5})
        result = harness.request("GET", "/")
        harness.clock.advance(1.4)
        self.assertNoResult(result)
        harness.clock.advance(0.1)
        response = self.successResultOf(result)
        self.assertEqual(response.status, 400)
        self.assertTrue(response.header("x-request-stamp").endswith("; ms=1500"))


class LogTests(SynchronousTestCase):
    """
    With C{log} true, one line per request.
    """

    def setUp(self) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == "echogate.plugins.request-stamp"]

    def test_line(self) -> None:
        """
        The line names the plugin, request, status and time.
        """
        harness = gateway({"log": True})
        self.successResultOf(harness.request("GET", "/things"))
        request_id = harness.upstream_requests[0].header("x-request-id")
        self.assertEqual(self.lines(), [f"[request-stamp {request_id}] GET /things -> 200 in 0 ms"])

    def test_refusalLine(self) -> None:
        """
        A refusal is logged as one.
        """
        harness = gateway({"log": True, "required_header": "X-Api-Version"})
        self.successResultOf(harness.request("POST", "/things"))
        (line,) = self.lines()
        self.assertTrue(line.endswith("POST /things -> 400 in 0 ms (refused)"), line)

    def test_quiet(self) -> None:
        """
        By default nothing is logged.
        """
        self.successResultOf(gateway().request("GET", "/"))
        self.assertEqual(self.lines(), [])


class SchemaTests(SynchronousTestCase):
    """
    request-stamp's config schema.
    """

    schema = RequestStamp.config_schema

    def test_defaults(self) -> None:
        """
        An empty config is complete.
        """
        self.assertEqual(self.schema.validate({}), {
            "header": "X-Request-Stamp", "forward_id_as": "X-Request-Id", "required_header": None,
            "reject_status": 400, "reject_delay": 0, "log": False,
        })

    def test_errors(self) -> None:
        """
        Every bad field is reported at once.
        """
        error = self.assertRaises(SchemaViolation, self.schema.validate,
                                  {"reject_status": 302, "reject_delay": -1, "log": "yes", "header": "", "x": 1})
        self.assertEqual(error.fields, {
            "reject_status": "value should be between 400 and 499",
            "reject_delay": "value should be between 0 and 60",
            "log": "expected a boolean",
            "header": "length must be at least 1",
            "x": "unknown field",
        })

    def test_harnessRefusesBadConfig(self) -> None:
        """
        The harness validates configs as the Admin API does.
        """
        self.assertRaises(SchemaViolation, gateway, {"reject_status": 200})
