"""
http-log: Kong's log document for every request, sent in batches to an
HTTP endpoint.

Each distinct config has a L{BatchQueue} (bounded by C{queue.max_entries}
and C{queue.max_bytes}; the oldest entries are dropped first, with a log
line saying so). A batch goes out once C{queue.max_batch_size} entries
are waiting or C{queue.max_coalescing_delay} seconds after its first
entry; one entry is sent as a JSON object, several as a JSON array. A
failed send (connection error, timeout, status 300 or more) is retried
after C{queue.initial_retry_delay}, doubling up to
C{queue.max_retry_delay}, until C{queue.max_retry_time} has passed; then
the batch is dropped with a log line. The sends use treq (a control-plane
call) over a persistent connection pool.
"""
from __future__ import annotations

import base64
import json
from collections import deque
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from echogate.bundled.log_record import REDACTION_FIELDS, log_record
from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import ENTITY, Integer, Map, Number, Record, String

__all__ = ["HttpLog", "BatchQueue", "QueueSettings", "HttpLogQueues"]

_log = Logger(namespace="echogate.plugins.http-log")
_FORBIDDEN_HEADERS = {"host": "cannot contain 'Host' header",
                      "content-length": "cannot contain 'Content-Length' header",
                      "content-type": "cannot contain 'Content-Type' header"}


