"""
The route table: which route, and so which service, a request goes to.

L{Router.build} compiles the configured routes into an immutable, indexed
table once per configuration snapshot; L{Router.match} picks the route for
one request. Matching and ordering follow Kong's traditional router; the
user-facing rules are in C{docs/routing.md}.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs
from twisted.logger import Logger

from echogate.paths import compile_regex_path, join_upstream_path, python_regex, regex_literal_prefix

_log = Logger()

_NO_CAPTURES: Mapping[str, str | None] = MappingProxyType({})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MISSING = object()

# The kinds of fields a route can set, as bits: when two routes set as many
# kinds, the one whose kinds weigh more comes first (as in Kong).
_HOSTS, _HEADERS, _PATHS, _METHODS = 8, 4, 2, 1

# How a route host matched: lower ranks come first.
_EXACT_WITH_PORT, _EXACT, _WILDCARD_WITH_PORT, _WILDCARD = range(4)

# How a route host is compared: the name itself, a leftmost wildcard (by
# suffix), a rightmost wildcard (by prefix).
_PLAIN, _SUFFIX, _PREFIX = range(3)

Headers = Mapping[str, Sequence[str]]


@attrs.frozen
class Match:
    """
    The route a request matched, and where it goes.

    @ivar route: the route record.
    @ivar service: the route's service record, or C{None} when the route
        has no service (the proxy answers 503).
    @ivar stripped: what the route's path matched at the start of the
        request path (the prefix, or a regex path's whole match); C{""}
        when the route matched without a path.
    @ivar upstream_path: the path to send upstream, without the query
        string (see L{echogate.paths.join_upstream_path}).
    @ivar matched_host: the route host that matched, as configured
        (C{"*.example.com"}), or C{None}.
    @ivar matched_path: the route path that matched, as configured (with
        its C{~} for a regex), or C{None}.
    @ivar captures: a regex path's groups, in order (C{None} for a group
        that did not take part); empty otherwise.
    @ivar named_captures: a regex path's named groups (PCRE's
        C{(?<name>...)} or Python's C{(?P<name>...)}), read-only.
    """

    route: dict[str, Any]
    service: dict[str, Any] | None
    stripped: str
    upstream_path: str
    matched_host: str | None = None
    matched_path: str | None = None
    captures: tuple[str | None, ...] = ()
    named_captures: Mapping[str, str | None] = _NO_CAPTURES
    #: What strip_path removed from the request path (for
    #: C{X-Forwarded-Prefix}): L{stripped} when the route strips, else
    #: C{""}. Worked out once: a match is cached and serves many requests.
    removed_prefix: str = attrs.field(
        default=attrs.Factory(lambda self: self.stripped if _strips(self.route) else "", takes_self=True))


def _strips(route: Mapping[str, Any]) -> bool:
    """
    Whether C{route} strips its matched path: C{strip_path} defaults to
    true when unset (null or missing).
    """
    return route.get("strip_path") is not False


def split_host(value: str) -> tuple[str, int | None]:
    """
    Split a C{Host} header value, or a route host, into its lower-case name
    and its port (C{None} when there is none). IPv6 addresses lose their
    brackets: C{"[::1]:8000"} gives C{("::1", 8000)}, and C{"::1"} and
    C{"[::1]"} both give C{("::1", None)}. A value whose port is not
    decimal digits is all name.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, None
        name, rest = value[1:end], value[end + 1:]
        if rest[:1] == ":" and rest[1:].isascii() and rest[1:].isdigit():
            return name, int(rest[1:])
        return name, None
    if value.count(":") != 1:
        return value, None
    name, _, port = value.partition(":")
    if port == "":
        return name, None
    if port.isascii() and port.isdigit():
        return name, int(port)
    return value, None


