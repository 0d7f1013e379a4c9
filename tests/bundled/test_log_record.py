"""
Tests for Kong's log shape (L{echogate.bundled.log_record}), built from
requests run through L{GatewayHarness}.
"""
from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.log_record import REDACTED, latencies, log_record
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import ROUTE_ID, SERVICE_ID, GatewayHarness, UpstreamAnswer, _raw_request


class _Recorder(GatewayPlugin):
    """
    Keeps the log record of every request (in a list handed in).
    """

    name = "recorder"
    version = "1.0.0"
    priority = 1
    config_schema = Record({})

    def __init__(self, records: list, clock: Clock, exit: bool = False) -> None:
        object.__setattr__(self, "_records", records)
        object.__setattr__(self, "_clock", clock)
        object.__setattr__(self, "_exit", exit)

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        self._clock.advance(0.005)
        if self._exit:
            ctx.exit(403, {"message": "no"})

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        self._records.append(log_record(ctx, self._clock.seconds()))


class LogRecordTests(SynchronousTestCase):
    """
    L{log_record} builds Kong's log document.
    """

    def record(self, *, exit: bool = False, upstream: Any = None, path: str = "/x/y?a=1&b&a=2",
               headers: dict | None = None, body: bytes = b"", method: str = "GET") -> dict:
        clock = Clock()
        clock.advance(1700000000)
        records: list = []

        def slow_upstream(request: Any) -> Any:
            d: Deferred = Deferred()
            clock.callLater(0.02, d.callback, UpstreamAnswer(201, {"Content-Type": "text/plain",
                                                                   "X-Multi": "a"}, b"hello"))
            return d

        harness = GatewayHarness([_Recorder(records, clock, exit)], configs=[("recorder", {})],
                                 upstream=upstream or slow_upstream, clock=clock)
        d = harness.request(method, path, headers=headers, body=body, client_ip="10.1.2.3")
        clock.advance(0.02)
        self.successResultOf(d)
        self.assertEqual(len(records), 1)
        return records[0]

    def test_request(self) -> None:
        """
        The request part: id, uri with the query, url, querystring (repeated
        arguments as lists, blank ones as true), method, headers, size.
        """
        record = self.record(headers={"X-Two": "v"})
        request = record["request"]
        self.assertEqual(request["uri"], "/x/y?a=1&b&a=2")
        self.assertEqual(request["url"], "http://gateway.test:8000/x/y?a=1&b&a=2")
        self.assertEqual(request["querystring"], {"a": ["1", "2"], "b": True})
        self.assertEqual(request["method"], "GET")
        self.assertEqual(request["headers"]["x-two"], "v")
        self.assertEqual(len(request["id"]), 32)
        self.assertGreater(request["size"], len("GET /x/y?a=1&b&a=2 HTTP/1.1"))

    def test_requestBodySize(self) -> None:
        """
        The request's size counts its body.
        """
        small = self.record(method="POST", body=b"")["request"]["size"]
        large = self.record(method="POST", body=b"z" * 1000)["request"]["size"]
        self.assertEqual(large - small, 1000 + 3)  # and "1000" for "0" in Content-Length

    def test_requestSizeAsSent(self) -> None:
        """
        The request's size is its bytes as the client sent them (nginx's
        C{$request_length}): spaces around a header's value count, though
        the value is read without them; the body counts too.
        """
        headers = {"X-Padded": "   v   "}
        sent = _raw_request("GET", "/x/y?a=1&b&a=2", headers, b"")
        self.assertEqual(self.record(headers=headers)["request"]["size"], len(sent))
        sent = _raw_request("POST", "/x/y?a=1&b&a=2", headers, b"body")
        self.assertEqual(self.record(method="POST", headers=headers, body=b"body")["request"]["size"], len(sent))

    def test_requestSizeWorkedOut(self) -> None:
        """
        A request whose head was not counted as it came (an HTTP/2 one)
        has its size worked out from its request line and headers: a tidy
        head's size as sent, and the body.
        """
        original = _Recorder.access

        def uncounted(plugin: Any, ctx: Any, config: Mapping[str, Any]) -> None:
            ctx.request._request.head_size = None
            original(plugin, ctx, config)

        self.patch(_Recorder, "access", uncounted)
        headers = {"X-Two": "v"}
        sent = _raw_request("GET", "/x/y?a=1&b&a=2", headers, b"")
        self.assertEqual(self.record(headers=headers)["request"]["size"], len(sent))
        sent = _raw_request("POST", "/x/y?a=1&b&a=2", headers, b"body")
        self.assertEqual(self.record(method="POST", headers=headers, body=b"body")["request"]["size"], len(sent))

    def test_secretsRedacted(self) -> None:
        """
        Authorization and Proxy-Authorization read REDACTED.
        """
        record = self.record(headers={"Authorization": "Basic c2VjcmV0", "Proxy-Authorization": "x"})
        self.assertEqual(record["request"]["headers"]["authorization"], REDACTED)
        self.assertEqual(record["request"]["headers"]["proxy-authorization"], REDACTED)

    def test_response(self) -> None:
        """
        The response part: status, headers, size (with the body); the
        upstream's status and the upstream uri.
        """
        record = self.record()
        self.assertEqual(record["response"]["status"], 201)
        self.assertEqual(record["response"]["headers"]["x-multi"], "a")
        self.assertGreater(record["response"]["size"], len(b"hello"))
        self.assertEqual(record["upstream_status"], "201")
        self.assertEqual(record["upstream_uri"], "/x/y?a=1&b&a=2")
        self.assertEqual(record["source"], "upstream")

    def test_latencies(self) -> None:
        """
        kong (before the upstream), proxy (the upstream's answer) and request
        (the whole) in milliseconds; started_at in milliseconds.
        """
        record = self.record()
        self.assertEqual(record["latencies"], {"kong": 5, "proxy": 20, "request": 25, "receive": 0})
        self.assertEqual(record["started_at"], 1700000000000)

    def test_entities(self) -> None:
        """
        The route and service are there whole; no consumer, no credential.
        """
        record = self.record()
        self.assertEqual(record["route"]["id"], ROUTE_ID)
        self.assertEqual(record["service"]["id"], SERVICE_ID)
        self.assertEqual(record["route"]["paths"], ["/"])
        self.assertIsNone(record["consumer"])
        self.assertIsNone(record["authenticated_entity"])
        self.assertEqual(record["client_ip"], "10.1.2.3")

    def test_exit(self) -> None:
        """
        A plugin's answer: no upstream, proxy latency -1, source exit.
        """
        record = self.record(exit=True)
        self.assertEqual(record["response"]["status"], 403)
        self.assertEqual(record["latencies"]["proxy"], -1)
        self.assertEqual(record["latencies"]["kong"], 5)
        self.assertEqual(record["upstream_uri"], "")
        self.assertEqual(record["upstream_status"], "")
        self.assertEqual(record["source"], "exit")

    def test_error(self) -> None:
        """
        The gateway's own error answer: source error.
        """
        def broken(request: Any) -> Any:
            raise ConnectionRefusedError()

        record = self.record(upstream=broken)
        self.assertEqual(record["response"]["status"], 502)
        self.assertEqual(record["source"], "error")


class LatenciesTests(SynchronousTestCase):
    """
    L{latencies} splits a request's time.
    """

    class _Ctx:
        def __init__(self, started: float, sent: float | None, responded: float | None):
            self.started, self.upstream_started, self.upstream_responded = started, sent, responded

    def test_upstream(self) -> None:
        """
        With an upstream: before it, its answer, and the body after it.
        """
        times = latencies(self._Ctx(10.0, 10.002, 10.050), 10.060)
        self.assertEqual((times.gateway, times.upstream, times.total, times.receive), (2, 48, 60, 10))

    def test_noUpstream(self) -> None:
        """
        Without an upstream, all of it is the gateway's.
        """
        times = latencies(self._Ctx(10.0, None, None), 10.007)
        self.assertEqual((times.gateway, times.upstream, times.total), (7, None, 7))

    def test_upstreamNeverAnswered(self) -> None:
        """
        An upstream that never answered has no upstream latency.
        """
        times = latencies(self._Ctx(10.0, 10.001, None), 10.5)
        self.assertEqual((times.gateway, times.upstream, times.total), (1, None, 500))