def _endpoint(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "missing host in url" if parts.scheme in ("http", "https") else "unsupported scheme"
    try:
        _ = parts.port  # parsed on access: raises for a bad port
    except ValueError:
        return "invalid port number"
    return None


def _header_name(value: str) -> str | None:
    return _FORBIDDEN_HEADERS.get(value.lower())


def _no_double_authorization(config: dict[str, Any]) -> Mapping[str, str] | None:
    if urlsplit(config["http_endpoint"]).username is None:
        return None
    if any(name.lower() == "authorization" for name in (config.get("headers") or {})):
        return {ENTITY: "specifying both an 'Authorization' header and user info in"
                        " 'http_endpoint' is not allowed"}
    return None


QUEUE_SCHEMA = Record({
    "max_batch_size": Integer(default=1, between=(1, 1_000_000),
                              description="Most entries sent in one request."),
    "max_coalescing_delay": Number(default=1, between=(0, 3600),
                                   description="Seconds a partial batch waits for more entries."),
    "max_entries": Integer(default=10000, between=(1, 1_000_000),
                           description="Most entries waiting; the oldest are dropped past it."),
    "max_bytes": Integer(description="Most bytes waiting (null: no limit); the oldest are dropped past it.",
                         check=lambda v: None if v > 0 else "value must be greater than 0"),
    "max_retry_time": Number(default=60, description="Seconds to keep retrying a batch (-1: never retry)."),
    "initial_retry_delay": Number(default=0.01, between=(0.001, 1_000_000),
                                  description="Seconds before the first retry; doubles each time."),
    "max_retry_delay": Number(default=60, between=(0.001, 1_000_000),
                              description="The longest pause between retries."),
    "concurrency_limit": Integer(default=1, one_of=(-1, 1),
                                 description="Batches in flight at once: 1, or -1 for no limit."),
})


@attrs.frozen
class QueueSettings:
    """
    A queue's bounds and timings (C{config.queue}).
    """

    max_batch_size: int = 1
    max_coalescing_delay: float = 1.0
    max_entries: int = 10000
    max_bytes: int | None = None
    max_retry_time: float = 60.0
    initial_retry_delay: float = 0.01
    max_retry_delay: float = 60.0
    concurrency_limit: int = 1

    @classmethod
    def from_config(cls, queue: Mapping[str, Any]) -> "QueueSettings":
        return cls(**{field.name: queue[field.name] for field in attrs.fields(cls)})


class BatchQueue:
    """
    Entries waiting to be sent, in batches, with retries.

    @param send: called with a list of encoded entries; returns a Deferred
        that fails when the batch was not accepted.
    @param name: what log lines call this queue (the endpoint).
    """

    def __init__(self, clock: IReactorTime, settings: QueueSettings, send: Callable[[list[bytes]], Deferred],
                 name: str):
        self._clock = clock
        self._settings = settings
        self._send = send
        self.name = name
        self._entries: deque[bytes] = deque()
        self._bytes = 0
        self._timer: IDelayedCall | None = None
        self._in_flight: list[Deferred] = []
        self._retries: dict[int, tuple[Any, Callable[[], None]]] = {}
        self.dropped = 0
        self.sent = 0
        self._stopping = False

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: bytes) -> None:
        """
        Queue one encoded entry; drop the oldest ones past the bounds.
        """
        settings = self._settings
        self._entries.append(entry)
        self._bytes += len(entry)
        while len(self._entries) > settings.max_entries or (
                settings.max_bytes is not None and self._bytes > settings.max_bytes and self._entries):
            oldest = self._entries.popleft()
            self._bytes -= len(oldest)
            self._dropped(1, "the queue is full")
        self._schedule()

    def _dropped(self, count: int, why: str) -> None:
        before = self.dropped
        self.dropped += count
        if before == 0 or before // 1000 != self.dropped // 1000 or count > 1:
            _log.warn("http-log: dropping {count} log entr{ies} for {name}: {why} ({total} dropped so far)",
                      count=count, ies="y" if count == 1 else "ies", name=self.name, why=why,
                      total=self.dropped)

    def _can_send(self) -> bool:
        return self._settings.concurrency_limit == -1 or not self._in_flight

    def _schedule(self) -> None:
        if not self._entries or not self._can_send():
            return
        if len(self._entries) >= self._settings.max_batch_size or self._stopping:
            self._cancel_timer()
            self._start_batch()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._settings.max_coalescing_delay, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if self._entries and self._can_send():
            self._start_batch()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _start_batch(self) -> None:
        batch: list[bytes] = []
        while self._entries and len(batch) < self._settings.max_batch_size:
            entry = self._entries.popleft()
            self._bytes -= len(entry)
            batch.append(entry)
        done: Deferred = Deferred()
        self._in_flight.append(done)
        self._attempt(batch, self._clock.seconds(), self._settings.initial_retry_delay, done)

    def _attempt(self, batch: list[bytes], first: float, delay: float, done: Deferred) -> None:
        try:
            d = self._send(batch)
        except Exception as e:
            d = Deferred()
            d.errback(e)

        def sent(_: Any) -> None:
            self.sent += len(batch)
            self._finished(done)

        def failed(failure: Any) -> None:
            settings = self._settings
            elapsed = self._clock.seconds() - first
            why = failure.getErrorMessage() or failure.type.__name__
            if settings.max_retry_time < 0 or elapsed + delay > settings.max_retry_time or self._stopping:
                self._dropped(len(batch), f"could not send them ({why}); giving up after "
                                          f"{elapsed:.1f}s")
                self._finished(done)
                return
            _log.info("http-log: sending {count} entries to {name} failed ({why}); retrying in {delay:.3g}s",
                      count=len(batch), name=self.name, why=why, delay=delay)
            next_delay = min(delay * 2, settings.max_retry_delay)

            def retry() -> None:
                self._retries.pop(id(done), None)
                self._attempt(batch, first, next_delay, done)

            self._retries[id(done)] = (self._clock.callLater(delay, retry), retry)

        d.addCallbacks(sent, failed)

    def _finished(self, done: Deferred) -> None:
        if done in self._in_flight:
            self._in_flight.remove(done)
        if not done.called:
            done.callback(None)
        self._schedule()

    def drain(self) -> Deferred:
        """
        Send what is queued now (one attempt each, no more retries) and fire
        when nothing is in flight.
        """
        self._stopping = True
        self._cancel_timer()
        for call, retry in list(self._retries.values()):
            if call.active():
                call.cancel()
                retry()
        while self._entries and self._can_send():
            self._start_batch()
        if not self._in_flight and not self._entries:
            return succeed(None)
        d = DeferredList(list(self._in_flight))
        return d.addCallback(lambda _: self.drain() if self._entries else None)


class HttpLogQueues:
    """
    The queues of one http-log plugin object, one per distinct config,
    created on first use and kept for the life of the process.
    """

    def __init__(self) -> None:
        self.queues: dict[str, BatchQueue] = {}
        self.client: Any = None
        self.pool: Any = None