@attrs.frozen
class _Host:
    """
    One compiled route host: C{name} is the host name (C{_PLAIN}), the
    suffix after a leftmost C{*} (C{_SUFFIX}, C{".example.com"}) or the
    prefix before a rightmost one (C{_PREFIX}, C{"example."}).
    """

    kind: int
    name: str
    port: int | None
    value: str

    @classmethod
    def compile(cls, value: str) -> _Host:
        name, port = split_host(value)
        if "*" not in name:
            return cls(_PLAIN, name, port, value)
        if name.startswith("*.") and "*" not in name[1:] and len(name) > 2:
            return cls(_SUFFIX, name[1:], port, value)
        if name.endswith(".*") and "*" not in name[:-1] and len(name) > 2:
            return cls(_PREFIX, name[:-1], port, value)
        raise ValueError(f"bad wildcard host {value!r}")

    def rank(self, name: str, port: int | None) -> int | None:
        """
        How this host matches a request's host name and port, or C{None}.
        """
        if self.port is not None and self.port != port:
            return None
        if self.kind == _PLAIN:
            if name != self.name:
                return None
            return _EXACT if self.port is None else _EXACT_WITH_PORT
        if self.kind == _SUFFIX:
            ok = name.endswith(self.name) and len(name) > len(self.name)
        else:
            ok = name.startswith(self.name) and len(name) > len(self.name)
        if not ok:
            return None
        return _WILDCARD if self.port is None else _WILDCARD_WITH_PORT


@attrs.frozen
class _Header:
    """
    One header condition: any value equal (ignoring case) to one of
    C{values}, or, for a single configured value C{"~*regex"}, any value
    the regex finds a match in (ignoring case).
    """

    name: str
    values: frozenset[str]
    pattern: re.Pattern[str] | None

    @classmethod
    def compile(cls, name: str, values: Sequence[str]) -> _Header:
        pattern = None
        if len(values) == 1 and values[0].startswith("~*"):
            pattern = re.compile(python_regex(values[0][2:]), re.IGNORECASE)
        return cls(name.lower(), frozenset(v.lower() for v in values), pattern)

    def matches(self, headers: Headers) -> bool:
        for value in headers.get(self.name, ()):
            if value.lower() in self.values:
                return True
            if self.pattern is not None and self.pattern.search(value):
                return True
        return False


@attrs.frozen(eq=False)
class _CompiledRoute:
    """
    A route ready to be matched: its conditions compiled, and the parts of
    its rank that do not depend on the request.
    """

    route: dict[str, Any]
    service: dict[str, Any] | None
    methods: frozenset[str] | None
    hosts: tuple[_Host, ...]
    headers: tuple[_Header, ...]
    has_paths: bool
    prefixes: tuple[str, ...]
    regexes: tuple[tuple[str, re.Pattern[str]], ...]
    kinds: tuple[int, int]
    strip: bool
    regex_priority: int
    order: tuple[Any, ...]

    def evaluate(self, method: str, name: str | None, port: int | None, path: str,
                 headers: Headers) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """
        If this route matches the request (host C{name} and C{port} split
        already), its rank for this request (lower comes first) and what
        L{to_match} needs; otherwise C{None}.
        """
        if self.methods is not None and method not in self.methods:
            return None

        host_rank = 0
        matched_host = None
        if self.hosts:
            if name is None:
                return None
            best = None
            for host in self.hosts:
                rank = host.rank(name, port)
                if rank is not None and (best is None or rank < best):
                    best, matched_host = rank, host.value
            if best is None:
                return None
            host_rank = best

        path_rank = (0, 0, 0)
        stripped = ""
        matched_path = None
        found = None
        if self.has_paths:
            for value, regex in self.regexes:
                found = regex.match(path)
                if found is not None:
                    stripped, matched_path = path[:found.end()], value
                    path_rank = (0, -self.regex_priority, 0)
                    break
            else:
                for prefix in self.prefixes:
                    if path.startswith(prefix):
                        stripped = matched_path = prefix
                        path_rank = (1, 0, -len(prefix))
                        break
                else:
                    return None

        for header in self.headers:
            if not header.matches(headers):
                return None

        rank = (self.kinds, host_rank, -len(self.headers), path_rank, self.order)
        return rank, (path, stripped, matched_host, matched_path, found)

    def to_match(self, path: str, stripped: str, matched_host: str | None,
                 matched_path: str | None, found: re.Match[str] | None) -> Match:
        """
        The L{Match} for a request this route won.
        """
        service_path = self.service.get("path") if self.service is not None else None
        named = found.groupdict() if found is not None and found.re.groupindex else None
        return Match(
            route=self.route,
            service=self.service,
            stripped=stripped,
            upstream_path=join_upstream_path(service_path, path, stripped, self.strip),
            matched_host=matched_host,
            matched_path=matched_path,
            captures=found.groups() if found is not None else (),
            named_captures=MappingProxyType(named) if named else _NO_CAPTURES,
        )


