"""
A node's caches of values that plugins derive from slow sources (a token
introspected by another service, a row read from a database): L{Cache}.

A plugin gets its cache from its node (L{echogate.interfaces.IPluginNode}),
by name, in its C{node_service(node)} hook or in a phase::

    cache = node.cache("introspection", ttl=300, neg_ttl=30, max_size=10000)
    answer = await cache.get(token, introspect, token)

Values expire after C{ttl} seconds on the node's clock (the harness's
C{Clock} in tests); a loader's C{None} ("no such thing") is kept for
C{neg_ttl}; the least recently used value goes when the cache is full. A
key that many requests miss at once is loaded once: the others wait for
that load. A loader's failure reaches every caller waiting on it and is
not kept. L{Cache.invalidate} drops a key on every node of the cluster
(L{Caches} sends the message through the database; in the harness there
is one node).
"""
from __future__ import annotations

import inspect
import json
from collections import OrderedDict
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Cache", "Caches", "CacheConflict"]

_log = Logger(namespace="echogate.cache")

#: The longest message one invalidation may take (PostgreSQL's NOTIFY
#: payload is shorter than 8000 bytes); a longer key empties its whole
#: cache on the other nodes instead.
MAX_MESSAGE = 7900


class CacheConflict(ValueError):
    """
    A cache was asked for again by name with other settings than it was
    made with.

    @since: 0.1.0
    """


@attrs.define
class _Entry:
    value: Any
    expires: float | None


class _Load:
    """
    One loader call under way, and the callers waiting for it.
    """

    def __init__(self) -> None:
        self.waiters: list[Deferred[Any]] = []


