"""
rate-limiting's C{redis} policy: counters in Redis, through txredisapi's
protocol on a connection this module manages (on the injected reactor,
with its own timeouts and reconnection back-off).

L{RedisPolicy} (C{sync_rate} -1, the default) checks and counts each
request in one Lua script, atomically: across any number of nodes, no
more than the limit is let through in a window. L{RedisCounters} is the
L{ICounterStore} that L{echogate.bundled.ratelimit_policies.BatchedPolicy} syncs to when a C{sync_rate} is
set, trading that exactness for one Redis call per sync instead of one
per request.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, cast

import attrs
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from echogate.bundled.ratelimit_policies import (
    CounterKey,
    ICounterStore,
    IRateLimitPolicy,
    StoreUnavailable,
    Usage,
    window,
)

__all__ = ["RedisSettings", "RedisClient", "RedisPolicy", "RedisCounters"]

_log = Logger(namespace="echogate.plugins.rate-limiting")

# KEYS: one counter per period. ARGV: the limits, then the windows' ends.
# Returns the counts before this request, then 1 if a limit was reached
# (and nothing was counted), else 0.
_CHECK_AND_COUNT = """
local n = #KEYS
local counts = {}
local stop = 0
for i = 1, n do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  counts[i] = c
  if c >= tonumber(ARGV[i]) then stop = 1 end
end
if stop == 0 then
  for i = 1, n do
    redis.call('INCR', KEYS[i])
    redis.call('EXPIREAT', KEYS[i], ARGV[n + i])
  end
end
counts[n + 1] = stop
return counts
"""

# KEYS: counters. ARGV: amount and expiry of each. Returns the totals.
_ADD = """
local totals = {}
for i = 1, #KEYS do
  totals[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i])
