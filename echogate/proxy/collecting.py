"""
Response buffering, as Kong's: a plugin that called
C{ctx.upstream.enable_buffering()} gets the service's whole body before
C{header_filter} (C{ctx.response.raw_body}), and the response is written
whole afterwards, with a Content-Length. Without it, responses stream
(L{echogate.proxy.streaming.BodyStreamer}); a route whose
C{response_buffering} is false never collects. The collected size is
capped (the C{max_buffered_response} setting): past it, 502.
"""
from __future__ import annotations

import typing
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http import NO_BODY_CODES

from echogate.errors import BAD_UPSTREAM, UPSTREAM_TIMEOUT, ProxyError
from echogate.pdk.context import RequestContext
from echogate.upstream.failures import describe

if typing.TYPE_CHECKING:
    from echogate.upstream.interfaces import IUpstreamResponse

__all__ = ["DEFAULT_MAX", "CollectOwner", "ResponseCollector", "wanted", "collect"]

#: The default cap on a collected body (C{max_buffered_response}): 10 MB.
DEFAULT_MAX = 10 * 1024 * 1024

_log = Logger(namespace="echogate.proxy")


class CollectOwner(typing.Protocol):
    """
    What collecting needs from the exchange whose response it reads
    (L{echogate.proxy.exchange.Exchange} provides it).
    """

    ctx: RequestContext
    request: Any
    _gateway: Any
    _streamer: Any

    @property
    def clock(self) -> IReactorTime: ...

    def failed(self, failure: Failure, close: bool = False) -> None: ...

    def _header_filter(self) -> Deferred[Any] | None: ...

    def _filter_whole(self, body: bytes) -> None: ...


def wanted(owner: CollectOwner, response: "IUpstreamResponse") -> bool:
    """
    Whether C{owner}'s response is to be read whole before
    C{header_filter}: a plugin enabled buffering, the route allows it, and
    the response has a body.
    """
    ctx = owner.ctx
    upstream = ctx.upstream
    if upstream is None or not upstream.buffering:
        return False
    route = ctx.route or {}
    if route.get("response_buffering") is False:
        _log.debug("enable_buffering ignored: route {route} has response_buffering off",
                   route=route.get("name") or route.get("id"))
        return False
    return owner.request.method != b"HEAD" and response.code not in NO_BODY_CODES


def collect(owner: CollectOwner, response: "IUpstreamResponse") -> None:
    """
    Read C{response}'s body whole, then go on with C{header_filter}.
    """
    limit = getattr(owner._gateway, "max_buffered_response", DEFAULT_MAX)
    timeout = (owner.ctx.service or {}).get("read_timeout", 60000) / 1000.0
    collector = owner._streamer = ResponseCollector(owner, limit, timeout)
    response.deliverBody(collector)
    collector.started()


class ResponseCollector(Protocol):
    """
    Reads a response body into memory, up to C{limit} bytes, with
    C{read_timeout} seconds at most between two chunks.
    """

    #: The upstream's body, stopped through it.
    transport: IPushProducer  # type: ignore[assignment]  # (a producer, not a whole ITransport)

    def __init__(self, owner: CollectOwner, limit: int, read_timeout: float):
        self._owner = owner
        self._limit = limit
        self._read_timeout = read_timeout
        self._chunks: list[bytes] = []
        self._size = 0
        self._timer: Any = None
        self._outcome: str | None = None  # why it was stopped: "large", "timeout", "gone"
        self._done = False

    def started(self) -> None:
        """
        The body was handed over: time the wait for the rest.
        """
        if not self._done:
            self._timer = self._owner.clock.callLater(self._read_timeout, self._stop, "timeout")

    def stop(self) -> None:
        """
        The client went away: stop the service's body.
        """
        self._stop("gone")

    def _stop(self, why: str) -> None:
        if self._done or self._outcome is not None:
            return
        self._outcome = why
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self._outcome is not None:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._chunks = []
            self._stop("large")
            return
        self._chunks.append(data)
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(self._read_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        self._done = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        owner = self._owner
        owner._streamer = None
        outcome = self._outcome
        if outcome == "gone":
            return  # the exchange logged it (client_gone)
        gateway = owner._gateway
        if outcome == "large":
            gateway.log_upstream_error(owner.ctx, f"sent a body larger than max_buffered_response ({self._limit}"
                                       " bytes) to a buffered response", 502)
            owner.failed(Failure(ProxyError(502, BAD_UPSTREAM)))
            return
        if outcome == "timeout":
            gateway.log_upstream_error(owner.ctx, "timed out reading a buffered response", 504)
            owner.failed(Failure(ProxyError(504, UPSTREAM_TIMEOUT)))
            return
        if not isinstance(reason.value, (ResponseDone, PotentialDataLoss)):
            gateway.log_upstream_error(owner.ctx, f"closed a buffered response early ({describe(reason.value)})",
                                       502)
            owner.failed(Failure(ProxyError(502, BAD_UPSTREAM)))
            return
        body = b"".join(self._chunks)
        self._chunks = []
        _collected(owner, body)


def _collected(owner: CollectOwner, body: bytes) -> None:
    """
    The whole body is here: C{header_filter} sees it as
    C{ctx.response.raw_body}; what that holds afterwards goes through
    C{body_filter} once and is written whole.
    """
    response = owner.ctx.response
    response.raw_body = body
    try:
        pending = owner._header_filter()
    except BaseException:
        owner.failed(Failure())
        return

    def write(_: Any = None) -> None:
        raw = response.raw_body
        owner._filter_whole(raw if isinstance(raw, bytes) else b"")

    if pending is None:
        write()
    else:
        pending.addCallbacks(write, owner.failed)
