"""
Tests for L{echogate.balancer.dns}: with an in-memory resolver, and with a
real C{twisted.names} server on 127.0.0.1.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase
from twisted.trial.unittest import SynchronousTestCase, TestCase

from echogate.balancer.dns import Resolved, TargetResolver, is_ip, make_resolver


class MemoryResolver(ResolverBase):
    """
    Answers from C{records}: name to a list of C{(ttl, record)}; a name not
    there fails with C{missing}.
    """

    def __init__(self, missing: type[Exception] = error.DNSNameError) -> None:
        super().__init__()
        self.records: dict[bytes, list[tuple[int, Any]]] = {}
        self.missing = missing
        self.asked: list[bytes] = []

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Deferred[Any]:
        self.asked.append(name)
        if name not in self.records:
            return defer.fail(self.missing(name))
        answers = [dns.RRHeader(name, record.TYPE, dns.IN, ttl, record, auth=True)
                   for ttl, record in self.records[name] if record.TYPE == type]
        return defer.succeed((answers, [], []))


class TargetResolverTests(SynchronousTestCase):
    """
    Tests for L{TargetResolver} with an in-memory resolver.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.names = MemoryResolver()
        self.resolver = TargetResolver(self.names, self.clock, min_ttl=1, error_ttl=2)
        self.changed: list[str] = []
        self.resolver.watch(self.changed.append)

    def test_ip(self) -> None:
        """
        IP literals are recognised, with or without brackets.
        """
        self.assertTrue(is_ip("10.0.0.1") and is_ip("[::1]") and is_ip("::1"))
        self.assertFalse(is_ip("example.com"))

    def test_a_records_split_weight(self) -> None:
        """
        Every address of a name gets an equal share.
        """
        self.names.records[b"svc"] = [(30, dns.Record_A("10.0.0.1")),
                                      (30, dns.Record_A("10.0.0.2")),
                                      (30, dns.Record_AAAA("::2"))]
        found = self.resolver.current("svc")
        assert found is not None
        self.assertEqual(found.addresses, (Resolved("10.0.0.1", None, 1 / 3),
                                           Resolved("10.0.0.2", None, 1 / 3),
                                           Resolved("::2", None, 1 / 3)))
        self.assertEqual(self.changed, ["svc"])

    def test_srv(self) -> None:
        """
        SRV records of the lowest priority give their ports and split the
        weight by their weights.
        """
        self.names.records[b"_http._tcp.svc"] = [
            (30, dns.Record_SRV(1, 30, 8001, "a.svc")),
            (30, dns.Record_SRV(1, 10, 8002, "b.svc")),
            (30, dns.Record_SRV(5, 10, 8003, "c.svc"))]
        self.names.records[b"a.svc"] = [(30, dns.Record_A("10.0.0.1"))]
        self.names.records[b"b.svc"] = [(30, dns.Record_A("10.0.0.2"))]
        self.names.records[b"c.svc"] = [(30, dns.Record_A("10.0.0.3"))]
        found = self.resolver.current("_http._tcp.svc")
        assert found is not None
        self.assertEqual(found.addresses, (Resolved("10.0.0.1", 8001, 0.75),
                                           Resolved("10.0.0.2", 8002, 0.25)))

    def test_missing(self) -> None:
        """
        A name that does not exist resolves to nothing, with its error, and
        is asked again after the error TTL.
        """
        self.resolver.start()
        self.addCleanup(self.resolver.stop)
        found = self.resolver.current("nowhere")
        assert found is not None
        self.assertEqual((found.addresses, found.error is not None), ((), True))
        self.names.records[b"nowhere"] = [(30, dns.Record_A("10.0.0.9"))]
        self.clock.advance(1)
        self.assertEqual(self.resolver.current("nowhere"), found)
        self.clock.advance(1)
        self.assertEqual(self.resolver.current("nowhere").addresses,  # type: ignore[union-attr]
                         (Resolved("10.0.0.9", None, 1.0),))
        self.assertEqual(self.changed, ["nowhere", "nowhere"])

    def test_ttl_refresh(self) -> None:
        """
        An answer is kept for its TTL, then looked up again in the
        background; watchers hear of a change.
        """
        self.resolver.start()
        self.addCleanup(self.resolver.stop)
        self.names.records[b"svc"] = [(5, dns.Record_A("10.0.0.1"))]
        self.resolver.current("svc")
        self.names.records[b"svc"] = [(5, dns.Record_A("10.0.0.2"))]
        self.clock.advance(4)
        self.assertEqual(self.resolver.current("svc").addresses[0].address,  # type: ignore[union-attr]
                         "10.0.0.1")
        self.clock.advance(1)
        self.assertEqual(self.resolver.current("svc").addresses[0].address,  # type: ignore[union-attr]
                         "10.0.0.2")
        self.assertEqual(self.changed, ["svc", "svc"])

    def test_server_failure_keeps_stale(self) -> None:
        """
        When the servers fail, the last good answer stays.
        """
        self.names.records[b"svc"] = [(1, dns.Record_A("10.0.0.1"))]
        self.resolver.current("svc")
        self.names.missing = error.DNSServerError
        del self.names.records[b"svc"]
        self.clock.advance(1)
        found = self.successResultOf(self.resolver.lookup("svc"))
        self.assertEqual(found.addresses, (Resolved("10.0.0.1", None, 1.0),))

    def test_pending(self) -> None:
        """
        A name whose look-up is under way is C{None}: a pick never waits.
        """
        slow: Deferred[Any] = Deferred()
        self.names.lookupService = lambda name, timeout=None: slow  # type: ignore[method-assign]
        self.assertIsNone(self.resolver.current("svc"))
        second = self.resolver.lookup("svc")
        self.names.records[b"svc"] = [(5, dns.Record_A("10.0.0.1"))]
        slow.callback(([], [], []))
        self.assertEqual(self.successResultOf(second).addresses[0].address, "10.0.0.1")


