"""
What the minimal proxies of the bench (C{agent_proxy.py}, C{lean_proxy.py})
share: the upstream body written to the client as it comes, the client
going away, and the answer when the upstream fails.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.server import NOT_DONE_YET


class BodyToClient(Protocol):
    """
    One proxied request: writes the upstream body to the client as it
    comes, unless the client went away.
    """

    def __init__(self, request: Any):
        self.request = request
        self.gone = False

    def dataReceived(self, data: bytes) -> None:
        if not self.gone:
            self.request.write(data)

    def connectionLost(self, reason: Any) -> None:
        if not self.gone:
            self.request.finish()


def relay(request: Any, pending: Deferred, respond: Callable[[Any, BodyToClient], None]) -> Any:
    """
    Answer C{request} with the upstream response C{pending} will give:
    C{respond(response, exchange)} writes its head and hands its body to
    C{exchange}; a failure is a 502; the upstream request is cancelled if
    the client goes away first. Returns what C{render} returns.
    """
    exchange = BodyToClient(request)
    pending.addCallbacks(respond, bad_gateway, (exchange,), None, (exchange,))

    def gone(reason: Any) -> None:
        exchange.gone = True
        pending.cancel()

    request.notifyFinish().addErrback(gone)
    return NOT_DONE_YET


def bad_gateway(failure: Any, exchange: BodyToClient) -> None:
    """
    The upstream request failed: 502, unless the client is gone.
    """
    if not exchange.gone:
        exchange.request.setResponseCode(502)
        exchange.request.write(b"bad gateway\n")
        exchange.request.finish()