def _compile(route: dict[str, Any], service: dict[str, Any] | None,
             seq: int) -> tuple[_CompiledRoute, list[str]]:
    """
    Compile one route; return it with the index keys its paths go under.

    @raise ValueError: if the route sets no condition, has a bad wildcard
        host, or a regex that does not compile.
    """
    methods = route.get("methods") or None
    hosts = tuple(_Host.compile(h) for h in route.get("hosts") or ())
    headers = tuple(
        _Header.compile(name, values)
        for name, values in sorted((route.get("headers") or {}).items())
        if name.lower() != "host"
    )
    paths = route.get("paths") or ()
    prefixes = tuple(sorted((p for p in paths if not p.startswith("~")), key=len, reverse=True))
    regexes = tuple((p, compile_regex_path(p)) for p in paths if p.startswith("~"))

    bits = ((_HOSTS if hosts else 0) | (_HEADERS if headers else 0)
            | (_PATHS if paths else 0) | (_METHODS if methods else 0))
    if not bits:
        raise ValueError("it sets none of methods, hosts, headers, paths")
    kinds = bin(bits).count("1")

    created_at = route.get("created_at")
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)):
        created = (1, 0)
    else:
        created = (0, created_at)

    compiled = _CompiledRoute(
        route=route,
        service=service,
        methods=frozenset(m.upper() for m in methods) if methods else None,
        hosts=hosts,
        headers=headers,
        has_paths=bool(paths),
        prefixes=prefixes,
        regexes=regexes,
        kinds=(-kinds, -bits),
        strip=_strips(route),
        regex_priority=int(route.get("regex_priority") or 0),
        order=created + (str(route.get("id") or ""), seq),
    )
    keys = list(prefixes) + [regex_literal_prefix(regex.pattern) for _, regex in regexes]
    return compiled, keys or [""]


@attrs.frozen
class _PathIndex:
    """
    Compiled routes filed under literal path prefixes (a prefix path, a
    regex's literal start, or C{""}); C{lengths} are the distinct key
    lengths, shortest first.
    """

    buckets: Mapping[str, tuple[_CompiledRoute, ...]]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, entries: Mapping[str, list[_CompiledRoute]]) -> _PathIndex:
        return cls(
            {key: tuple(routes) for key, routes in entries.items()},
            tuple(sorted({len(key) for key in entries})),
        )

    def candidates(self, path: str) -> Iterator[_CompiledRoute]:
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


def _index(entries: Mapping[str, Mapping[str, list[_CompiledRoute]]]) -> Mapping[str, _PathIndex]:
    return {key: _PathIndex.of(by_path) for key, by_path in entries.items()}