class Authority(MemoryResolver):
    """
    The in-memory records of a real DNS server.
    """

    def __init__(self) -> None:
        super().__init__(dns.AuthoritativeDomainError)


class RealServerTests(TestCase):
    """
    L{TargetResolver} and L{make_resolver} against a real C{twisted.names}
    server on 127.0.0.1.
    """

    def setUp(self) -> None:
        self.authority = Authority()
        factory = server.DNSServerFactory(authorities=[self.authority])
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory),  # type: ignore[attr-defined]
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.clock = Clock()
        self.server = f"127.0.0.1:{port.getHost().port}"
        names = make_resolver([self.server], reactor=reactor)
        self.resolver = TargetResolver(names, self.clock, min_ttl=1)

    @defer.inlineCallbacks
    def test_change_within_ttl(self) -> Any:
        """
        A name resolves through the server; a record change is seen once
        its TTL has passed, and not before.
        """
        self.authority.records[b"svc.test"] = [(10, dns.Record_A("10.1.0.1"))]
        first = yield self.resolver.lookup("svc.test")
        self.assertEqual(first.addresses, (Resolved("10.1.0.1", None, 1.0),))
        self.authority.records[b"svc.test"] = [(10, dns.Record_A("10.1.0.2")),
                                               (10, dns.Record_A("10.1.0.3"))]
        self.clock.advance(9)
        self.resolver.refresh()
        self.assertEqual(self.resolver.current("svc.test"), first)
        self.clock.advance(1)
        self.resolver.refresh()
        second = yield self.resolver.lookup("svc.test")
        self.assertEqual([found.address for found in second.addresses],
                         ["10.1.0.2", "10.1.0.3"])

    @defer.inlineCallbacks
    def test_missing_name(self) -> Any:
        """
        A name the server does not know resolves to nothing.
        """
        found = yield self.resolver.lookup("nowhere.test")
        self.assertEqual(found.addresses, ())
        self.assertIsNotNone(found.error)

    @defer.inlineCallbacks
    def test_hosts_file(self) -> Any:
        """
        The hosts file answers before the servers.
        """
        path = self.mktemp()
        with open(path, "w") as hosts:
            hosts.write("10.9.9.9 pinned.test\n")
        names = make_resolver([self.server], hosts_file=path, reactor=reactor)
        found = yield TargetResolver(names, self.clock).lookup("pinned.test")
        self.assertEqual(found.addresses[0].address, "10.9.9.9")


class SystemResolverTests(SynchronousTestCase):
    """
    L{echogate.balancer.dns.make_resolver} without name servers reads the
    system's C{resolv.conf} once.
    """

    def test_noRereadTimer(self) -> None:
        """No timer is left to read resolv.conf again (a node's reactor stays clean)."""
        from twisted.internet.testing import MemoryReactorClock

        from echogate.balancer.dns import make_resolver

        reactor = MemoryReactorClock()
        make_resolver((), None, reactor)
        self.assertEqual(reactor.getDelayedCalls(), [])