def _queue_key(config: Mapping[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(config), sort_keys=True)


class _DrainService(Service):
    def __init__(self, plugin: "HttpLog"):
        self._plugin = plugin

    def stopService(self) -> Deferred:
        super().stopService()
        return self._plugin.drain()


@attrs.frozen
class HttpLog(GatewayPlugin):
    """
    Send Kong's log document for every request to C{config.http_endpoint}.

    @ivar reactor: the reactor (timers, connections) and the clock;
        C{None}: the node's reactor (from C{node_service}).
    @ivar client: a treq-like client (C{request(method, url, data=...,
        headers=...)}); C{None}: treq over a persistent pool on C{reactor}.
    @ivar queues: the plugin's queues (one L{HttpLogQueues} per object).
    @ivar binding: the node, once C{node_service} gave it.
    """

    reactor: IReactorTime | None = None
    client: Any = None
    queues: HttpLogQueues = attrs.field(factory=HttpLogQueues)
    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)

    name = "http-log"
    version = "1.0.0"
    priority = 12
    config_schema = Record({
        "http_endpoint": String(required=True, check=_endpoint,
                                description="Where to send the entries (http or https URL; user info"
                                            " becomes Basic authorization)."),
        "method": String(default="POST", one_of=("POST", "PUT", "PATCH"), description="The method to send with."),
        "content_type": String(default="application/json",
                               one_of=("application/json", "application/json; charset=utf-8"),
                               description="The Content-Type of the requests."),
        "timeout": Number(default=10000, check=lambda v: None if v > 0 else "value must be greater than 0",
                          description="Milliseconds to wait for the endpoint's answer."),
        "keepalive": Number(default=60000, check=lambda v: None if v >= 0 else "value must be at least 0",
                            description="Milliseconds an idle connection is kept."),
        "headers": Map(String(check=_header_name), String(len_min=0),
                       description="Headers added to every request (not Host, Content-Length, Content-Type)."),
        "queue": QUEUE_SCHEMA,
        **REDACTION_FIELDS,
    }, checks=(_no_double_authorization,))

    def _reactor(self) -> IReactorTime:
        if self.reactor is not None:
            return self.reactor
        reactor: IReactorTime = self.binding.node.reactor
        return reactor

    def _client(self, config: Mapping[str, Any]) -> Any:
        if self.client is not None:
            return self.client
        queues = self.queues
        if queues.client is None:
            import treq.client
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(self._reactor(), persistent=True)
            pool.cachedConnectionTimeout = config["keepalive"] / 1000.0
            queues.pool = pool
            queues.client = treq.client.HTTPClient(Agent(self._reactor(), pool=pool))
        return queues.client

    def queue_for(self, config: Mapping[str, Any]) -> BatchQueue:
        """
        The queue of C{config} (made on first use).
        """
        key = _queue_key(config)
        queue = self.queues.queues.get(key)
        if queue is None:
            parts = urlsplit(config["http_endpoint"])
            shown = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
            queue = self.queues.queues[key] = BatchQueue(
                self._reactor(), QueueSettings.from_config(config["queue"]),
                lambda batch: self._send(config, batch), shown)
        return queue

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        record = log_record(ctx, self._reactor().seconds(), config["redact_credentials"], config["redact"])
        entry = json.dumps(record, separators=(",", ":")).encode("utf-8")
        self.queue_for(config).add(entry)

    def _send(self, config: Mapping[str, Any], batch: list[bytes]) -> Deferred:
        if config["queue"]["max_batch_size"] == 1 and len(batch) == 1:
            payload = batch[0]
        else:
            payload = b"[" + b",".join(batch) + b"]"
        parts = urlsplit(config["http_endpoint"])
        headers = {"Content-Type": config["content_type"]}
        if parts.username is not None:
            userinfo = f"{parts.username}:{parts.password or ''}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        for name, value in (config["headers"] or {}).items():
            headers.setdefault(name, value)
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=netloc, path=parts.path or "/"))
        d: Deferred[Any] = self._client(config).request(config["method"], url, data=payload,
                                         headers={k: [v] for k, v in headers.items()})
        d.addTimeout(config["timeout"] / 1000.0, self._reactor())

        def check(response: Any) -> Deferred:
            body: Deferred[bytes] = response.content()

            def judge(content: bytes) -> None:
                if response.code >= 300:
                    raise RuntimeError(f"{netloc} answered {response.code}: {content[:200]!r}")

            return body.addCallback(judge)

        return d.addCallback(check)

    def drain(self) -> Deferred:
        """
        Send what every queue holds (one attempt), then close the
        connections: what the node does when it stops.
        """
        drains = [queue.drain() for queue in self.queues.queues.values()]

        def close(_: Any) -> Any:
            queues = self.queues
            for queue in queues.queues.values():
                queue._stopping = False
            pool, queues.pool, queues.client = queues.pool, None, None
            if pool is not None:
                return pool.closeCachedConnections()
            return None

        return DeferredList(drains).addCallback(close)

    def node_service(self, node: IPluginNode) -> Service:
        """
        Keep C{node} (its reactor runs the queues' timers and the
        connections); a service that sends what is queued and closes the
        connections when the node stops.
        """
        self.binding.bind(node)
        return _DrainService(self)
