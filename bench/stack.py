"""
The realistic plugin stack of issue 25, and echogate's data path in one
process for measuring it (with or without the stack) without sockets.

The stack (L{REALISTIC}) is what a typical API behind a gateway has on
its route: key-auth (a consumer with a key, every request carrying it),
rate-limiting (policy local, a limit no run reaches, counted per
consumer), prometheus (requests by status, latencies and bandwidth),
correlation-id (defaults) and request-transformer (adds a header).

L{build_path} wires the real L{GatewaySite}, L{Gateway}, plugins and
lean client to in-memory transports on a C{Clock}: C{bench/path_cost.py}
times it, C{bench/instructions.py} counts its instructions with
callgrind. It needs only echogate's public modules, so that it runs
against an older revision's tree too.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import attrs

__all__ = ["Stack", "REALISTIC", "STACKS", "REQUEST", "RESPONSE", "add_stack", "build_path"]


@attrs.frozen
class Stack:
    """
    Plugins on the benchmark route, with their configs, and the consumer
    the requests authenticate as.

    @ivar plugins: plugin name to its config (Admin API field values, as
        a JSON body would give them), in the order they are added.
    @ivar consumer: the consumer's username.
    @ivar key: the consumer's key-auth key, sent by every request in
        C{key_header}.
    @ivar key_header: the header the key travels in.
    """

    name: str
    plugins: Mapping[str, Mapping[str, Any]]
    consumer: str = "bench"
    key: str = "bench-key-0123456789"
    key_header: str = "apikey"

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """
        The headers each request carries for the stack (the key).
        """
        return ((self.key_header, self.key),) if "key-auth" in self.plugins else ()


#: Issue 25's realistic stack.
REALISTIC = Stack("realistic", {
    "key-auth": {},
    "rate-limiting": {"second": 1000000000, "policy": "local"},
    "prometheus": {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True},
    "correlation-id": {},
    "request-transformer": {"add": {"headers": ["X-Bench-Added:yes"]}},
})

STACKS = {REALISTIC.name: REALISTIC}

#: A request as wrk sends it (C{{extra}}: the stack's headers).
REQUEST = b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Request-Echo: bench\r\n%s\r\n"
#: nginx's answer to it.
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 02:00:00 GMT\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
            + b"x" * 100)


def add_stack(node: Any, route_id: str, stack: Stack) -> None:
    """
    Put C{stack} on the route C{route_id} of a running node (a
    L{bench.gateway.EchogateNode}) through its Admin API, as a user would:
    the consumer and its key first, then each plugin with its config as a
    JSON body; returns once the node serves a request carrying the key.
    """
    from bench.nginx import PATHS

    if "key-auth" in stack.plugins:
        node.api.post("/consumers", [("username", stack.consumer)])
        node.api.post(f"/consumers/{stack.consumer}/key-auth", [("key", stack.key)])
    for name, config in stack.plugins.items():
        node.api.call_json("POST", f"/routes/{route_id}/plugins", {"name": name, "config": config})
    node.wait_until_served(PATHS["small"], headers=dict(stack.headers))


def build_path(plugins: Sequence[str], stack: Stack | None = None) -> tuple[Callable[[], None], Callable[[], bytes],
                                                                            Callable[[], None]]:
    """
    echogate's data path in this process: one route (C{/}) to one service,
    the real site, gateway, plugins and lean client, the client connection
    and the upstream connection played by C{StringTransport}s.

    @param plugins: plugins on the route, with their default configs.
    @param stack: a L{Stack} on the route instead (with its consumer).
    @return: C{one()}, which sends one request and its upstream answer
        through; C{sent()}, what the client has received so far; and
        C{clear()}, which empties both transports. The caller checks the
        answer.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from echogate.proxy.gateway import Gateway, GatewayResource
    from echogate.proxy.site import GatewaySite
    from echogate.proxy.snapshot import Snapshot
    from echogate.registry import load_plugins
    from echogate.store.data import ConfigurationData
    from echogate.upstream.connection import HTTP11Connection
    from echogate.upstream.lean import LeanUpstreamClient

    clock = Clock()
    configs: dict[str, Mapping[str, Any]] = dict(stack.plugins) if stack is not None else {
        name: {} for name in plugins}
    available = load_plugins(",".join(configs) or "bundled")
    enabled: dict[str, Any] = {}
    for name in configs:
        plugin: Any = available[name]
        # The plugins that read the node's reactor get the clock instead.
        for field in ("reactor", "clock"):
            if attrs.has(type(plugin)) and field in attrs.fields_dict(type(plugin)):
                plugin = attrs.evolve(plugin, **{field: clock})
        enabled[name] = plugin
    service = {"id": "s", "name": "bench", "protocol": "http", "host": "127.0.0.1", "port": 9000, "path": None,
               "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
               "enabled": True}
    route = {"id": "r", "name": "bench", "protocols": ["http", "https"], "methods": None, "hosts": None,
             "paths": ["/"], "headers": None, "strip_path": False, "preserve_host": False, "regex_priority": 0,
             "service": {"id": "s"}, "path_handling": "v0"}
    records = tuple({"id": f"p{i}", "name": name, "config": enabled[name].config_schema.validate(dict(config)),
                     "enabled": True, "route": {"id": "r"}, "service": None, "consumer": None}
                    for i, (name, config) in enumerate(configs.items()))
    consumers: tuple[dict[str, Any], ...] = ()
    keys: tuple[dict[str, Any], ...] = ()
    extra = b""
    if stack is not None:
        consumers = ({"id": "c", "username": stack.consumer, "custom_id": None, "tags": None},)
        keys = ({"id": "k", "consumer": {"id": "c"}, "key": stack.key, "tags": None},)
        extra = b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in stack.headers)
    data = ConfigurationData(version=1, services=(service,), routes=(route,), plugins=records,
                             consumers=consumers, keyauth_credentials=keys)
    snapshot = Snapshot.build(data, enabled)
    client = LeanUpstreamClient(clock)
    gateway = Gateway(clock=clock, snapshot=lambda: snapshot, upstream=client)
    site = GatewaySite(GatewayResource(gateway), reactor=clock)
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    down = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    channel.makeConnection(down)
    conn = HTTP11Connection(client, ("127.0.0.1", 9000))
    up = StringTransport()
    conn.makeConnection(up)
    client._release(conn)
    request = REQUEST % extra

    def one() -> None:
        channel.dataReceived(request)
        conn.dataReceived(RESPONSE)

    def clear() -> None:
        down.clear()
        up.clear()

    return one, down.value, clear
