"""
One route against one request, for L{echogate.routing.router}: each route's
conditions (methods, hosts, headers, paths) compiled once, the rank that
orders the routes a request matches, and the L{Match} the winner gives.
The user-facing rules are in C{docs/routing.md}.

Regexes (regex paths, C{~*} header values) are compiled with the C{regex}
package and every match is given a time budget: a match that runs out
raises L{TimeoutError} out of L{CompiledRoute.evaluate}, and the router
counts the route as not matching (see L{echogate.routing.router}).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import attrs
import regex as _regex

from echogate.routing.paths import compile_regex, compile_regex_path, join_upstream_path, regex_literal_prefix

__all__ = ["Headers", "Match", "split_host", "sni_matches", "PLAIN", "SUFFIX", "PREFIX", "CompiledRoute",
           "compile_route"]

_NO_CAPTURES: Mapping[str, str | None] = MappingProxyType({})

# The kinds of fields a route can set, as bits: when two routes set as many
# kinds, the one whose kinds weigh more comes first (as in Kong).
# (SNIs weigh least, as in Kong's router.)
_HOSTS, _HEADERS, _PATHS, _METHODS, _SNIS = 16, 8, 4, 2, 1

# How a route host matched: lower ranks come first.
_EXACT_WITH_PORT, _EXACT, _WILDCARD_WITH_PORT, _WILDCARD = range(4)

# How a route host is compared: the name itself, a leftmost wildcard (by
# suffix), a rightmost wildcard (by prefix).
PLAIN, SUFFIX, PREFIX = range(3)

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
        string (see L{echogate.routing.paths.join_upstream_path}).
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
    One compiled route host: C{name} is the host name (C{PLAIN}), the
    suffix after a leftmost C{*} (C{SUFFIX}, C{".example.com"}) or the
    prefix before a rightmost one (C{PREFIX}, C{"example."}).
    """

    kind: int
    name: str
    port: int | None
    value: str

    @classmethod
    def compile(cls, value: str) -> _Host:
        name, port = split_host(value)
        if "*" not in name:
            return cls(PLAIN, name, port, value)
        if name.startswith("*.") and "*" not in name[1:] and len(name) > 2:
            return cls(SUFFIX, name[1:], port, value)
        if name.endswith(".*") and "*" not in name[:-1] and len(name) > 2:
            return cls(PREFIX, name[:-1], port, value)
        raise ValueError(f"bad wildcard host {value!r}")

    def rank(self, name: str, port: int | None) -> int | None:
        """
        How this host matches a request's host name and port, or C{None}.
        """
        if self.port is not None and self.port != port:
            return None
        if self.kind == PLAIN:
            if name != self.name:
                return None
            return _EXACT if self.port is None else _EXACT_WITH_PORT
        if self.kind == SUFFIX:
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
    pattern: _regex.Pattern[str] | None

    @classmethod
    def compile(cls, name: str, values: Sequence[str]) -> _Header:
        """
        @raise ValueError: if a C{~*} regex does not compile.
        """
        pattern = None
        if len(values) == 1 and values[0].startswith("~*"):
            pattern = compile_regex(values[0][2:], ignore_case=True)
        return cls(name.lower(), frozenset(v.lower() for v in values), pattern)

    def matches(self, headers: Headers, timeout: float | None = None) -> bool:
        """
        Whether one of the request's values of this header matches.

        @param timeout: the seconds each regex search may take.
        @raise TimeoutError: if a regex search runs out of C{timeout}.
        """
        for value in headers.get(self.name, ()):
            if value.lower() in self.values:
                return True
            if self.pattern is not None and self.pattern.search(value, timeout=timeout):
                return True
        return False


