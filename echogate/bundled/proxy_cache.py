"""
proxy-cache (memory strategy): answers repeated requests from a cache in
the node's memory.

C{access} builds the cache key (route, consumer, method, path, query
arguments, the C{vary_headers}), and answers a fresh entry at once with
C{ctx.exit} (C{X-Cache-Status: Hit}, the cached status, headers and body,
and C{Age}). Otherwise the request goes upstream (C{Miss}, or C{Refresh}
for a stale entry still kept because C{storage_ttl} is longer); C{header_filter} decides whether the response may
be stored (status, content type, no C{Set-Cookie}, and with
C{cache_control} the C{Cache-Control} rules), and C{body_filter} copies
the body as it streams, up to C{memory.max_entry_size}: a larger body
keeps streaming to the client and is not stored. Requests and responses
that may not be cached read C{X-Cache-Status: Bypass}.

Entries live in a L{MemoryCache} per C{memory.dictionary_name}: a
least-recently-used map bounded by the total size of its entries
(C{memory.dictionary_size} bytes).
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Any, Mapping

import attrs
from twisted.internet.interfaces import IReactorTime

from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Array, Boolean, Integer, Record, String

__all__ = ["ProxyCache", "MemoryCache", "CachedResponse", "cache_key"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailers", "trailer", "transfer-encoding", "upgrade", "content-length",
                         "date", "server", "x-echogate-response-latency"})
_DIAGNOSTIC = ("age", "x-cache-status", "x-cache-key")
_ENTRY_OVERHEAD = 256


@attrs.frozen
class CachedResponse:
    """
    One stored response.

    @ivar headers: name to values, without hop-by-hop headers.
    @ivar stored_at: when it was stored (seconds).
    @ivar ttl: seconds it stays fresh.
    """

    status: int
    headers: tuple[tuple[str, tuple[str, ...]], ...]
    body: bytes
    stored_at: float
    ttl: float

    @property
    def size(self) -> int:
        """
        What the entry counts against the cache's size.
        """
        return (len(self.body) + _ENTRY_OVERHEAD
                + sum(len(name) + sum(len(v) for v in values) for name, values in self.headers))


class MemoryCache:
    """
    Responses by key, least recently used first out once the entries'
    total size passes C{max_bytes}; an entry also leaves once its storage
    time is over.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CachedResponse, float]] = OrderedDict()
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> CachedResponse | None:
        """
        The entry stored under C{key}, or C{None} (also once its storage
        time is over).
        """
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires = found
        if now >= expires:
            self.purge(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResponse, keep_until: float) -> bool:
        """
        Store C{entry} under C{key} until C{keep_until}, evicting the least
        recently used entries to make room. An entry larger than the
        whole cache is not stored.
        """
        size = entry.size
        if size > self.max_bytes:
            return False
        self.purge(key)
        while self.size + size > self.max_bytes and self._entries:
            _, (old, _) = self._entries.popitem(last=False)
            self.size -= old.size
        self._entries[key] = (entry, keep_until)
        self.size += size
        return True

    def purge(self, key: str) -> None:
        """
        Remove the entry under C{key}, if any.
        """
        found = self._entries.pop(key, None)
        if found is not None:
            self.size -= found[0].size

    def flush(self) -> None:
        """
        Remove every entry.
        """
        self._entries.clear()
        self.size = 0


class CacheDictionaries:
    """
    The L{MemoryCache}s of one proxy-cache plugin object, by name (made on
    first use; the size comes from the config that uses it, and grows or
    shrinks when a config says another).
    """

    def __init__(self) -> None:
        self.caches: dict[str, MemoryCache] = {}

    def get(self, name: str, max_bytes: int) -> MemoryCache:
        cache = self.caches.get(name)
        if cache is None:
            cache = self.caches[name] = MemoryCache(max_bytes)
        elif cache.max_bytes != max_bytes:
            cache.max_bytes = max_bytes
            while cache.size > max_bytes and len(cache):
                key = next(iter(cache._entries))
                cache.purge(key)
        return cache


def _vary_part(values: Mapping[str, list[str]], names: Any) -> str:
    parts = []
    for name in names:
        found = values.get(name)
        if found is None:
            continue
        if found == [""]:
            parts.append(name)
        else:
            parts.append(f"{name}={','.join(sorted(found))}")
    return ":".join(parts)