end
return totals
"""


@attrs.frozen
class RedisSettings:
    """
    Where a config's Redis is (C{redis_*} fields).
    """

    host: str
    port: int = 6379
    password: str | None = None
    username: str | None = None
    database: int = 0
    timeout: float = 2.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RedisSettings":
        return cls(host=config["redis_host"], port=config["redis_port"],
                   password=config["redis_password"] or None, username=config["redis_username"],
                   database=config["redis_database"], timeout=config["redis_timeout"] / 1000.0)


class RedisClient:
    """
    One connection to Redis, opened on first use and again after it broke
    (not sooner than C{retry_delay} seconds after a failure). Every call
    is bounded by the settings' timeout; a call that times out closes the
    connection.
    """

    def __init__(self, reactor: IReactorTime, settings: RedisSettings, retry_delay: float = 0.5):
        self._reactor = reactor
        self._settings = settings
        self._retry_delay = retry_delay
        self._protocol: Any = None
        self._connecting: Deferred | None = None
        self._waiters: list[Deferred] = []
        self._retry_at = 0.0
        self._closed = False

    def _where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    async def _connect(self) -> Any:
        from txredisapi import RedisProtocol

        settings = self._settings
        protocol = RedisProtocol(charset="utf-8", errors="strict")
        protocol.callLater = self._reactor.callLater
        endpoint = HostnameEndpoint(self._reactor, settings.host, settings.port, timeout=settings.timeout)
        connected = connectProtocol(endpoint, protocol)
        await connected.addTimeout(settings.timeout, self._reactor)
        try:
            await self._bounded(protocol.whenConnected())
            if settings.password is not None:
                await self._checked(protocol.auth(settings.password, settings.username))
            if settings.database:
                await self._checked(protocol.select(settings.database))
        except BaseException:
            protocol.transport.abortConnection()
            raise
        return protocol

    def _bounded(self, d: Deferred) -> Deferred:
        return d.addTimeout(self._settings.timeout, self._reactor)

    async def _checked(self, d: Deferred) -> Any:
        from txredisapi import ResponseError

        result = await self._bounded(d)
        if isinstance(result, ResponseError):
            raise result
        return result

    async def _ready(self) -> Any:
        protocol = self._protocol
        if protocol is not None and protocol.connected:
            return protocol
        if self._closed:
            raise StoreUnavailable("the Redis connection is closed")
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        if self._connecting is None:
            if self._reactor.seconds() < self._retry_at:
                self._waiters.remove(waiter)
                raise StoreUnavailable(f"Redis at {self._where()} is unreachable")
            self._connecting = ensureDeferred(self._connect())
            self._connecting.addBoth(self._connected)
        try:
            return await waiter
        except Exception as e:
            raise StoreUnavailable(f"cannot reach Redis at {self._where()}: {_why(e)}") from None

    def _connected(self, result: Any) -> None:
        self._connecting = None
        waiters, self._waiters = self._waiters, []
        if isinstance(result, Failure):
            self._failed(cast(BaseException, result.value))  # a Failure always holds one
            for waiter in waiters:
                waiter.errback(result)
            return
        self._protocol = result
        for waiter in waiters:
            waiter.callback(result)

    def _failed(self, error: BaseException) -> None:
        if self._reactor.seconds() >= self._retry_at:
            _log.error("rate-limiting: Redis at {where} failed: {why}", where=self._where(), why=_why(error))
        self._retry_at = self._reactor.seconds() + self._retry_delay
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()

    def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Deferred:
        """
        Run C{script} (cached with EVALSHA) and fire with its reply.
        """
        return ensureDeferred(self._eval(script, list(keys), list(args)))

    async def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        from txredisapi import ResponseError

        protocol = await self._ready()
        try:
            result = await self._bounded(protocol.eval(script, keys, args))
        except Exception as e:
            self._failed(e)
            raise StoreUnavailable(f"Redis at {self._where()} failed: {_why(e)}") from None
        if isinstance(result, ResponseError):
            raise StoreUnavailable(f"Redis at {self._where()} refused the script: {result}")
        return result

    def close(self) -> Deferred:
        """
        Close the connection.
        """
        self._closed = True
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()
        return succeed(None)


def _why(error: BaseException) -> str:
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    if isinstance(error, DeferredTimeout):
        return "no answer in time"
    return str(error) or type(error).__name__


def _key(identifier: str, period: str, start: int) -> str:
    return f"ratelimit:{identifier}:{period}:{start}"


@implementer(IRateLimitPolicy)
class RedisPolicy:
    """
    Checks and counts every request in Redis, atomically.
    """

    def __init__(self, client: RedisClient):
        self.client = client

    def consume(self, identifier: str, limits: Mapping[str, float], now: float) -> Deferred:
        periods = list(limits)
        windows = [window(period, now) for period in periods]
        keys = [_key(identifier, period, start) for period, (start, _) in zip(periods, windows)]
        args = [repr(limits[p]) for p in periods] + [end for _, end in windows]
        d = self.client.eval(_CHECK_AND_COUNT, keys, args)

        def usage(reply: list[int]) -> Usage:
            counts = {period: int(reply[i]) for i, period in enumerate(periods)}
            stop = None
            if reply[-1]:
                stop = [p for p in periods if counts[p] >= limits[p]][-1]
            return Usage(counts, stop)

        return d.addCallback(usage)

    def stop(self) -> Deferred:
        return self.client.close()


@implementer(ICounterStore)
class RedisCounters:
    """
    Counters in Redis for L{echogate.bundled.ratelimit_policies.BatchedPolicy} (a C{sync_rate} is set).
    """

    def __init__(self, client: RedisClient):
        self.client = client

    def add(self, increments: Sequence[tuple[CounterKey, int, int]]) -> Deferred:
        items = list(increments)
        keys = [_key(*key) for key, _, _ in items]
        args: list[Any] = []
        for _, amount, expires in items:
            args += [amount, expires]
        d = self.client.eval(_ADD, keys, args) if items else self.client.eval("return 1", [], [])
        return d.addCallback(lambda totals: {key: int(total) for (key, _, _), total in zip(items, totals)}
                             if items else {})

    def close(self) -> Deferred:
        return self.client.close()
