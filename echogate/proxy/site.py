"""
The proxy's listener side: the L{GatewaySite}, whose connections are
L{echogate.proxy.channel.GatewayChannel}s and whose requests are
L{echogate.proxy.request.GatewayRequest}s, and the counters that
C{GET /status} shows.
"""
from __future__ import annotations

import io
import tempfile
from typing import Any

from twisted.web import server
from twisted.web.resource import Resource

from echogate.batching import WriteBatcher
from echogate.proxy.channel import GatewayChannel
from echogate.proxy.request import GatewayRequest

#: Request bodies smaller than this (known in advance) stay in memory.
_IN_MEMORY = 100_000


class GatewaySite(server.Site):
    """
    The proxy's L{server.Site}: L{GatewayRequest}s, a body size limit,
    counters for C{GET /status}, an access log only when asked for
    (Twisted's default log line costs about a fifth of the throughput), and
    batched writes on its connections (C{write_batcher}).
    """

    requestFactory = GatewayRequest
    # HTTP/1.1 only: Twisted's default wraps each channel in a protocol that
    # could switch to HTTP/2, one more call per read for nothing here.
    protocol = GatewayChannel

    def __init__(self, resource: Resource, *, max_body_size: int = 0, access_log: bool = False,
                 write_batcher: WriteBatcher | None = None, **kw: Any):
        super().__init__(resource, **kw)
        self.max_body_size = max_body_size
        self._access_log = access_log
        self.write_batcher = write_batcher or WriteBatcher(self.reactor)
        self.connections_accepted = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections_accepted += 1
        return super().buildProtocol(addr)

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


class Counters:
    """
    Request counters shown by C{GET /status}.
    """

    def __init__(self) -> None:
        self.total_requests = 0
        self.active_requests = 0

    def as_dict(self, sites: list[GatewaySite] = ()) -> dict[str, int]:
        return {
            "total_requests": self.total_requests,
            "connections_active": self.active_requests,
            "connections_accepted": sum(s.connections_accepted for s in sites),
            "connections_handled": sum(s.connections_accepted for s in sites),
        }
