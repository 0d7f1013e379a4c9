"""
Unit tests for the upstream side: retries and timeouts of one exchange
(with a fake agent and a L{Clock}), and the headers sent upstream.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.http_headers import Headers

from echogate.errors import ProxyError
from echogate.pdk.messages import headers_of
from echogate.proxy.forwarding import VIA, TrustedNetworks, host_header, upstream_headers
from echogate.proxy.streaming import RequestBody
from echogate.upstream.agent import _Exchange
from echogate.upstream.hop_by_hop import copy_end_to_end


class FakeAgent:
    """
    Answers each request with the next outcome: a Deferred, an exception
    (a failed attempt), or a value.
    """

    def __init__(self, *outcomes: Any):
        self.outcomes = list(outcomes)
        self.calls: list[tuple] = []

    def request(self, method: bytes, uri: bytes, headers: Any, producer: Any) -> Deferred:
        self.calls.append((method, uri, producer))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Deferred):
            return outcome
        if isinstance(outcome, Exception):
            return fail(outcome)
        return succeed(outcome)


def exchange(agent: FakeAgent, clock: Clock, retries: int = 2, body: Any = None) -> Deferred:
    return _Exchange(clock, agent, b"GET", b"http://u:80/x", Headers(), body, retries, 1.0).result


class ExchangeTests(SynchronousTestCase):
    def test_success(self) -> None:
        """
        The response of the first attempt is the result; its timer is gone.
        """
        clock = Clock()
        agent = FakeAgent("response")
        self.assertEqual(self.successResultOf(exchange(agent, clock)), "response")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connectFailuresRetried(self) -> None:
        """
        Refused connections are retried up to C{retries} times.
        """
        agent = FakeAgent(ierror.ConnectionRefusedError(), ierror.ConnectionRefusedError(), "response")
        self.assertEqual(self.successResultOf(exchange(agent, Clock(), retries=2)), "response")
        self.assertEqual(len(agent.calls), 3)

    def test_retriesExhausted(self) -> None:
        """
        After C{retries} retries a refused connection is a 502.
        """
        agent = FakeAgent(*[ierror.ConnectionRefusedError()] * 3)
        failure = self.failureResultOf(exchange(agent, Clock(), retries=2), ProxyError)
        self.assertEqual(failure.value.status, 502)
        self.assertEqual(len(agent.calls), 3)

    def test_connectTimeout(self) -> None:
        """
        A connection that cannot be made in time ends as a 504 once retries
        are spent.
        """
        agent = FakeAgent(ierror.TimeoutError(), ierror.TimeoutError())
        failure = self.failureResultOf(exchange(agent, Clock(), retries=1), ProxyError)
        self.assertEqual(failure.value.status, 504)

    def test_notRetriedOnceSent(self) -> None:
        """
        A failure after the request was sent (no response) is not retried:
        502 at once.
        """
        agent = FakeAgent(ResponseNeverReceived([]), "never used")
        failure = self.failureResultOf(exchange(agent, Clock(), retries=5), ProxyError)
        self.assertEqual(failure.value.status, 502)
        self.assertEqual(len(agent.calls), 1)

    def test_deadline(self) -> None:
        """
        No response head within the deadline: the attempt is cancelled, 504.
        """
        clock = Clock()
        cancelled = []
        pending: Deferred = Deferred(lambda d: cancelled.append(True))
        result = exchange(FakeAgent(pending), clock)
        self.assertNoResult(result)
        clock.advance(1.0)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.failureResultOf(result, ProxyError).value.status, 504)

    def test_callerCancels(self) -> None:
        """
        Cancelling the result cancels the attempt in flight.
        """
        cancelled = []
        pending: Deferred = Deferred(lambda d: cancelled.append(True))
        result = exchange(FakeAgent(pending), Clock())
        result.cancel()
        self.assertEqual(cancelled, [True])
        self.failureResultOf(result, CancelledError)

    def test_freshBodyPerAttempt(self) -> None:
        """
        Each attempt gets its own body producer.
        """
        agent = FakeAgent(ierror.ConnectionRefusedError(), "response")
        self.successResultOf(exchange(agent, Clock(), body=RequestBody(data=b"abc")))
        first, second = agent.calls[0][2], agent.calls[1][2]
        self.assertIsNot(first, second)
        self.assertEqual(second.length, 3)


class HeaderTests(SynchronousTestCase):
    def request_headers(self, **extra: str) -> Headers:
        headers = Headers({b"host": [b"client.example:8000"], b"x-app": [b"1"]})
        for name, value in extra.items():
            headers.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
        return headers

    def build(self, headers: Headers, trusted: bool = False, **kw: Any) -> Headers:
        args = dict(service={"host": "svc", "port": 8080, "protocol": "http"}, preserve_host=False,
                    client_ip="10.1.1.1", peer_trusted=trusted, scheme="http", listener_port=8000,
                    path="/p/x", stripped="/p")
        args.update(kw)
        return headers_of(upstream_headers(headers, **args))

    def test_untrustedPeerHeadersReplaced(self) -> None:
        """
        From an untrusted peer, X-Forwarded-Proto/Host are replaced and
        X-Forwarded-For gets the client address appended.
        """
        out = self.build(self.request_headers(x_forwarded_proto="https", x_forwarded_for="1.2.3.4"))
        self.assertEqual(out.getRawHeaders(b"x-forwarded-proto"), [b"http"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-for"), [b"1.2.3.4, 10.1.1.1"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-host"), [b"client.example"])
        self.assertEqual(out.getRawHeaders(b"host"), [b"svc:8080"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-prefix"), [b"/p"])

    def test_trustedPeerHeadersKept(self) -> None:
        """
        From a trusted peer, the X-Forwarded-* it sent are kept.
        """
        out = self.build(self.request_headers(x_forwarded_proto="https", x_forwarded_host="edge"), trusted=True)
        self.assertEqual(out.getRawHeaders(b"x-forwarded-proto"), [b"https"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-host"), [b"edge"])

    def test_linesInOrder(self) -> None:
        """
        The client's end-to-end headers go first, in order, each repeated
        value on its own line; hop-by-hop ones, those its Connection header
        names, Content-Length and the client's Host/Via/X-Real-IP do not;
        the gateway's own follow, once each.
        """
        headers = Headers()
        for name, value in [(b"x-b", b"1"), (b"x-a", b"2"), (b"x-b", b"3"), (b"connection", b"x-secret"),
                            (b"x-secret", b"s"), (b"te", b"trailers"), (b"content-length", b"5"),
                            (b"x-real-ip", b"6.6.6.6"), (b"via", b"1.0 edge"), (b"host", b"h")]:
            headers.addRawHeader(name, value)
        pairs = upstream_headers(headers, service={"host": "svc", "port": 80}, preserve_host=False,
                                 client_ip="10.1.1.1", peer_trusted=False, scheme="http", listener_port=8000,
                                 path="/x", stripped="")
        names = [name.lower() for name, _ in pairs]
        self.assertEqual(pairs[:3], [(b"X-B", b"1"), (b"X-B", b"3"), (b"X-A", b"2")])
        self.assertEqual(names[3:], [b"host", b"x-real-ip", b"x-forwarded-for", b"x-forwarded-proto",
                                     b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path", b"via"])
        self.assertEqual(dict(pairs)[b"Via"], b"1.0 edge, " + VIA)
        self.assertEqual(dict(pairs)[b"X-Real-IP"], b"10.1.1.1")

    def test_computedValuesStayOnOneLine(self) -> None:
        """
        A value the gateway computes cannot break the head.
        """
        pairs = upstream_headers(Headers(), service={"host": "svc", "port": 80}, preserve_host=False,
                                 client_ip="10.1.1.1", peer_trusted=False, scheme="http", listener_port=8000,
                                 path="/a", stripped="/a\r\nX-Evil: 1")
        for name, value in pairs:
            self.assertNotIn(b"\n", value, name)
            self.assertNotIn(b"\r", value, name)

    def test_hostHeader(self) -> None:
        """
        Default ports are left out of Host; IPv6 hosts are bracketed.
        """
        self.assertEqual(host_header({"host": "a", "port": 80, "protocol": "http"}), b"a")
        self.assertEqual(host_header({"host": "a", "port": 443, "protocol": "https"}), b"a")
        self.assertEqual(host_header({"host": "a", "port": 443, "protocol": "http"}), b"a:443")
        self.assertEqual(host_header({"host": "::1", "port": 81, "protocol": "http"}), b"[::1]:81")

    def test_copyEndToEnd(self) -> None:
        """
        Hop-by-hop headers and the names Connection lists are dropped.
        """
        source = Headers({b"connection": [b"close, x-private"], b"x-private": [b"s"], b"keep-alive": [b"1"],
                          b"x-public": [b"p"]})
        out = copy_end_to_end(source)
        self.assertEqual(dict(out.getAllRawHeaders()), {b"X-Public": [b"p"]})

    def test_trustedNetworks(self) -> None:
        """
        CIDRs and single addresses, v4 and v6; nothing configured trusts nobody.
        """
        networks = TrustedNetworks(["10.0.0.0/8", "::1"])
        self.assertTrue(networks.trusts("10.2.3.4"))
        self.assertTrue(networks.trusts("::1"))
        self.assertFalse(networks.trusts("11.0.0.1"))
        self.assertFalse(networks.trusts("not an ip"))
        self.assertFalse(TrustedNetworks().trusts("127.0.0.1"))