@attrs.frozen(eq=False)
class Router:
    """
    An immutable, indexed route table, built once per configuration
    snapshot with L{Router.build}.

    Routes are filed by exact host, by wildcard-host suffix or prefix, or as
    host-less, and under each by literal path prefix, so that a look-up
    examines only the routes that could match; recent look-ups are kept in
    a bounded LRU cache keyed on everything that can change the answer.
    """

    _by_host: Mapping[str, _PathIndex]
    _by_suffix: Mapping[str, _PathIndex]
    _by_prefix: Mapping[str, _PathIndex]
    _hostless: _PathIndex
    _header_names: tuple[str, ...]
    _size: int
    _cache_size: int
    _on_candidate: Callable[[dict[str, Any]], None] | None
    _cache: OrderedDict[tuple[Any, ...], Match | None] = attrs.field(factory=OrderedDict)

    @classmethod
    def build(
        cls,
        routes: Iterable[dict[str, Any]],
        services: Mapping[str, dict[str, Any]],
        *,
        cache_size: int = 5000,
        on_candidate: Callable[[dict[str, Any]], None] | None = None,
        indexed: bool = True,
    ) -> Router:
        """
        Compile C{routes} into a table. Nothing is rejected (validation
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
        """
        by_host: dict[str, dict[str, list[_CompiledRoute]]] = {}
        by_suffix: dict[str, dict[str, list[_CompiledRoute]]] = {}
        by_prefix: dict[str, dict[str, list[_CompiledRoute]]] = {}
        hostless: dict[str, list[_CompiledRoute]] = {}
        header_names: set[str] = set()
        size = 0
        for seq, route in enumerate(routes):
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
            try:
                compiled, keys = _compile(route, service, seq)
            except (ValueError, re.error) as e:
                _log.warn("Route {route_id} left out: {reason}", route_id=route_id, reason=e)
                continue
            except Exception:
                _log.failure("Route {route_id} left out: it cannot be compiled",
                             route_id=route_id)
                continue
            size += 1
            header_names.update(header.name for header in compiled.headers)
            tables: list[dict[str, list[_CompiledRoute]]] = []
            if not indexed:
                keys = [""]
            for host in compiled.hosts if indexed else ():
                table = {_PLAIN: by_host, _SUFFIX: by_suffix, _PREFIX: by_prefix}[host.kind]
                tables.append(table.setdefault(host.name, {}))
            if not compiled.hosts or not indexed:
                tables.append(hostless)
            for table in tables:
                for key in keys:
                    bucket = table.setdefault(key, [])
                    if not bucket or bucket[-1] is not compiled:
                        bucket.append(compiled)
        return cls(
            _index(by_host), _index(by_suffix), _index(by_prefix), _PathIndex.of(hostless),
            tuple(sorted(header_names)), size, cache_size, on_candidate,
        )

    def __len__(self) -> int:
        """
        The number of routes in the table.
        """
        return self._size

    def match(self, method: str, host: str | None, path: str, headers: Headers,
              *, scheme: str = "http") -> Match | None:
        """
        The best route for a request, or C{None} when no route matches
        (the proxy answers 404).

        @param method: the request method, upper case.
        @param host: the C{Host} header (with or without C{:port}), or
            C{None}.
        @param path: the normalised request path (see
            L{echogate.paths.normalize_path}).
        @param headers: lower-case header names to their values.
        @param scheme: C{"http"} or C{"https"}: gives the port of a C{Host}
            without one, for route hosts that name a port.
        """
        key = None
        if self._cache_size > 0:
            key = (method, host, path, scheme, tuple(
                tuple(sorted(v.lower() for v in headers.get(name, ())))
                for name in self._header_names
            ) if self._header_names else ())
            cached = self._cache.get(key, _MISSING)
            if cached is not _MISSING:
                self._cache.move_to_end(key)
                return cached  # type: ignore[return-value]

        found = self._lookup(method, host, path, headers, scheme)

        if key is not None:
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
                scheme: str) -> Match | None:
        name = port = None
        if host:
            name, port = split_host(host)
            if port is None:
                port = _DEFAULT_PORTS.get(scheme)
        best: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
        winner = None
        seen: set[int] = set()
        for index in self._indexes(name):
            for candidate in index.candidates(path):
                if id(candidate) in seen:
                    continue
                seen.add(id(candidate))
                if self._on_candidate is not None:
                    self._on_candidate(candidate.route)
                result = candidate.evaluate(method, name, port, path, headers)
                if result is not None and (best is None or result[0] < best[0]):
                    best, winner = result, candidate
        if best is None or winner is None:
            return None
        return winner.to_match(*best[1])
