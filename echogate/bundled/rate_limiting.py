"""
rate-limiting: at most so many requests per second, minute, hour, day,
month and year, counted per consumer, credential, IP, service, header or
path, with Kong's config fields, headers and 429 answer.

Counters live where C{policy} says (L{echogate.bundled.ratelimit_policies}):
C{local} (this node's memory), C{cluster} (PostgreSQL, synced in batches,
shared by every node sharing the database) or C{redis}. When the counters
cannot be reached, C{fault_tolerant} lets the request through (and logs
it) or answers 500.

The plugin object keeps every counter in its L{RateLimitStores}, made
with the object: the node's C{node_service} hook gives it the database
for C{cluster}; Redis connections are opened on first use.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from echogate.bundled.ratelimit_policies import (
    PERIODS,
    BatchedPolicy,
    LocalPolicy,
    PostgresCounters,
    StoreUnavailable,
    Usage,
    window,
)
from echogate.bundled.ratelimit_redis import RedisClient, RedisCounters, RedisPolicy, RedisSettings
from echogate.interfaces import IPluginNode
from echogate.pdk.headers import HeaderLines, HeaderNames
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.routing.paths import normal_form_problem
from echogate.schema import ENTITY, Boolean, Integer, Number, Record, String, at_least_one_of

__all__ = ["RateLimiting", "RateLimitStores"]

SYNC_RATE_REALTIME = -1
#: Seconds between the cluster policy's syncs when no sync_rate is given.
CLUSTER_SYNC_INTERVAL = 0.1


def _positive(value: float) -> str | None:
    return None if value > 0 else "value must be greater than 0"


def _periods_ordered(config: dict[str, Any]) -> Mapping[str, str] | None:
    for i, lower in enumerate(PERIODS):
        low = config.get(lower)
        if low is None:
            continue
        for upper in PERIODS[i + 1:]:
            high = config.get(upper)
            if high is not None and high < low:
                return {ENTITY: f"The limit for {upper}({float(high):.1f}) cannot be lower than the limit"
                                f" for {lower}({float(low):.1f})"}
    return None


def _required_with(config: dict[str, Any]) -> Mapping[str, str] | None:
    missing = {}
    if config["policy"] == "redis":
        for field in ("redis_host", "redis_port", "redis_timeout"):
            if config.get(field) is None:
                missing[field] = "required field missing"
    if config["limit_by"] == "header" and config.get("header_name") is None:
        missing["header_name"] = "required field missing"
    if config["limit_by"] == "path" and config.get("path") is None:
        missing["path"] = "required field missing"
    return missing or None


def _sync_rate(config: dict[str, Any]) -> Mapping[str, str] | None:
    rate = config["sync_rate"]
    if rate == SYNC_RATE_REALTIME:
        return None
    if config["policy"] == "local":
        return {ENTITY: "sync_rate can only be used with the cluster and redis policies"}
    if rate < 0.02:
        return {ENTITY: "sync_rate must be greater than 0.02, or -1 to disable"}
    return None


def _dbless_policy(value: str) -> str | None:
    """
    The policies of a node without a database.
    """
    if value == "cluster":
        return "the cluster policy needs a database: not available with database = off (use local or redis)"
    if value not in ("local", "redis"):
        return "expected one of: local, redis"
    return None


def _header_name(value: str) -> str | None:
    return None if all(33 <= ord(c) <= 126 and c not in '()<>@,;:\\"/[]?={}' for c in value) \
        else "bad header name '" + value + "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


class RateLimitStores:
    """
    The counters of one rate-limiting plugin object: the local ones, the
    cluster's (once the node gave its database), and one Redis policy per
    distinct Redis.
    """

    def __init__(self) -> None:
        self.local = LocalPolicy()
        self.cluster_batched: dict[float, BatchedPolicy] = {}
        self.redis: dict[tuple[RedisSettings, float], Any] = {}
        self.dsn: str | None = None
        self.reactor: IReactorTime | None = None

    def attach(self, reactor: IReactorTime, dsn: str | None) -> None:
        """
        Use the node's database for the cluster policy (none: C{None}).
        """
        self.reactor = reactor
        self.dsn = dsn

    def cluster_policy(self, reactor: IReactorTime, sync_rate: float) -> BatchedPolicy:
        """
        The cluster policy syncing every C{sync_rate} seconds.

        @raise StoreUnavailable: the node has not given a database.
        """
        interval = CLUSTER_SYNC_INTERVAL if sync_rate == SYNC_RATE_REALTIME else sync_rate
        policy = self.cluster_batched.get(interval)
        if policy is None:
            if self.dsn is None:
                raise StoreUnavailable("the cluster policy needs the node's database, which is not"
                                       " connected")
            policy = self.cluster_batched[interval] = BatchedPolicy(
                reactor, PostgresCounters(reactor, self.dsn), interval=interval, name="cluster counters")
        return policy

    def redis_policy(self, reactor: IReactorTime, settings: RedisSettings, sync_rate: float) -> Any:
        """
        The redis policy for this Redis: exact (sync_rate -1) or batched.
        """
        key = (settings, sync_rate)
        policy = self.redis.get(key)
        if policy is None:
            client = RedisClient(reactor, settings)
            if sync_rate == SYNC_RATE_REALTIME:
                policy = RedisPolicy(client)
            else:
                policy = BatchedPolicy(reactor, RedisCounters(client), interval=sync_rate,
                                       name=f"Redis counters at {settings.host}:{settings.port}")
            self.redis[key] = policy
        return policy

    def stop(self) -> Deferred:
        """
        Sync what is pending and close every connection.
        """
        policies = list(self.cluster_batched.values()) + list(self.redis.values())
        self.cluster_batched = {}
        self.redis = {}
        return DeferredList([p.stop() for p in policies])


class _CountersService(Service):
    def __init__(self, stores: RateLimitStores, reactor: IReactorTime, dsn: str | None):
        self._stores = stores
        self._reactor = reactor
        self._dsn = dsn

    def startService(self) -> None:
        super().startService()
        self._stores.attach(self._reactor, self._dsn)

    def stopService(self) -> Deferred:
        super().stopService()
        return self._stores.stop()


def _identifier(ctx: Any, config: Mapping[str, Any]) -> str:
    limit_by = config["limit_by"]
    identifier = None
    if limit_by == "consumer":
        identifier = (ctx.consumer or ctx.credential or {}).get("id")
    elif limit_by == "credential":
        identifier = (ctx.credential or {}).get("id")
    elif limit_by == "service":
        identifier = (ctx.service or {}).get("id")
    elif limit_by == "header":
        identifier = ctx.request.get_header(config["header_name"])
    elif limit_by == "path":
        if ctx.request.path == config["path"]:
            identifier = ctx.request.path
    if identifier:
        found: str = identifier
        return found
    client_ip: str = ctx.request.client_ip
    return client_ip


#: The length of each period that is a fixed number of seconds (months
#: and years are calendar ones: L{window}).
_FIXED_LENGTHS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

#: How many configs' limits L{RateLimiting} keeps worked out (then it
#: starts again: a node has as many as its plugin records).
_MAX_PREPARED = 10_000

#: The counters' identifiers by route id, service id and who is counted
#: (the direct path's): each made once (L{_identifier_of}).
_IDENTIFIERS: dict[tuple[Any, Any, Any], str] = {}
_MAX_IDENTIFIERS = 10_000


def _identifier_of(route_id: Any, service_id: Any, who: Any) -> str:
    """
    The counters' identifier of C{who} on a route and service
    (C{route:service:who}), kept in L{_IDENTIFIERS}.
    """
    identifier = f"{route_id}:{service_id}:{who}"
    if len(_IDENTIFIERS) >= _MAX_IDENTIFIERS:
        _IDENTIFIERS.clear()
    _IDENTIFIERS[route_id, service_id, who] = identifier
    return identifier


#: Small counts for the wire (a reset within a minute).
_SMALL_COUNT = 61
_SMALL = tuple(b"%d" % i for i in range(_SMALL_COUNT))


#: Below this, a float limit that is a whole number counts as an
#: integer: its remaining counts are the same whether worked out in
#: floats or integers.
_EXACT_FLOATS = 2 ** 53


@attrs.frozen
class _Single:
    """
    A config that L{RateLimiting} counts by a direct path: the C{local}
    policy and one period of a fixed length (the usual config). What the
    general path works out per request is worked out here once.

    @ivar whole: the limit as an C{int} when it is a whole number (the
        remaining counts are then integers), else C{None}.
    @ivar hide: C{hide_client_headers}.
    """

    period: str
    limit: float
    length: int
    whole: int | None
    limit_name: str
    limit_text: str
    remaining_name: str
    hide: bool
    #: The names of the headers an answer carries (L{HeaderNames}, for
    #: C{set_named}): the limit, the remaining count, C{RateLimit-Limit},
    #: C{RateLimit-Remaining} and C{RateLimit-Reset}; C{refusal}, those
    #: and C{Retry-After}.
    names: HeaderNames = attrs.field(eq=False, repr=False)
    refusal: HeaderNames = attrs.field(eq=False, repr=False)
    #: The lines of the limit's two headers (the limit, and
    #: C{RateLimit-Limit}), the same on every answer; and the names of
    #: the remaining count's two and of C{RateLimit-Reset} (and
    #: C{Retry-After}) for the wire, checked.
    limit_lines: tuple[tuple[bytes, bytes], tuple[bytes, bytes]] = attrs.field(eq=False, repr=False)
    wire_names: tuple[bytes, ...] = attrs.field(eq=False, repr=False)
    #: C{limit_by}, C{error_code} and C{error_message}.
    limit_by: str = attrs.field(eq=False, repr=False)
    error_code: int = attrs.field(eq=False, repr=False)
    error_message: str = attrs.field(eq=False, repr=False)

    @classmethod
    def of(cls, config: Mapping[str, Any], headers: tuple[tuple[str, float, str, str, str, int], ...]
           ) -> "_Single | None":
        """
        The direct path's view of C{config}, or C{None} when it needs the
        general path (another policy, several periods, a month or year).
        """
        if config["policy"] != "local" or len(headers) != 1:
            return None
        period, limit, limit_name, limit_text, remaining_name, length = headers[0]
        if not length:
            return None
        whole = None
        if type(limit) is int or (type(limit) is float and limit.is_integer() and abs(limit) < _EXACT_FLOATS):
            whole = int(limit)
        names = HeaderNames((limit_name, remaining_name, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))
        refusal = HeaderNames(names.names + (b"Retry-After",))
        limit_line = names.lines((limit_text, None, limit_text, None, None))
        return cls(period, limit, length, whole, limit_name, limit_text, remaining_name,
                   bool(config["hide_client_headers"]), names, refusal, (limit_line[0], limit_line[1]),
                   refusal.names, config["limit_by"], config["error_code"], config["error_message"])


@attrs.frozen
class _Limits:
    """
    What a config's limits are, worked out once: C{limits} (period to
    limit, the periods it sets, shortest first) and, for each, the
    period, the limit, the names of its two headers and the limit as
    the header says it; C{single}, the direct path's view of the config
    when it has one.
    """

    config: Mapping[str, Any]
    limits: Mapping[str, float]
    headers: tuple[tuple[str, float, str, str, str, int], ...]
    single: _Single | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "_Limits":
        limits = {period: config[period] for period in PERIODS if config[period] is not None}
        headers = tuple(
            (period, limit, f"X-RateLimit-Limit-{period.capitalize()}", _number(limit),
             f"X-RateLimit-Remaining-{period.capitalize()}", _FIXED_LENGTHS.get(period, 0))
            for period, limit in limits.items())
        return cls(config, limits, headers, _Single.of(config, headers))


@attrs.frozen
class RateLimiting(GatewayPlugin):
    """
    Answer 429 once a limit is reached; tell clients their limits in
    headers.

    @ivar reactor: the clock that windows are read from and the reactor
        that Redis and database connections run on; C{None}: the node's
        reactor (from C{node_service}).
    @ivar stores: the counters (one L{RateLimitStores} per object).
    @ivar binding: the node, once C{node_service} gave it.
    """

    reactor: IReactorTime | None = None
    stores: RateLimitStores = attrs.field(factory=RateLimitStores)
    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)
    prepared: dict[int, _Limits] = attrs.field(factory=dict, eq=False, repr=False)

    name = "rate-limiting"
    version = "1.0.0"
    priority = 910
    config_schema = Record({
        **{period: Number(check=_positive, description=f"Requests allowed per {period}.")
           for period in PERIODS},
        "limit_by": String(default="consumer", one_of=("consumer", "credential", "ip", "service", "header", "path"),
                           description="What requests are counted per (the client IP when it is unknown)."),
        "header_name": String(check=_header_name, description="The header counted per, with limit_by header."),
        "path": String(starts_with="/", check=normal_form_problem,
                       description="The path counted, with limit_by path (in normal form: requests are"
                                   " counted by their normalised path)."),
        "policy": String(default="local", one_of=("local", "cluster", "redis"),
                         description="Where counters live: this node, the database, or Redis."),
        "fault_tolerant": Boolean(required=True, default=True,
                                  description="Let requests through when the counters cannot be reached"
                                              " (false: answer 500)."),
        "redis_host": String(description="Redis's host, with policy redis."),
        "redis_port": Integer(default=6379, between=(0, 65535), description="Redis's port."),
        "redis_password": String(len_min=0, description="Redis's password (AUTH)."),
        "redis_username": String(description="Redis's user name (ACL), with a password."),
        "redis_timeout": Integer(default=2000, check=_positive,
                                 description="Milliseconds to wait for Redis."),
        "redis_database": Integer(default=0, between=(0, 65535), description="Redis's database number."),
        "hide_client_headers": Boolean(required=True, default=False,
                                       description="Leave the rate-limit headers out of responses."),
        "error_code": Integer(default=429, between=(100, 599), description="The status of a refusal."),
        "error_message": String(default="API rate limit exceeded", description="The message of a refusal."),
        "sync_rate": Number(required=True, default=SYNC_RATE_REALTIME,
                            description="Seconds between counter syncs for cluster (-1: every 0.1 s) and"
                                        " redis (-1: every request, exact)."),
    }, checks=(at_least_one_of(*PERIODS), _periods_ordered, _required_with, _sync_rate))
    #: What a DB-less node (C{database = off}) validates configs with: the
    #: cluster policy keeps its counters in the database, so it is refused
    #: there (as Kong refuses it).
    dbless_config_schema = config_schema.with_field("policy", String(
        default="local", check=_dbless_policy,
        description="Where counters live: this node, or Redis (DB-less mode has no cluster policy)."))

    def idle_phases(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """
        With C{hide_client_headers}, no headers to set in C{header_filter}.
        """
        return ("header_filter",) if config["hide_client_headers"] else ()

    def _reactor(self) -> IReactorTime:
        if self.reactor is not None:
            return self.reactor
        reactor: IReactorTime = self.binding.node.reactor
        return reactor

    def _policy(self, config: Mapping[str, Any]) -> Any:
        policy = config["policy"]
        if policy == "local":
            return self.stores.local
        if policy == "cluster":
            return self.stores.cluster_policy(self._reactor(), config["sync_rate"])
        return self.stores.redis_policy(self._reactor(), RedisSettings.from_config(config), config["sync_rate"])

    def _limits(self, config: Mapping[str, Any]) -> _Limits:
        """
        C{config}'s limits, worked out once per config object when it is
        read-only (a snapshot's configs are, and live as long as it does).
        """
        if not isinstance(config, MappingProxyType):
            return _Limits.of(config)
        found = self.prepared.get(id(config))
        if found is None or found.config is not config:
            if len(self.prepared) >= _MAX_PREPARED:
                self.prepared.clear()
            found = self.prepared[id(config)] = _Limits.of(config)
        return found

    def access(self, ctx: Any, config: Mapping[str, Any]) -> Any:
        # (_limits, inline for a config seen before)
        prepared = self.prepared.get(id(config))
        if prepared is None or prepared.config is not config:
            prepared = self._limits(config)
        route, service = ctx.route, ctx.service
        reactor = self.reactor
        now = (reactor if reactor is not None else self._reactor()).seconds()
        single = prepared.single
        if single is not None:
            # The direct path: L{LocalPolicy.count}, and the headers of
            # L{_decide} for one fixed period from what L{_Single} worked
            # out, as the names and their values.
            if single.limit_by == "consumer":
                who = ctx.consumer or ctx.credential
                who = who.get("id") if who else None
            else:
                who = _identifier(ctx, config)
            route_id = route.get("id") if route else None
            service_id = service.get("id") if service else None
            who = who or ctx.request.client_ip
            # (the identifier, made once for each route, service and who)
            identifier = _IDENTIFIERS.get((route_id, service_id, who))
            if identifier is None:
                identifier = _identifier_of(route_id, service_id, who)
            seconds = int(now)
            length = single.length
            start = seconds - seconds % length
            limit = single.limit
            used = self.stores.local.count(identifier, single.period, start, limit)
            if not single.hide:
                whole = single.whole
                if whole is not None:
                    left = whole - used - 1
                    remaining = b"%d" % left if left > 0 else b"0"
                else:
                    remaining = _number(max(0, limit - used - 1)).encode("latin-1")
                # (max(1, ceil(start + length - now)): the window ends a
                # whole number of seconds after int(now), now's floor)
                left = start + length - seconds if now >= 0 else max(1, math.ceil(start + length - now))
                reset = _SMALL[left] if left < _SMALL_COUNT else b"%d" % left
                # The lines of _decide's headers, in its order (digits
                # only: nothing to clean), for set_named.
                limit_line, rate_limit_line = single.limit_lines
                names = single.wire_names
                if used < limit:
                    ctx.plugin["headers"] = (single.names, HeaderLines((
                        limit_line, (names[1], remaining), rate_limit_line, (names[3], remaining),
                        (names[4], reset))))
                else:
                    ctx.plugin["headers"] = (single.refusal, HeaderLines((
                        limit_line, (names[1], remaining), rate_limit_line, (names[3], remaining),
                        (names[4], reset), (names[5], reset))))
            if used >= limit:
                ctx.exit(single.error_code, {"message": single.error_message})
            return None
        identifier = (f"{route.get('id') if route else None}:{service.get('id') if service else None}:"
                      f"{_identifier(ctx, config)}")
        limits = prepared.limits
        try:
            result = self._policy(config).consume(identifier, limits, now)
        except StoreUnavailable:
            return self._unavailable(ctx, config, Failure())
        # (Deferred is generic: isinstance goes through ABCMeta's
        # Python-level check, so a Usage is ruled out first.)
        if type(result) is not Usage and isinstance(result, Deferred):
            return result.addCallbacks(lambda usage: self._decide(ctx, config, limits, usage, now),
                                       lambda failure: self._unavailable(ctx, config, failure))
        self._decide(ctx, config, limits, result, now)
        return None

    def _unavailable(self, ctx: Any, config: Mapping[str, Any], failure: Failure) -> None:
        if not config["fault_tolerant"] or not failure.check(StoreUnavailable):
            failure.raiseException()
        ctx.log.error("failed to get usage: {why}; the request is let through (fault_tolerant)",
                      why=failure.getErrorMessage())

    def _decide(self, ctx: Any, config: Mapping[str, Any], limits: Mapping[str, float], usage: Usage,
                now: float) -> None:
        stop = usage.stop
        if not config["hide_client_headers"]:
            headers: dict[str, str] = {}
            best: tuple[float, int, float] | None = None
            reset = 1
            counts = usage.counts
            seconds = int(now)
            for period, limit, limit_name, limit_text, remaining_name, fixed in self._limits(config).headers:
                remaining = limit - counts[period]
                if stop is None or stop == period:
                    remaining -= 1
                if remaining < 0:
                    remaining = 0
                if fixed:
                    # (window(), inline for the fixed periods)
                    length = fixed
                    end = seconds - seconds % fixed + fixed
                else:
                    start, end = window(period, now)
                    length = end - start
                if best is None or remaining < best[0] or (remaining == best[0] and length > best[1]):
                    best = (remaining, length, limit)
                    reset = max(1, math.ceil(end - now))
                headers[limit_name] = limit_text
                headers[remaining_name] = _number(remaining)
            assert best is not None
            headers["RateLimit-Limit"] = _number(best[2])
            headers["RateLimit-Remaining"] = _number(best[0])
            headers["RateLimit-Reset"] = str(reset)
            if stop is not None:
                headers["Retry-After"] = str(reset)
            ctx.plugin["headers"] = headers
        if stop is not None:
            ctx.exit(config["error_code"], {"message": config["error_message"]})

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        headers = ctx.plugin.get("headers")
        if headers:
            # (the direct path's: the names and their values)
            if type(headers) is tuple:
                ctx.response.set_named(*headers)
            else:
                ctx.response.set_headers(headers)

    def node_service(self, node: IPluginNode) -> Service:
        """
        Keep C{node} (its reactor is the clock and runs the connections); a
        service giving the node's database to the cluster policy, and
        syncing and closing every counter store when the node stops.
        """
        self.binding.bind(node)
        return _CountersService(self.stores, node.reactor, node.dsn)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
