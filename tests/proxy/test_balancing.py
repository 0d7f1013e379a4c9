"""
Tests for L{echogate.proxy.balancing.Balanced}: one request to a
load-balanced service, with the balancer of L{echogate.balancer} and an
upstream client double that answers as told.
"""
from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet import error as ierror
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from echogate.balancer import Balancers
from echogate.errors import ProxyError
from echogate.pdk.context import ClientRequest, RequestContext
from echogate.proxy.balancing import NO_PEER, Balanced


class _Handle:
    def __init__(self, callbacks: tuple[Any, ...] = ()) -> None:
        self.called = False
        self.cancelled = False
        # (as the lean client's handle does: it keeps the callbacks)
        self.callbacks = callbacks

    def cancel(self) -> None:
        self.cancelled = True


class _Client:
    """
    Records each attempt (the service it was given) and leaves answering
    to the test.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[dict, Any, Any, _Handle]] = []

    def send(self, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
             callback: Any, errback: Any, args: tuple = ()) -> _Handle:
        handle = _Handle((callback, errback))
        self.attempts.append((service, callback, errback, handle))
        return handle

    def respond(self, code: int = 200) -> None:
        _, callback, _, handle = self.attempts[-1]
        handle.called = True
        callback(_Response(code))

    def fail(self, error: BaseException, status: int = 502) -> None:
        _, _, errback, handle = self.attempts[-1]
        handle.called = True
        proxy_error = ProxyError(status, "An invalid response was received from the upstream server")
        proxy_error.__cause__ = error
        errback(Failure(proxy_error))


class _Response:
    def __init__(self, code: int):
        self.code = code


class _Request:
    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.method = b"GET"
        self.requestHeaders = Headers({k: [v] for k, v in (headers or {}).items()})

    def isSecure(self) -> bool:
        return False


def _ctx(headers: dict[str, str] | None = None) -> RequestContext:
    request = _Request(headers)
    return RequestContext(request, ClientRequest(request, "/", "/", "", "10.0.0.1"), 0.0)


UPSTREAM = {"id": "u1", "name": "backend", "algorithm": "round-robin", "hash_on": "none", "slots": 100,
            "healthchecks": {"active": {"healthy": {"interval": 0}, "unhealthy": {"interval": 0}},
                             "passive": {"unhealthy": {"tcp_failures": 1, "http_failures": 0, "timeouts": 0},
                                         "healthy": {"successes": 0}},
                             "threshold": 0}}


def _targets(*ports: int) -> list[dict]:
    return [{"id": f"t{port}", "upstream": {"id": "u1"}, "target": f"127.0.0.1:{port}", "weight": 100}
            for port in ports]


class BalancedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.balancers = Balancers(self.clock)
        self.balancers.update([UPSTREAM], _targets(1001, 1002, 1003))
        self.client = _Client()
        self.answers: list[Any] = []
        self.failures: list[Failure] = []

    def send(self, retries: int = 5, ctx: RequestContext | None = None) -> Balanced:
        ctx = ctx if ctx is not None else _ctx()
        balanced = Balanced(self.balancers, self.balancers.get("backend"), self.client, ctx, self.clock)
        return balanced.send({"host": "backend", "port": 80, "retries": retries}, b"GET", b"/", [], None,
                             self.answers.append, self.failures.append)

    def test_peerAddressGiven(self) -> None:
        """Each attempt goes to the picked peer's address and port, with no retries of its own."""
        self.send()
        service = self.client.attempts[0][0]
        self.assertEqual((service["host"], service["retries"]), ("127.0.0.1", 0))
        self.assertIn(service["port"], (1001, 1002, 1003))

    def test_roundRobinSpreads(self) -> None:
        """Three requests go to three different targets."""
        for _ in range(3):
            self.send()
            self.client.respond()
        self.assertEqual(sorted(a[0]["port"] for a in self.client.attempts), [1001, 1002, 1003])

    def test_connectFailureRetriedElsewhere(self) -> None:
        """A connection refused is tried again on another peer, never the same one."""
        self.send()
        self.client.fail(ierror.ConnectionRefusedError())
        self.client.fail(ierror.ConnectionRefusedError())
        self.client.respond(200)
        ports = [a[0]["port"] for a in self.client.attempts]
        self.assertEqual(len(set(ports)), 3, ports)
        self.assertEqual([a.code for a in self.answers], [200])

    def test_triedPeerExcluded(self) -> None:
        """
        With passive checks off (a refused peer stays healthy), a retry
        still goes to a peer not tried yet.
        """
        upstream = {**UPSTREAM, "algorithm": "consistent-hashing", "hash_on": "header", "hash_on_header": "x-k",
                    "hash_fallback": "none", "healthchecks": {**UPSTREAM["healthchecks"], "passive": {
                        "unhealthy": {"tcp_failures": 0, "http_failures": 0, "timeouts": 0},
                        "healthy": {"successes": 0}}}}
        self.balancers.update([upstream], _targets(1001, 1002))
        for _ in range(4):
            # (one key: without the exclusion, the ring gives the same peer)
            self.send(ctx=_ctx({"X-K": "same"}))
            self.client.fail(ierror.ConnectionRefusedError())
            self.client.respond()
            ports = [a[0]["port"] for a in self.client.attempts[-2:]]
            self.assertNotEqual(ports[0], ports[1])

    def test_retriesBounded(self) -> None:
        """With retries 1, a second refusal is the answer (no third try)."""
        self.send(retries=1)
        self.client.fail(ierror.ConnectionRefusedError())
        self.client.fail(ierror.ConnectionRefusedError())
        self.assertEqual(len(self.client.attempts), 2)
        self.assertEqual(len(self.failures), 1)

    def test_sentRequestNotReplayed(self) -> None:
        """A failure after the request may have been sent (a reset) is not retried."""
        self.send()
        self.client.fail(ierror.ConnectionLost())
        self.assertEqual(len(self.client.attempts), 1)
        self.assertEqual(len(self.failures), 1)

    def test_timeoutNotRetried(self) -> None:
        """A 504 (the service took too long) is not retried."""
        self.send()
        self.client.fail(RuntimeError("deadline"), status=504)
        self.assertEqual(len(self.client.attempts), 1)
        self.assertEqual(self.failures[0].value.status, 504)

    def test_noPeer(self) -> None:
        """Every target tried and refused: Kong's 503 when none is left."""
        self.send(retries=10)
        for _ in range(3):
            self.client.fail(ierror.ConnectionRefusedError())
        self.assertEqual(len(self.client.attempts), 3)
        self.assertEqual((self.failures[0].value.status, self.failures[0].value.message), (503, NO_PEER))

    def test_passiveCircuitBreaks(self) -> None:
        """A refused target leaves the rotation (tcp_failures 1): later requests skip it."""
        self.send()
        refused = self.client.attempts[0][0]["port"]
        self.client.fail(ierror.ConnectionRefusedError())
        self.client.respond()
        before = len(self.client.attempts)
        for _ in range(6):
            self.send()
            self.client.respond()
        later = [a[0]["port"] for a in self.client.attempts[before:]]
        self.assertNotIn(refused, later)

    def test_triesRecorded(self) -> None:
        """ctx.balancer has every try: address, port, status or None."""
        ctx = _ctx()
        self.send(ctx=ctx)
        self.clock.advance(0.25)
        self.client.fail(ierror.ConnectionRefusedError())
        self.client.respond(201)
        tries = ctx.balancer.tries
        self.assertEqual([t["code"] for t in tries], [None, 201])
        self.assertEqual(tries[0]["balancer_latency"], 250)
        self.assertEqual(ctx.balancer.attempt, 2)
        self.assertEqual(ctx.balancer.port, tries[1]["port"])

    def test_cancelReleases(self) -> None:
        """The client gone: the attempt under way is cancelled, its peer freed."""
        handle = self.send()
        attempt = self.client.attempts[0][3]
        handle.cancel()
        self.assertTrue(attempt.cancelled)
        upstream_state = self.balancers.get("backend").algorithm
        self.assertEqual(sum(e.load.in_flight for e in upstream_state.entries), 0)

    def test_inFlightCounted(self) -> None:
        """While a request is under way its peer counts it; the answer frees it."""
        self.send()
        entries = self.balancers.get("backend").entries
        self.assertEqual(sum(e.load.in_flight for e in entries), 1)
        self.client.respond()
        self.assertEqual(sum(e.load.in_flight for e in entries), 0)


