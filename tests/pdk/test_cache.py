"""
Tests for L{echogate.pdk.cache}: a plugin's cache of derived values, on a
L{Clock}.
"""
from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from echogate.interfaces import IPluginNode
from echogate.pdk.cache import Cache, CacheConflict, Caches
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Record
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin
from tests.waiting import until


class Loader:
    """
    A loader that counts its calls and answers from a dict (or with the
    Deferreds the test holds).
    """

    def __init__(self, values: dict[str, Any] | None = None, hold: bool = False):
        self.values = values or {}
        self.calls: list[str] = []
        self.hold = hold
        self.pending: list[Deferred[Any]] = []

    def __call__(self, key: str) -> Any:
        self.calls.append(key)
        if self.hold:
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            return d
        return self.values.get(key)


class CacheTests(SynchronousTestCase):
    """
    L{Cache}: TTL, negative caching, the size bound, one load per key,
    failures, invalidation.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_hit(self) -> None:
        """
        A second get within the TTL answers from the cache.
        """
        cache = Cache(self.clock, "c", ttl=10)
        load = Loader({"k": "v"})
        self.assertEqual(self.successResultOf(cache.get("k", load, "k")), "v")
        self.assertEqual(self.successResultOf(cache.get("k", load, "k")), "v")
        self.assertEqual(load.calls, ["k"])

    def test_ttl(self) -> None:
        """
        Once C{ttl} seconds have passed on the clock, the value is loaded
        again.
        """
        cache = Cache(self.clock, "c", ttl=10)
        load = Loader({"k": "v"})
        cache.get("k", load, "k")
        self.clock.advance(9.9)
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 1)
        self.clock.advance(0.1)
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 2)

    def test_negative(self) -> None:
        """
        A loader's C{None} is cached for C{neg_ttl}, not C{ttl}.
        """
        cache = Cache(self.clock, "c", ttl=100, neg_ttl=5)
        load = Loader()
        self.assertIsNone(self.successResultOf(cache.get("k", load, "k")))
        self.assertEqual(cache.peek("k"), (True, None))
        self.clock.advance(4)
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 1)
        self.clock.advance(1)
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 2)

    def test_negativeOff(self) -> None:
        """
        With C{neg_ttl=0}, C{None} is not cached.
        """
        cache = Cache(self.clock, "c", ttl=100, neg_ttl=0)
        load = Loader()
        cache.get("k", load, "k")
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 2)

    def test_lru(self) -> None:
        """
        Beyond C{max_size}, the least recently used key goes.
        """
        cache = Cache(self.clock, "c", ttl=100, max_size=2)
        load = Loader({"a": 1, "b": 2, "c": 3})
        cache.get("a", load, "a")
        cache.get("b", load, "b")
        cache.get("a", load, "a")  # a is now the most recently used
        cache.get("c", load, "c")
        self.assertEqual(len(cache), 2)
        self.assertEqual(cache.peek("b"), (False, None))
        self.assertEqual(cache.peek("a"), (True, 1))
        self.assertEqual(cache.peek("c"), (True, 3))

    def test_oneLoadForConcurrentMisses(self) -> None:
        """
        Many gets of a key that is loading wait on that one load.
        """
        cache = Cache(self.clock, "c", ttl=100)
        load = Loader(hold=True)
        waiting = [cache.get("k", load, "k") for _ in range(5)]
        self.assertEqual(load.calls, ["k"])
        for d in waiting:
            self.assertNoResult(d)
        load.pending[0].callback("v")
        self.assertEqual([self.successResultOf(d) for d in waiting], ["v"] * 5)
        self.assertEqual(self.successResultOf(cache.get("k", load, "k")), "v")
        self.assertEqual(load.calls, ["k"])

    def test_cancelOneWaiter(self) -> None:
        """
        Cancelling one caller's Deferred leaves the load and the others.
        """
        cache = Cache(self.clock, "c", ttl=100)
        load = Loader(hold=True)
        first, second = cache.get("k", load, "k"), cache.get("k", load, "k")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        load.pending[0].callback("v")
        self.assertEqual(self.successResultOf(second), "v")

    def test_errorsNotCached(self) -> None:
        """
        A failed load fails every caller waiting on it, and the next get
        loads again.
        """
        cache = Cache(self.clock, "c", ttl=100)
        load = Loader(hold=True)
        waiting = [cache.get("k", load, "k") for _ in range(2)]
        load.pending[0].errback(ValueError("down"))
        for d in waiting:
            self.failureResultOf(d, ValueError)
        again = cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 2)
        load.pending[1].callback("v")
        self.assertEqual(self.successResultOf(again), "v")

    def test_raisingLoader(self) -> None:
        """
        A loader that raises fails the get; nothing is cached.
        """
        cache = Cache(self.clock, "c", ttl=100)
        self.failureResultOf(cache.get("k", lambda: 1 / 0), ZeroDivisionError)
        self.assertEqual(cache.peek("k"), (False, None))

    def test_coroutineLoader(self) -> None:
        """
        An C{async def} loader's value is cached.
        """
        async def load(key: str) -> str:
            return key.upper()

        cache = Cache(self.clock, "c", ttl=100)
        self.assertEqual(self.successResultOf(cache.get("k", load, "k")), "K")
        self.assertEqual(cache.peek("k"), (True, "K"))

    def test_invalidateLocal(self) -> None:
        """
        C{invalidate} drops the key; the next get loads again; it is
        broadcast with the cache's name.
        """
        sent: list[tuple[str, str | None]] = []
        cache = Cache(self.clock, "c", ttl=100, broadcast=lambda name, key: sent.append((name, key)))
        load = Loader({"k": "v"})
        cache.get("k", load, "k")
        cache.invalidate("k")
        self.assertEqual(cache.peek("k"), (False, None))
        cache.get("k", load, "k")
        self.assertEqual(len(load.calls), 2)
        self.assertEqual(sent, [("c", "k")])

    def test_invalidateDuringLoad(self) -> None:
        """
        A load that an invalidation overtook delivers its value but does
        not cache it.
        """
        cache = Cache(self.clock, "c", ttl=100)
        load = Loader(hold=True)
        d = cache.get("k", load, "k")
        cache.invalidate("k")
        load.pending[0].callback("stale")
        self.assertEqual(self.successResultOf(d), "stale")
        self.assertEqual(cache.peek("k"), (False, None))

    def test_purge(self) -> None:
        """
        C{purge} drops every key.
        """
        cache = Cache(self.clock, "c", ttl=100)
        cache.get("a", lambda: 1)
        cache.get("b", lambda: 2)
        cache.purge()
        self.assertEqual(len(cache), 0)

    def test_keysAreStrings(self) -> None:
        """
        A key that is not a string is refused.
        """
        cache = Cache(self.clock, "c")
        self.assertRaises(TypeError, cache.get, 1, lambda: 1)


class CachesTests(SynchronousTestCase):
    """
    L{Caches}: a node's caches by name, and the messages between nodes.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_sameByName(self) -> None:
        """
        Asking twice for a name gives the same cache; other settings are
        refused.
        """
        caches = Caches(self.clock)
        first = caches.cache("c", ttl=5)
        self.assertIs(caches.cache("c", ttl=5), first)
        self.assertRaises(CacheConflict, caches.cache, "c", ttl=6)

    def test_listenOnFirstCache(self) -> None:
        """
        C{listen} is called once, when the first cache is made.
        """
        listened: list[Any] = []
        caches = Caches(self.clock, "n1", publish=lambda m: succeed(None), listen=listened.append)
        self.assertEqual(listened, [])
        caches.cache("a")
        caches.cache("b")
        self.assertEqual(listened, [caches.received])

    def test_messageBetweenNodes(self) -> None:
        """
        One node's C{invalidate} becomes a message that makes another
        node drop the key, and that its sender ignores.
        """
        wire: list[str] = []
        one = Caches(self.clock, "n1", publish=wire.append)
        two = Caches(self.clock, "n2", publish=wire.append)
        a, b = one.cache("c"), two.cache("c")
        a.get("k", lambda: 1)
        b.get("k", lambda: 2)
        a.invalidate("k")
        self.assertEqual(json.loads(wire[0]), {"node": "n1", "cache": "c", "key": "k"})
        one.received(wire[0])
        two.received(wire[0])
        self.assertEqual(b.peek("k"), (False, None))

    def test_ownMessageIgnored(self) -> None:
        """
        A node does not apply its own message when it comes back (a value
        loaded since stays).
        """
        wire: list[str] = []
        one = Caches(self.clock, "n1", publish=wire.append)
        a = one.cache("c")
        a.invalidate("k")
        a.get("k", lambda: 1)
        one.received(wire[0])
        self.assertEqual(a.peek("k"), (True, 1))

    def test_purgeMessage(self) -> None:
        """
        A purge reaches the other node's cache of that name, all of it.
        """
        wire: list[str] = []
        one, two = Caches(self.clock, "n1", publish=wire.append), Caches(self.clock, "n2", publish=wire.append)
        one.cache("c").purge()
        b = two.cache("c")
        b.get("x", lambda: 1)
        two.received(wire[0])
        self.assertEqual(len(b), 0)

    def test_longKeyPurges(self) -> None:
        """
        A key too long for one message empties the cache elsewhere.
        """
        wire: list[str] = []
        Caches(self.clock, "n1", publish=wire.append).cache("c").invalidate("x" * 9000)
        self.assertIsNone(json.loads(wire[0])["key"])

    def test_interrupted(self) -> None:
        """
        C{received(None)} (the notifications were interrupted) empties
        every cache.
        """
        caches = Caches(self.clock, "n1")
        a = caches.cache("a")
        a.get("k", lambda: 1)
        caches.received(None)
        self.assertEqual(len(a), 0)

    def test_badMessage(self) -> None:
        """
        A message that does not parse is ignored (and logged).
        """
        caches = Caches(self.clock, "n1")
        a = caches.cache("a")
        a.get("k", lambda: 1)
        caches.received("not json")
        self.assertEqual(a.peek("k"), (True, 1))


