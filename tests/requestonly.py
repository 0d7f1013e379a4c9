"""
For test upstreams written against Agent's shape (a C{request} method
whose Deferred fires with an L{twisted.web.iweb.IResponse}): L{send}, the
L{echogate.interfaces.IUpstreamClient} method the gateway calls, over it.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from echogate.upstream.agent import AgentResponse


def send(client: Any, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
         callback: Callable[..., object], errback: Callable[..., object], args: tuple = ()) -> Deferred:
    """
    C{client.request(...)}, its response adapted as the Agent client
    adapts Agent's, with the gateway's callbacks.
    """
    d: Deferred = client.request(service, method, target, headers, body)
    d.addCallback(AgentResponse)
    d.addCallbacks(callback, errback, args, None, args)
    return d