class GarbageTests(SynchronousTestCase):
    def test_freedWithoutCollector(self) -> None:
        """
        Once answered, a Balanced is freed by reference counting alone:
        no cycle through the client's handle (which keeps its callbacks)
        is left for the cyclic collector, which would otherwise run every
        few hundred requests.
        """
        clock = Clock()
        balancers = Balancers(clock)
        balancers.update([UPSTREAM], _targets(1001))
        client = _Client()
        gc.disable()
        self.addCleanup(gc.enable)
        for answer in ("respond", "fail"):
            balanced = Balanced(balancers, balancers.get("backend"), client, _ctx(), clock)
            handle = balanced.send({"host": "backend", "retries": 0}, b"GET", b"/", [], None,
                                   lambda r: None, lambda f: None)
            if answer == "respond":
                client.respond()
            else:
                client.fail(ierror.ConnectionLost())
            gone = weakref.ref(balanced)
            del balanced, handle
            client.attempts.clear()
            self.assertIsNone(gone(), answer)


class HashingTests(SynchronousTestCase):
    def test_sameHeaderSamePeer(self) -> None:
        """consistent-hashing on a header: the same value always goes to the same target."""
        clock = Clock()
        balancers = Balancers(clock)
        upstream = {**UPSTREAM, "algorithm": "consistent-hashing", "hash_on": "header",
                    "hash_on_header": "x-user", "hash_fallback": "none"}
        balancers.update([upstream], _targets(1001, 1002, 1003, 1004))
        client = _Client()
        seen: dict[str, set[int]] = {}
        for user in ["a", "b", "c", "d", "e"] * 4:
            ctx = _ctx({"X-User": user})
            Balanced(balancers, balancers.get("backend"), client, ctx, clock).send(
                {"host": "backend", "retries": 0}, b"GET", b"/", [], None, lambda r: None, lambda f: None)
            seen.setdefault(user, set()).add(client.attempts[-1][0]["port"])
            client.respond()
        self.assertTrue(all(len(ports) == 1 for ports in seen.values()), seen)
        self.assertGreater(len({p for ports in seen.values() for p in ports}), 1)