class Cache:
    """
    A bounded, expiring cache of one plugin's derived values, keyed by
    strings.

    @param clock: the node's clock: it dates the values.
    @param name: the cache's name (unique on the node).
    @param ttl: how long a value is kept, in seconds (C{None}: until it is
        invalidated or pushed out).
    @param neg_ttl: how long a loader's C{None} is kept (C{0}: never kept;
        C{None}: as C{ttl}).
    @param max_size: how many keys are kept at most; beyond, the least
        recently used goes.
    @param broadcast: called with C{(name, key)} by L{invalidate} (and
        C{(name, None)} by L{purge}) to tell the other nodes; C{None} for a
        cache alone on its node.

    @since: 0.1.0
    """

    def __init__(self, clock: IReactorTime, name: str, *, ttl: float | None = 60.0,
                 neg_ttl: float | None = None, max_size: int = 1000,
                 broadcast: Callable[[str, str | None], object] | None = None):
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive (or None: no expiry)")
        if neg_ttl is not None and neg_ttl < 0:
            raise ValueError("neg_ttl must not be negative")
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.name = name
        self.ttl = ttl
        self.neg_ttl = ttl if neg_ttl is None else neg_ttl
        self.max_size = max_size
        self._clock = clock
        self._broadcast = broadcast
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, _Load] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Cache {self.name!r} {len(self._entries)}/{self.max_size}>"

    def _fresh(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires is not None and self._clock.seconds() >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def peek(self, key: str) -> tuple[bool, Any]:
        """
        What the cache holds for C{key} now, without loading it.

        @return: C{(True, value)} for a fresh value (C{value} may be a
            cached C{None}), C{(False, None)} otherwise.
        """
        entry = self._fresh(key)
        return (False, None) if entry is None else (True, entry.value)

    def get(self, key: str, loader: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        The value of C{key}: the cached one while it is fresh; otherwise
        C{loader(*args, **kwargs)}'s (a value, a Deferred, or a coroutine),
        which is then cached: for C{ttl}, or C{neg_ttl} when it is C{None}.
        While a load of C{key} is under way, other calls wait for it
        instead of calling C{loader} again. A failed load is not cached:
        its callers get the failure, and the next call loads again.

        @return: a Deferred of the value (each caller its own; cancelling
            it leaves the others and the load alone).
        """
        if not isinstance(key, str):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        entry = self._fresh(key)
        if entry is not None:
            waiter: Deferred[Any] = Deferred()
            waiter.callback(entry.value)
            return waiter
        load = self._loading.get(key)
        if load is None:
            load = self._loading[key] = _Load()
            waiter = Deferred(lambda d: _forget(load, d))
            load.waiters.append(waiter)
            d = maybeDeferred(_call, loader, args, kwargs)
            d.addBoth(self._loaded, key, load)
            return waiter
        waiter = Deferred(lambda d: _forget(load, d))
        load.waiters.append(waiter)
        return waiter

    def _loaded(self, result: Any, key: str, load: _Load) -> None:
        current = self._loading.get(key) is load
        if current:
            del self._loading[key]
        failed = isinstance(result, Failure)
        if current and not failed:
            # (a load that an invalidation overtook is not kept: it may
            # have read what the invalidation was about)
            self._store(key, result)
        for waiter in load.waiters:
            if failed:
                waiter.errback(result)
            else:
                waiter.callback(result)
        load.waiters = []

    def _store(self, key: str, value: Any) -> None:
        ttl = self.neg_ttl if value is None else self.ttl
        if ttl == 0:
            return
        expires = None if ttl is None else self._clock.seconds() + ttl
        self._entries[key] = _Entry(value, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def invalidate(self, key: str) -> None:
        """
        Drop C{key} here and on every other node of the cluster; a load
        of it under way is not cached (its callers still get its value).
        """
        self.forget(key)
        if self._broadcast is not None:
            self._broadcast(self.name, key)

    def purge(self) -> None:
        """
        Drop every key here and on every other node of the cluster.
        """
        self.forget_all()
        if self._broadcast is not None:
            self._broadcast(self.name, None)

    def forget(self, key: str) -> None:
        """
        Drop C{key} on this node only.
        """
        self._entries.pop(key, None)
        self._loading.pop(key, None)

    def forget_all(self) -> None:
        """
        Drop every key on this node only.
        """
        self._entries.clear()
        self._loading.clear()


def _call(loader: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = loader(*args, **kwargs)
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result


def _forget(load: _Load, waiter: Deferred[Any]) -> None:
    """
    A waiter was cancelled: it no longer waits (and fails with
    C{CancelledError}, as Deferred's cancel makes it).
    """
    if waiter in load.waiters:
        load.waiters.remove(waiter)


class Caches:
    """
    The caches of one node, by name, and the messages that carry
    invalidations between nodes.

    @param clock: the node's clock.
    @param origin: this node's id: its own messages, when they come back
        from the database, are not applied again.
    @param publish: sends one message (a C{str}) to every node (the
        store's C{notify_nodes}), or C{None} (the harness: one node).
    @param listen: called once, when the first cache is made, with
        L{received}, to receive the messages the nodes send (the store's
        C{subscribe_notices}); so a node whose plugins make no cache
        listens for nothing.

    @since: 0.1.0
    """

    def __init__(self, clock: IReactorTime, origin: str = "",
                 publish: Callable[[str], Any] | None = None,
                 listen: Callable[[Callable[[str | None], None]], object] | None = None):
        self._clock = clock
        self._origin = origin
        self._publish = publish
        self._listen = listen
        self._caches: dict[str, Cache] = {}

    def cache(self, name: str, *, ttl: float | None = 60.0, neg_ttl: float | None = None,
              max_size: int = 1000) -> Cache:
        """
        The cache called C{name}, made on first use.

        @raise CacheConflict: it exists with other settings.
        """
        existing = self._caches.get(name)
        if existing is None:
            listen, self._listen = self._listen, None
            if listen is not None:
                listen(self.received)
            made = self._caches[name] = Cache(
                self._clock, name, ttl=ttl, neg_ttl=neg_ttl, max_size=max_size,
                broadcast=self._broadcast if self._publish is not None else None)
            return made
        wanted = (ttl, ttl if neg_ttl is None else neg_ttl, max_size)
        if (existing.ttl, existing.neg_ttl, existing.max_size) != wanted:
            raise CacheConflict(f"cache {name!r} exists with ttl={existing.ttl}, neg_ttl={existing.neg_ttl},"
                                f" max_size={existing.max_size}")
        return existing

    def _broadcast(self, name: str, key: str | None) -> None:
        assert self._publish is not None
        message = json.dumps({"node": self._origin, "cache": name, "key": key})
        if len(message.encode("utf-8")) > MAX_MESSAGE:
            message = json.dumps({"node": self._origin, "cache": name, "key": None})
        d = maybeDeferred(self._publish, message)
        d.addErrback(lambda f: _log.warn("could not tell the other nodes to invalidate {key!r} in cache"
                                         " {cache}: {why}", key=key, cache=name, why=f.getErrorMessage()))

    def received(self, message: str | None) -> None:
        """
        A message from the database: apply another node's invalidation.
        C{None} (the notifications were interrupted, some may be lost)
        empties every cache.
        """
        if message is None:
            for each in self._caches.values():
                each.forget_all()
            return
        try:
            parsed = json.loads(message)
            origin, name, key = parsed["node"], parsed["cache"], parsed["key"]
            if not isinstance(name, str) or not (key is None or isinstance(key, str)):
                raise TypeError(name)
        except (ValueError, TypeError, KeyError):
            _log.warn("ignored a cache message that does not parse: {message!r}", message=message[:200])
            return
        cache = self._caches.get(name)
        if origin == self._origin or cache is None:
            return
        if key is None:
            cache.forget_all()
        else:
            cache.forget(key)