def cache_key(ctx: Any, config: Mapping[str, Any]) -> str:
    """
    The request's cache key, as Kong builds it: a SHA-256 over the route
    (and consumer), the method, the path, the query arguments (all, or
    C{vary_query_params}) and the C{vary_headers}.
    """
    route = (ctx.route or {}).get("id")
    consumer = (ctx.consumer or {}).get("id")
    prefix = f"{consumer}:{route}" if consumer and route else (route or "default")
    path = ctx.request.raw_path
    if config["ignore_uri_case"]:
        path = path.lower()
    args = ctx.request.query_args
    params = _vary_part(args, config["vary_query_params"] or sorted(args))
    headers = ""
    if config["vary_headers"]:
        request_headers = ctx.request.get_headers()
        headers = _vary_part(request_headers, [h.lower() for h in config["vary_headers"]])
    text = f"{prefix}|{ctx.request.method}|{path}|{params}|{headers}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _directives(value: str | None) -> dict[str, Any]:
    """
    A Cache-Control header as directives (C{{"max-age": 60, "no-cache": True}}).
    """
    out: dict[str, Any] = {}
    for part in (value or "").split(","):
        name, _, argument = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        argument = argument.strip().strip('"')
        if argument:
            try:
                out[name] = int(argument)
            except ValueError:
                out[name] = argument
        else:
            out[name] = True
    return out


def _resource_ttl(cc: Mapping[str, Any]) -> float:
    for name in ("s-maxage", "max-age"):
        value = cc.get(name)
        if isinstance(value, int):
            return value
    return 0


_MEDIA = re.compile(r"^\s*([^/\s;]+)/([^\s;]+)\s*(.*)$")


def _media_type(value: str) -> tuple[str, str, dict[str, str]] | None:
    m = _MEDIA.match(value.lower())
    if m is None:
        return None
    params = {}
    for part in m.group(3).split(";"):
        key, _, v = part.strip().partition("=")
        if key:
            params[key.strip()] = v.strip().strip('"')
    return m.group(1), m.group(2), params


def _content_type_matches(actual: str | None, allowed: Any) -> bool:
    if not actual:
        return False
    parsed = _media_type(actual)
    if parsed is None:
        return False
    kind, subtype, params = parsed
    for expected in allowed:
        want = _media_type(expected)
        if want is None:
            continue
        if want[0] in ("*", kind) and want[1] in ("*", subtype) and want[2] == params:
            return True
    return False


def _positive(value: int) -> str | None:
    return None if value > 0 else "value must be greater than 0"


