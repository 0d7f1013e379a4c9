"""
The floor of a twisted.web proxy with echogate's own HTTP/1.1 client and
listener: a minimal reverse proxy on
L{echogate.upstream.lean.LeanUpstreamClient}, served by echogate's
L{GatewaySite} (batched writes, one idle timer per connection), with the
process tuned after start-up as an echogate node's is (the heap
settled, the collector's young threshold and the C heap's trim
threshold). It copies the end-to-end headers as wire pairs, sends the request body from memory, and
writes the response body as it arrives (no routing, no plugins, no
request context, no X-Forwarded-* headers). What echogate adds to it is
what its features cost.

Run: C{python bench/lean_proxy.py --port 0 --upstream-port N} (needs
echogate importable: a virtualenv with the project installed, CPython's
or the bench's PyPy one).
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.web.resource import Resource

from echogate.heap import settle_heap, tune
from echogate.proxy.site import GatewaySite
from echogate.proxy.streaming import RequestBody
from echogate.settings import Settings
from echogate.upstream.hop_by_hop import HOP_BY_HOP
from echogate.upstream.lean import LeanUpstreamClient
from listening import serve
from proxying import BodyToClient, relay

_NOT_UP = HOP_BY_HOP | {b"host", b"content-length"}


class LeanProxy(Resource):
    """
    Proxies every request to C{service}.
    """

    isLeaf = True

    def __init__(self, client: LeanUpstreamClient, service: dict, host: bytes):
        super().__init__()
        self._client = client
        self._service = service
        self._host = host

    def render(self, request: Any) -> Any:
        pairs = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders()
                 if name.lower() not in _NOT_UP for value in values]
        pairs.append((b"Host", self._host))
        body = RequestBody.of_request(request)
        answer = self._client.request(self._service, request.method, request.uri, pairs, body)
        return relay(request, answer, self._respond)

    def _respond(self, response: Any, exchange: BodyToClient) -> None:
        request = exchange.request
        request.setResponseCode(response.code, response.phrase)
        request.responseHeaders = response.headers  # already end to end
        if isinstance(response.length, int):
            request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])
        response.deliverBody(exchange)


def _arguments(parser: Any) -> None:
    parser.add_argument("--upstream-port", type=int, required=True)


def _resource(reactor: Any, arguments: Any) -> LeanProxy:
    service = {"host": "127.0.0.1", "port": arguments.upstream_port, "protocol": "http", "connect_timeout": 60000,
               "read_timeout": 60000, "write_timeout": 60000, "retries": 5}
    return LeanProxy(LeanUpstreamClient(reactor), service, f"127.0.0.1:{arguments.upstream_port}".encode())


def _settle() -> None:
    """
    What an echogate node does to its process once started, with the
    defaults of its settings: the heap settled, the collector's young
    threshold and the C heap's trim threshold set.
    """
    defaults = attrs.fields(Settings)
    settle_heap()
    tune(defaults.gc_young_threshold.default, defaults.malloc_trim_threshold.default)


def _site(reactor: Any, resource: LeanProxy) -> GatewaySite:
    site = GatewaySite(resource, reactor=reactor)
    site.noisy = False
    reactor.callLater(1, _settle)
    return site


if __name__ == "__main__":
    serve(__doc__.strip().splitlines()[0], _resource, _arguments, _site)
