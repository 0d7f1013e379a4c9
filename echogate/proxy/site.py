"""
The proxy's listener side: the L{GatewaySite}, whose connections are
L{echogate.proxy.channel.GatewayChannel}s and whose requests are
L{echogate.proxy.request.GatewayRequest}s, and the counters that
C{GET /status} shows.
"""
from __future__ import annotations

import io
import tempfile
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web import server
from twisted.web.resource import Resource

from echogate.batching import WriteBatcher
from echogate.proxy.channel import GatewayChannel
from echogate.proxy.heads import DEFAULT_LIMITS, HeadLimits
from echogate.proxy.limits import AddressCounts, RefusalLog
from echogate.proxy.request import GatewayRequest

#: Request bodies smaller than this (known in advance) stay in memory.
_IN_MEMORY = 100_000


class GatewaySite(server.Site):
    """
    The proxy's L{server.Site}: L{GatewayRequest}s, a body size limit,
    counters for C{GET /status}, an access log only when asked for
    (Twisted's default log line costs about a fifth of the throughput), and
    batched writes on its connections (C{write_batcher}).

    It keeps the connections it opened: at most C{max_connections} at once
    (C{0}: no limit) and at most C{max_connections_per_ip} from one client
    address (C{0}: no limit); a connection beyond either is closed as soon
    as it is accepted (L{buildProtocol} answers C{None}), counted in
    C{connections_refused} and warned about at most once a second. L{drain}
    closes them all when the node stops.

    @ivar draining: whether L{drain} was called: every response then closes
        its connection (L{GatewayChannel.checkPersistence}) and new
        connections are closed at once.
    """

    requestFactory = GatewayRequest  # type: ignore[assignment]  # (its constructor: Twisted's three in one)
    #: What a client may send and how slowly (the edge settings; the
    #: channels read it when they start).
    head_limits: HeadLimits = DEFAULT_LIMITS
    # HTTP/1.1 only: Twisted's default wraps each channel in a protocol that
    # could switch to HTTP/2, one more call per read for nothing here.
    # (HTTPFactory declares a callable making that wrapper, the type of
    # every protocol it can make; a GatewayChannel is an HTTPChannel.)
    protocol = GatewayChannel  # type: ignore[assignment]

    def __init__(self, resource: Resource, *, max_body_size: int = 0, access_log: bool = False,
                 write_batcher: WriteBatcher | None = None, max_connections: int = 0,
                 max_connections_per_ip: int = 0, **kw: Any):
        super().__init__(resource, **kw)
        self.max_body_size = max_body_size
        self._access_log = access_log
        self.write_batcher = write_batcher or WriteBatcher(self.reactor)
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.connections_accepted = 0
        self.draining = False
        #: open channel -> its client's host (None: not an IP connection)
        self._channels: dict[GatewayChannel, str | None] = {}
        self._per_ip = AddressCounts()
        self._refusals = RefusalLog(self.reactor)
        self._drains: list[tuple[Deferred[None], IDelayedCall]] = []

    @property
    def connections_open(self) -> int:
        """
        How many client connections are open.
        """
        return len(self._channels)

    @property
    def connections_refused(self) -> int:
        """
        How many connections were closed at once because a connection limit
        was reached.
        """
        return self._refusals.total

    def buildProtocol(self, addr: Any) -> Any:
        """
        A L{GatewayChannel} for a new connection from C{addr}, or C{None}
        (Twisted then closes the connection) when a connection limit is
        reached or the site is draining.
        """
        self.connections_accepted += 1
        if self.draining:
            return None
        limit = self.max_connections
        if limit and len(self._channels) >= limit:
            self._refusals.refused("max_connections", limit)
            return None
        limit = self.max_connections_per_ip
        if limit:
            host = getattr(addr, "host", None)
            if host is not None and self._per_ip[host] >= limit:
                self._refusals.refused("max_connections_per_ip", limit)
                return None
        return super().buildProtocol(addr)

    def channel_opened(self, channel: GatewayChannel) -> None:
        """
        C{channel} is connected (from its C{connectionMade}).
        """
        host = getattr(channel.getPeer(), "host", None)
        self._channels[channel] = host
        if host is not None:
            self._per_ip.add(host)

    def channel_closed(self, channel: GatewayChannel) -> None:
        """
        C{channel}'s connection is closed (from its C{connectionLost}).
        """
        try:
            host = self._channels.pop(channel)
        except KeyError:
            return
        if host is not None:
            self._per_ip.remove(host)
        if self._drains and not self._channels:
            self._drained()

    def drain(self, timeout: float, clock: IReactorTime | None = None) -> Deferred[None]:
        """
        Close every connection, for a graceful stop (the node stops
        listening first): idle keep-alive connections at once; those with
        a request in flight once it is answered (its response says
        C{Connection: close}); whatever is still open after C{timeout}
        seconds (of C{clock}, by default the site's reactor) is aborted.

        @return: fires with C{None} once every connection is closed.
        """
        self.draining = True
        done: Deferred[None] = Deferred(lambda d: self._forget(d))
        if not self._channels:
            done.callback(None)
            return done
        timer = (clock or self.reactor).callLater(timeout, self._abort)
        self._drains.append((done, timer))
        for channel in list(self._channels):
            if channel.idle:
                channel.loseConnection()
            else:
                _close_after_response(channel)
        return done

    def _abort(self) -> None:
        for channel in list(self._channels):
            # (a WebSocket tunnel's service side too: proxy/tunnel.py)
            channel.close_tunnel()
            channel.transport.abortConnection()

    def _drained(self) -> None:
        drains, self._drains = self._drains, []
        for done, timer in drains:
            if timer.active():
                timer.cancel()
            done.callback(None)

    def _forget(self, done: Deferred[None]) -> None:
        for entry in self._drains:
            if entry[0] is done:
                self._drains.remove(entry)
                if entry[1].active():
                    entry[1].cancel()
                return

    #: What L{getContentFile} gives a request without a body: called by
    #: L{echogate.proxy.bodylimit.LimitedBody.gotLength} instead of it.
    empty_content: Callable[[], Any] = io.BytesIO

    def getContentFile(self, length: int | None) -> Any:
        """
        Where a request body goes: memory up to 100 KB (known in advance),
        a temporary file otherwise, as Twisted does. (Defined here because
        Twisted looks this hook up with a caught AttributeError on every
        request when the site lacks it.)
        """
        if length is not None and length < _IN_MEMORY:
            return io.BytesIO()
        return tempfile.TemporaryFile()

    def log(self, request: Any) -> None:
        if self._access_log:
            super().log(request)


def _close_after_response(channel: GatewayChannel) -> None:
    """
    Make C{channel}, busy with a request whose head came before the site
    started draining, close once that request is answered, saying so in
    the response if it has not started yet. (Requests whose head comes
    later are seen to by L{GatewayChannel.checkPersistence}.)
    """
    channel.persistent = False
    for request in channel.requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])


class Counters:
    """
    Request counters shown by C{GET /status}.
    """

    def __init__(self) -> None:
        self.total_requests = 0
        self.active_requests = 0

    def as_dict(self, sites: Sequence[GatewaySite] = ()) -> dict[str, int]:
        """
        The counters, with the connection counters of C{sites}: open
        (C{connections_active}, as Kong's), accepted, handled (accepted and
        not refused) and refused (a connection limit was reached).
        """
        accepted = sum(s.connections_accepted for s in sites)
        refused = sum(s.connections_refused for s in sites)
        return {
            "total_requests": self.total_requests,
            "connections_active": sum(s.connections_open for s in sites),
            "connections_accepted": accepted,
            "connections_handled": accepted - refused,
            "connections_refused": refused,
        }
