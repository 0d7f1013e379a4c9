"""
The floor of stock Twisted: a minimal reverse proxy on L{Agent} with a
persistent L{HTTPConnectionPool} (100 connections per host). It copies the
end-to-end headers, sends the request body from memory, and streams the
response body to the client as it arrives (no back-pressure, no plugins,
no routing).

By default the Agent builds a C{HostnameEndpoint} per request, as
C{Agent(reactor, pool=pool)} does; C{--cached-endpoint} reuses one
endpoint for the upstream instead.

Run: C{python bench/agent_proxy.py --port 0 --upstream-port N}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from zope.interface import implementer

from listening import serve
from proxying import BodyToClient, relay

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
_NOT_UP = HOP_BY_HOP | {b"host", b"content-length"}


@implementer(IAgentEndpointFactory)
class _OneEndpoint:
    def __init__(self, endpoint: Any):
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> Any:
        return self._endpoint


class AgentProxy(Resource):
    """
    Proxies every request to C{base} (C{http://127.0.0.1:PORT}).
    """

    isLeaf = True

    def __init__(self, agent: Agent, base: bytes, host: bytes):
        super().__init__()
        self._agent = agent
        self._base = base
        self._host = host

    def render(self, request: Any) -> Any:
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _NOT_UP:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders(b"host", [self._host])
        content = request.content
        content.seek(0, 2)
        length = content.tell()
        content.seek(0)
        body = FileBodyProducer(content) if length else None
        answer = self._agent.request(request.method, self._base + request.uri, headers, body)
        return relay(request, answer, self._respond)

    def _respond(self, response: Any, exchange: BodyToClient) -> None:
        request = exchange.request
        request.setResponseCode(response.code, response.phrase)
        out = request.responseHeaders
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP:
                out.setRawHeaders(name, values)
        response.deliverBody(exchange)


def _arguments(parser: Any) -> None:
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--cached-endpoint", action="store_true",
                        help="reuse one endpoint instead of building one per request")
    parser.add_argument("--pool-size", type=int, default=100)


def _resource(reactor: Any, arguments: Any) -> AgentProxy:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = arguments.pool_size
    if arguments.cached_endpoint:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", arguments.upstream_port)
        agent = Agent.usingEndpointFactory(reactor, _OneEndpoint(endpoint), pool=pool)
    else:
        agent = Agent(reactor, pool=pool)
    base = f"http://127.0.0.1:{arguments.upstream_port}".encode()
    return AgentProxy(agent, base, f"127.0.0.1:{arguments.upstream_port}".encode())


if __name__ == "__main__":
    serve(__doc__.strip().splitlines()[0], _resource, _arguments)