@attrs.frozen
class CacheUser(GatewayPlugin):
    """
    Makes its cache in its node hook; the test reaches the node through
    its binding.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding)

    name = "cache-user"
    version = "1.0.0"
    priority = 1
    config_schema = Record({})

    def node_service(self, node: IPluginNode) -> None:
        self.binding.bind(node)
        node.cache("tokens", ttl=600)


class ClusterInvalidationTests(unittest.TestCase, PostgresMixin):
    """
    Two nodes on one PostgreSQL database: an invalidation on one reaches
    the other's cache through LISTEN/NOTIFY.
    """

    timeout = 60

    async def test_invalidateReachesOtherNode(self) -> None:
        """
        Node A's C{invalidate(key)} drops the key from node B's cache of
        the same name (and only that key).
        """
        dsn = self.database()
        one, two = CacheUser(), CacheUser()
        await start_gateway(self, database=dsn, plugin_objects={"cache-user": one})
        await start_gateway(self, database=dsn, plugin_objects={"cache-user": two})
        a, b = one.binding.node.cache("tokens", ttl=600), two.binding.node.cache("tokens", ttl=600)
        self.assertIsNot(a, b)
        await b.get("kept", lambda: "k")
        generation = [0]

        async def dropped() -> bool:
            # B may not be LISTENing yet when A first sends: send again
            # until B's value is gone.
            if b.peek("t")[0] is False and generation[0]:
                return True
            generation[0] += 1
            await b.get("t", lambda: generation[0])
            a.invalidate("t")
            return False

        await until(dropped, message="node B never dropped the key")
        self.assertEqual(b.peek("kept"), (True, "k"))