@attrs.frozen
class ProxyCache(GatewayPlugin):
    """
    Cache responses in memory and answer repeated requests from the cache.

    @ivar clock: the clock that ages entries (C{IReactorTime}); C{None}:
        the node's reactor (from C{node_service}).
    @ivar dictionaries: the caches (one L{CacheDictionaries} per object).
    @ivar binding: the node, once C{node_service} gave it.
    """

    clock: IReactorTime | None = None
    dictionaries: CacheDictionaries = attrs.field(factory=CacheDictionaries)
    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)

    name = "proxy-cache"
    version = "1.0.0"
    priority = 100
    config_schema = Record({
        "response_code": Array(Integer(between=(100, 900)), default=[200, 301, 404], required=True,
                               len_min=1, description="Upstream statuses that may be cached."),
        "request_method": Array(String(one_of=("HEAD", "GET", "POST", "PATCH", "PUT")),
                                default=["GET", "HEAD"], required=True,
                                description="Request methods that may be cached."),
        "content_type": Array(String(), default=["text/plain", "application/json"], required=True,
                              description="Response content types that may be cached (exact match;"
                                          " * for any type or subtype)."),
        "cache_ttl": Integer(default=300, check=_positive, description="Seconds an entry stays fresh."),
        "strategy": String(required=True, one_of=("memory",), description="Where entries live."),
        "cache_control": Boolean(default=False, required=True,
                                 description="Follow the Cache-Control rules of RFC 7234."),
        "ignore_uri_case": Boolean(default=False, description="Paths differing only in case share entries."),
        "storage_ttl": Integer(check=_positive,
                               description="Seconds an entry is kept in memory (default: its freshness)."),
        "memory": Record({
            "dictionary_name": String(required=True, default="kong_db_cache",
                                      description="The cache entries go in; configs naming the same one share it."),
            "dictionary_size": Integer(required=True, default=128 * 1024 * 1024, check=_positive,
                                       description="Bytes the cache may hold in all (least recently used out first)."),
            "max_entry_size": Integer(required=True, default=1024 * 1024, check=_positive,
                                      description="The largest response body cached; larger ones stream through."),
        }),
        "vary_query_params": Array(String(), description="Query arguments in the key (default: all)."),
        "vary_headers": Array(String(), description="Request headers in the key (default: none)."),
        "response_headers": Record({
            "age": Boolean(default=True),
            "X-Cache-Status": Boolean(default=True),
            "X-Cache-Key": Boolean(default=True),
        }, description="Which diagnostic headers the responses carry."),
    })

    def _now(self) -> float:
        clock: IReactorTime = self.clock if self.clock is not None else self.binding.node.reactor
        return clock.seconds()

    def node_service(self, node: IPluginNode) -> None:
        """
        Keep C{node}: its reactor ages the entries.
        """
        self.binding.bind(node)

    def _cache(self, config: Mapping[str, Any]) -> MemoryCache:
        memory = config["memory"]
        return self.dictionaries.get(memory["dictionary_name"], memory["dictionary_size"])

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        state = ctx.plugin
        cc = _directives(ctx.request.get_header("cache-control")) if config["cache_control"] else {}
        if ctx.request.method not in config["request_method"] or (config["cache_control"] and (
                cc.get("no-store") or cc.get("no-cache") or ctx.request.get_header("authorization"))):
            state["status"] = "Bypass"
            return
        key = state["key"] = cache_key(ctx, config)
        now = self._now()
        cache = self._cache(config)
        entry = cache.get(key, now)
        if entry is None:
            if config["cache_control"] and cc.get("only-if-cached"):
                state["status"] = "Miss"
                ctx.exit(504)
                return
            state["status"] = "Miss"
            state["collect"] = True
            return
        age = now - entry.stored_at
        if self._stale(entry, age, cc, config):
            state["status"] = "Refresh"
            state["collect"] = True
            return
        state["status"] = "Hit"
        headers = {name: ", ".join(values) for name, values in entry.headers
                   if name.lower() not in _DIAGNOSTIC}
        if config["response_headers"]["age"]:
            headers["Age"] = str(int(age))
        ctx.exit(entry.status, entry.body, headers)

    @staticmethod
    def _stale(entry: CachedResponse, age: float, cc: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        if not config["cache_control"]:
            return bool(age > config["cache_ttl"])
        max_age = cc.get("max-age")
        if isinstance(max_age, int) and age > max_age:
            return True
        max_stale = cc.get("max-stale")
        if isinstance(max_stale, int) and age - entry.ttl > max_stale:
            return True
        min_fresh = cc.get("min-fresh")
        if isinstance(min_fresh, int) and entry.ttl - age < min_fresh:
            return True
        return age > entry.ttl

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        state = ctx.plugin
        status = state.get("status")
        if status is None:
            return
        response = ctx.response
        if state.get("collect"):
            ttl = self._cacheable(ctx, config)
            if ttl is None:
                state["collect"] = False
                status = state["status"] = "Bypass"
            else:
                state["ttl"] = ttl
                state["chunks"] = []
                state["size"] = 0
        shown = config["response_headers"]
        if shown["X-Cache-Status"]:
            response.set_header("X-Cache-Status", status)
        if shown["X-Cache-Key"] and "key" in state:
            response.set_header("X-Cache-Key", state["key"])

    def _cacheable(self, ctx: Any, config: Mapping[str, Any]) -> float | None:
        """
        The response's freshness in seconds if it may be stored, else
        C{None}.
        """
        response = ctx.response
        if response.source != "service" or response.status not in config["response_code"]:
            return None
        if not _content_type_matches(response.get_header("content-type"), config["content_type"]):
            return None
        if response.get_header("set-cookie") is not None:
            return None
        if not config["cache_control"]:
            ttl: float = config["cache_ttl"]
            return ttl
        cc = _directives(response.get_header("cache-control"))
        if cc.get("private") or cc.get("no-store") or cc.get("no-cache"):
            return None
        fresh = _resource_ttl(cc)
        return fresh if fresh > 0 else None

    def body_filter(self, ctx: Any, config: Mapping[str, Any], chunk: bytes) -> None:
        state = ctx.plugin
        if not state.get("collect") or "chunks" not in state:
            return None
        if chunk:
            state["size"] += len(chunk)
            if state["size"] > config["memory"]["max_entry_size"]:
                state["collect"] = False
                state["chunks"] = []
                return None
            state["chunks"].append(chunk)
        if ctx.response.eof:
            self._store(ctx, config, b"".join(state["chunks"]))
        return None

    def _store(self, ctx: Any, config: Mapping[str, Any], body: bytes) -> None:
        state = ctx.plugin
        state["collect"] = False
        response = ctx.response
        headers = tuple((name, tuple(values)) for name, values in response.get_headers().items()
                        if name not in _HOP_BY_HOP and name not in _DIAGNOSTIC)
        now = self._now()
        ttl = state["ttl"]
        entry = CachedResponse(status=response.status, headers=headers, body=body, stored_at=now, ttl=ttl)
        keep = config["storage_ttl"] or ttl
        self._cache(config).put(state["key"], entry, now + keep)