@attrs.frozen(eq=False)
class CompiledRoute:
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
    regexes: tuple[tuple[str, _regex.Pattern[str]], ...]
    kinds: tuple[int, int]
    strip: bool
    regex_priority: int
    order: tuple[Any, ...]
    #: The route's C{snis}, lower case: a name, C{*.suffix} or C{prefix.*}.
    snis: tuple[str, ...] = ()

    def evaluate(self, method: str, name: str | None, port: int | None, path: str,
                 headers: Headers, timeout: float | None = None, sni: str | None = None
                 ) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """
        If this route matches the request (host C{name} and C{port} split
        already), its rank for this request (lower comes first) and what
        L{to_match} needs; otherwise C{None}.

        @param timeout: the seconds each regex match (a regex path, a
            C{~*} header value) may take; C{None} for no limit.
        @param sni: the server name the client sent in its TLS handshake
            (lower case), or C{None}: a route with C{snis} matches only
            one of them.
        @raise TimeoutError: if a regex match runs out of C{timeout}; the
            caller counts the route as not matching.
        """
        if self.methods is not None and method not in self.methods:
            return None
        if self.snis and not sni_matches(self.snis, sni):
            return None

        host_rank = 0
        matched_host = None
        if self.hosts:
            if name is None:
                return None
            best = None
            for host in self.hosts:
                candidate = host.rank(name, port)
                if candidate is not None and (best is None or candidate < best):
                    best, matched_host = candidate, host.value
            if best is None:
                return None
            host_rank = best

        path_rank = (0, 0, 0)
        stripped = ""
        matched_path = None
        found = None
        if self.has_paths:
            for value, regex in self.regexes:
                found = regex.match(path, timeout=timeout)
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
            if not header.matches(headers, timeout):
                return None

        rank = (self.kinds, host_rank, -len(self.headers), path_rank, self.order)
        return rank, (path, stripped, matched_host, matched_path, found)

    def renumbered(self, seq: int) -> CompiledRoute:
        """
        This route at position C{seq} of a new table (the last part of its
        C{order}; everything else compiled stays as it is).
        """
        return CompiledRoute(self.route, self.service, self.methods, self.hosts, self.headers,
                             self.has_paths, self.prefixes, self.regexes, self.kinds, self.strip,
                             self.regex_priority, self.order[:-1] + (seq,), self.snis)

    def to_match(self, path: str, stripped: str, matched_host: str | None,
                 matched_path: str | None, found: _regex.Match[str] | None) -> Match:
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


def sni_matches(snis: tuple[str, ...], sni: str | None) -> bool:
    """
    Whether the server name C{sni} (lower case, or C{None} for a request
    without one) is one of C{snis}: a name, C{*.suffix} (any one or more
    labels before the suffix) or C{prefix.*}.
    """
    if sni is None:
        return False
    for name in snis:
        if name == sni:
            return True
        if name.startswith("*.") and sni.endswith(name[1:]) and len(sni) > len(name) - 1:
            return True
        if name.endswith(".*") and sni.startswith(name[:-1]) and len(sni) > len(name) - 1:
            return True
    return False


def compile_route(route: dict[str, Any], service: dict[str, Any] | None,
                  seq: int) -> tuple[CompiledRoute, list[str]]:
    """
    Compile one route; return it with the index keys its paths go under.

    @raise ValueError: if the route sets no condition, has a bad wildcard
        host, or a regex (path or header) that does not compile.
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

    snis = tuple(name.lower() for name in route.get("snis") or ())
    bits = ((_HOSTS if hosts else 0) | (_HEADERS if headers else 0)
            | (_PATHS if paths else 0) | (_METHODS if methods else 0) | (_SNIS if snis else 0))
    if not bits:
        raise ValueError("it sets none of methods, hosts, headers, paths, snis")
    kinds = bin(bits).count("1")

    created_at = route.get("created_at")
    created: tuple[int, float]
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)):
        created = (1, 0)
    else:
        created = (0, created_at)

    compiled = CompiledRoute(
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
        snis=snis,
    )
    keys = list(prefixes) + [regex_literal_prefix(regex.pattern) for _, regex in regexes]
    return compiled, keys or [""]
