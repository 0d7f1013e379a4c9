"""
The route table: which route, and so which service, a request goes to.

L{Router.build} compiles the configured routes into an immutable, indexed
table once per configuration snapshot; L{Router.match} picks the route for
one request. Matching and ordering follow Kong's traditional router; the
user-facing rules are in C{docs/routing.md}. One route's compiled
conditions, its rank and the L{Match} it gives are in L{echogate.routing.matching}.

Every regex match a look-up makes has a time budget (C{regex_timeout}, the
setting C{regex_match_timeout}): a regex backtracking catastrophically on a
crafted path cannot hold the reactor; a match that runs out counts as no
match for its route (logged by L{SlowRegexLog}).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping, TypeVar

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from echogate.routing.matching import PLAIN, PREFIX, SUFFIX, CompiledRoute, Headers, Match, compile_route, split_host

_log = Logger(namespace="echogate.routing")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MISSING = object()
T = TypeVar("T")

#: How many routes (or host keys) L{Router.building} handles between two
#: pauses: a few hundred microseconds of work when the routes are reused.
STEP = 100


@attrs.frozen
class _PathIndex:
    """
    Compiled routes filed under literal path prefixes (a prefix path, a
    regex's literal start, or C{""}); C{lengths} are the distinct key
    lengths, shortest first.
    """

    buckets: Mapping[str, tuple[CompiledRoute, ...]]
    lengths: tuple[int, ...]

    @classmethod
    def making(cls, entries: dict[str, Any]) -> Generator[None, None, _PathIndex]:
        """
        The index of C{entries} (key to a list of routes), in steps: yields
        every L{STEP} keys. C{entries} becomes its buckets, each list made a
        tuple in place: with 10,000 routes, freeing the lists and measuring
        the keys at the end held the reactor for about 2 ms in one step.
        """
        lengths: set[int] = set()
        for n, (key, routes) in enumerate(entries.items(), 1):
            entries[key] = tuple(routes)
            lengths.add(len(key))
            if n % STEP == 0:
                yield None
        return cls(entries, tuple(sorted(lengths)))

    def candidates(self, path: str) -> Iterator[CompiledRoute]:
        """
        The routes whose key starts C{path}: one dictionary look-up per
        distinct key length.
        """
        for length in self.lengths:
            if length > len(path):
                return
            bucket = self.buckets.get(path[:length])
            if bucket is not None:
                yield from bucket


def _indexing(entries: dict[str, Any]) -> Generator[None, None, Mapping[str, _PathIndex]]:
    """
    The path index of each host key of C{entries} (host key to path key to
    a list of routes), made in place, pausing (yielding) every L{STEP} keys.
    """
    for n, (key, by_path) in enumerate(entries.items(), 1):
        entries[key] = yield from _PathIndex.making(by_path)
        if n % STEP == 0:
            yield None
    return entries


def finish(steps: Generator[None, None, T]) -> T:
    """
    What C{steps} (such as L{Router.building}) return, run to their end at once.
    """
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


@attrs.define(eq=False)
class SlowRegexLog:
    """
    Logs the regex matches that ran out of their time budget: at most one
    event per route per C{interval} seconds, so that a client sending
    crafted paths cannot flood the log. An event names the route and the
    length of the path (never the path itself), and counts the time-outs
    of that route left unlogged since its last event (C{unlogged}).

    @ivar timeout: the budget that ran out, in seconds (for the message).
    """

    timeout: float | None
    _seconds: Callable[[], float] = time.monotonic
    interval: float = 1.0
    _logged_at: dict[Any, float] = attrs.field(factory=dict)
    _unlogged: dict[Any, int] = attrs.field(factory=dict)

    def timed_out(self, route: Mapping[str, Any], path_length: int) -> None:
        """
        A regex of C{route} ran out of time on a path of C{path_length}
        characters.
        """
        route_id = route.get("id")
        key = route_id if isinstance(route_id, str) else id(route)
        now = self._seconds()
        last = self._logged_at.get(key)
        if last is not None and now - last < self.interval:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return
        self._logged_at[key] = now
        _log.warn(
            "Route {route_id} counted as not matching a request (path of {path_length}"
            " characters): a regex match ran out of its {timeout}s budget"
            " ({unlogged} more time-outs of this route since its last report)",
            route_id=route_id, path_length=path_length, timeout=self.timeout,
            unlogged=self._unlogged.pop(key, 0),
        )


@attrs.frozen(eq=False)
class Router:
    """
    An immutable, indexed route table, built once per snapshot (L{Router.build}).

    Routes are filed by exact host, wildcard-host suffix or prefix, or as
    host-less, and under each by literal path prefix: a look-up examines only
    the routes that could match; recent look-ups are kept in a bounded LRU
    cache keyed on everything that can change the answer.
    """

    _by_host: Mapping[str, _PathIndex]
    _by_suffix: Mapping[str, _PathIndex]
    _by_prefix: Mapping[str, _PathIndex]
    _hostless: _PathIndex
    _header_names: tuple[str, ...]
    _size: int
    _cache_size: int
    _on_candidate: Callable[[dict[str, Any]], None] | None
    _compiled: Mapping[str, tuple[CompiledRoute, tuple[str, ...]]]
    _regex_timeout: float | None
    _slow_regexes: SlowRegexLog
    _cache: OrderedDict[tuple[Any, ...], Match | None] = attrs.field(factory=OrderedDict)
    #: Whether some route has C{snis}: only then does a look-up take the
    #: request's server name into account (and into its cache key).
    uses_snis: bool = False
    #: Whether some route matches on headers (else a look-up reads none).
    reads_headers: bool = False

    @classmethod
    def build(cls, routes: Iterable[dict[str, Any]], services: Mapping[str, dict[str, Any]],
              **options: Any) -> Router:
        """
        Compile C{routes} into a table at once: L{building} run to its end.
        """
        return finish(cls.building(routes, services, **options))

    @classmethod
    def building(
        cls,
        routes: Iterable[dict[str, Any]],
        services: Mapping[str, dict[str, Any]],
        *,
        cache_size: int = 5000,
        on_candidate: Callable[[dict[str, Any]], None] | None = None,
        indexed: bool = True,
        previous: Router | None = None,
        regex_timeout: float | None = 0.005,
        clock: IReactorTime | None = None,
    ) -> Generator[None, None, Router]:
        """
        Compile C{routes} into a table, in steps: a generator that yields
        (C{None}) every L{STEP} routes and returns the L{Router}, so that its
        caller can pause between steps (L{echogate.proxy.snapshot} builds a
        large table in slices of the reactor's time). It only reads its
        arguments and C{previous}. Nothing is rejected (validation
        happened earlier), but a route that cannot be compiled (a regex
        Python cannot compile, a malformed wildcard host, no condition at
        all) is left out and logged, and so is a route whose service is
        disabled, as in Kong.

        @param routes: route records.
        @param services: service id to service record.
        @param cache_size: how many look-ups to remember; 0 for none.
        @param on_candidate: called with each route record that a look-up
            evaluates (for tests and metrics).
        @param indexed: C{False} files every route in one list that every
            look-up walks: the same answers, slower (a baseline for tests
            and benchmarks).
        @param previous: the table this one replaces. A route whose record
            and service record are the very objects that table compiled
            (the store hands back the same records for rows that did not
            change) is taken from it instead of compiled again, so that a
            change to one route of thousands recompiles one.
        @param regex_timeout: the seconds one regex match (a regex path, a
            C{~*} header value) may take on one request, the setting
            C{regex_match_timeout}; C{None} for no limit. A match that
            runs out counts as no match for its route, and the look-up
            goes on with the other candidates.
        @param clock: what L{SlowRegexLog} reads the time from (by
            default, the monotonic clock).
        """
        reusable = previous._compiled if previous is not None else {}
        compiled_by_id: dict[str, tuple[CompiledRoute, tuple[str, ...]]] = {}
        # (host key to) path key to a list of routes, then made indexes in place.
        by_host: dict[str, Any] = {}
        by_suffix: dict[str, Any] = {}
        by_prefix: dict[str, Any] = {}
        hostless: dict[str, Any] = {}
        header_names: set[str] = set()
        uses_snis = False
        by_kind = {PLAIN: by_host, SUFFIX: by_suffix, PREFIX: by_prefix}
        size = 0
        for seq, route in enumerate(routes):
            if seq and seq % STEP == 0:
                yield None
            route_id = route.get("id")
            service = None
            reference = route.get("service")
            if reference is not None:
                service = services.get(reference.get("id"))
                if service is None:
                    _log.warn("Route {route_id} refers to a missing service {service_id}",
                              route_id=route_id, service_id=reference.get("id"))
                elif service.get("enabled") is False:
                    _log.info("Route {route_id} left out: its service is disabled",
                              route_id=route_id)
                    continue
            known = reusable.get(route_id) if isinstance(route_id, str) else None
            entry = None
            if known is not None and known[0].route is route and known[0].service is service:
                compiled, kept = known
                if compiled.order[-1] != seq:
                    compiled = compiled.renumbered(seq)
                else:
                    entry = known  # (the same entry: the replaced table frees less)
                keys = kept
            else:
                try:
                    compiled, found = compile_route(route, service, seq)
                    keys = tuple(found)
                except ValueError as e:
                    _log.warn("Route {route_id} left out: {reason}", route_id=route_id, reason=e)
                    continue
                except Exception:
                    _log.failure("Route {route_id} left out: it cannot be compiled",
                                 route_id=route_id)
                    continue
            if isinstance(route_id, str):
                compiled_by_id[route_id] = entry or (compiled, keys)
            size += 1
            uses_snis = uses_snis or bool(compiled.snis)
            if compiled.headers:
                header_names.update(header.name for header in compiled.headers)
            tables: list[dict[str, list[CompiledRoute]]] = []
            if not indexed:
                keys = ("",)
            for host in compiled.hosts if indexed else ():
                tables.append(by_kind[host.kind].setdefault(host.name, {}))
            if not compiled.hosts or not indexed:
                tables.append(hostless)
            for table in tables:
                for key in keys:
                    bucket = table.setdefault(key, [])
                    if not bucket or bucket[-1] is not compiled:
                        bucket.append(compiled)
        exact = yield from _indexing(by_host)
        suffixes = yield from _indexing(by_suffix)
        prefixes = yield from _indexing(by_prefix)
        hostless_index = yield from _PathIndex.making(hostless)
        return cls(
            exact, suffixes, prefixes, hostless_index,
            tuple(sorted(header_names)), size, cache_size, on_candidate, compiled_by_id,
            regex_timeout,
            SlowRegexLog(regex_timeout, clock.seconds) if clock is not None else SlowRegexLog(regex_timeout),
            uses_snis=uses_snis, reads_headers=bool(header_names),
        )

    def __len__(self) -> int:
        """
        The number of routes in the table.
        """
        return self._size

    def match(self, method: str, host: str | None, path: str, headers: Headers,
              *, scheme: str = "http", sni: str | None = None) -> Match | None:
        """
        The best route for a request, or C{None} when no route matches
        (the proxy answers 404).

        @param method: the request method, upper case.
        @param host: the C{Host} header (with or without C{:port}) or C{None}.
        @param path: the normalised request path (see
            L{echogate.routing.paths.normalize_path}).
        @param headers: lower-case header names to their values.
        @param scheme: C{"http"} or C{"https"}: gives the port of a C{Host}
            without one, for route hosts that name a port.
        @param sni: the server name of the client's TLS handshake (lower
            case), for routes with C{snis}; see L{uses_snis}.
        """
        if not self.uses_snis:
            sni = None
        key = None
        if self._cache_size > 0:
            key = (method, host, path, scheme, sni, tuple(
                tuple(sorted(v.lower() for v in headers.get(name, ())))
                for name in self._header_names
            ) if self._header_names else ())
            cached = self._cache.get(key, _MISSING)
            if cached is not _MISSING:
                self._cache.move_to_end(key)
                return cached  # type: ignore[return-value]

        found, timed_out = self._lookup(method, host, path, headers, scheme, sni)

        # A look-up in which a regex ran out of time is not remembered: its
        # answer depends on how busy the node was.
        if key is not None and not timed_out:
            self._cache[key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _indexes(self, name: str | None) -> Iterator[_PathIndex]:
        """
        The path indexes holding the routes that could match host C{name}.
        """
        if name is not None:
            exact = self._by_host.get(name)
            if exact is not None:
                yield exact
            if self._by_suffix:
                dot = name.find(".", 1)
                while dot != -1:
                    index = self._by_suffix.get(name[dot:])
                    if index is not None:
                        yield index
                    dot = name.find(".", dot + 1)
            if self._by_prefix:
                dot = name.find(".")
                while dot != -1 and dot < len(name) - 1:
                    index = self._by_prefix.get(name[:dot + 1])
                    if index is not None:
                        yield index
                    dot = name.find(".", dot + 1)
        yield self._hostless

    def _lookup(self, method: str, host: str | None, path: str, headers: Headers,
                scheme: str, sni: str | None = None) -> tuple[Match | None, bool]:
        """
        The best route for a request, and whether a regex match ran out of
        time on the way (that route counted as not matching).
        """
        name = port = None
        if host:
            name, port = split_host(host)
            if port is None:
                port = _DEFAULT_PORTS.get(scheme)
        best: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
        winner = None
        seen: set[int] = set()
        timed_out = False
        for index in self._indexes(name):
            for candidate in index.candidates(path):
                if id(candidate) in seen:
                    continue
                seen.add(id(candidate))
                if self._on_candidate is not None:
                    self._on_candidate(candidate.route)
                try:
                    result = candidate.evaluate(method, name, port, path, headers, self._regex_timeout, sni)
                except TimeoutError:
                    timed_out = True
                    self._slow_regexes.timed_out(candidate.route, len(path))
                    continue
                if result is not None and (best is None or result[0] < best[0]):
                    best, winner = result, candidate
        if best is None or winner is None:
            return None, timed_out
        return winner.to_match(*best[1]), timed_out
