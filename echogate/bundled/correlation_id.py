"""
correlation-id: give every request an id in a header, sent to the
service and, with C{echo_downstream}, back to the client.

A request that already carries the header (non-empty) keeps its value.
Generators:

  - C{uuid}: a random UUID per request;
  - C{uuid#counter}: this process's UUID, C{#}, and a counter (cheap, and
    unique per node as long as the process lives);
  - C{tracker}: C{server_address-server_port-pid-connection-request_on_connection-time}
    (the time the request started, by the gateway's clock).

The id is also left in C{ctx.shared["correlation_id"]} for log plugins.
"""
from __future__ import annotations

import itertools
import os
import uuid
import weakref
from typing import Any, Iterator, Mapping

import attrs

from echogate._version import __version__
from echogate.plugin import GatewayPlugin
from echogate.schema import Boolean, Record, String

GENERATORS = ("uuid", "uuid#counter", "tracker")
SHARED_KEY = "correlation_id"


def random_uuid() -> str:
    """
    A random (version 4) UUID in its text form, as C{str(uuid.uuid4())}
    gives one: 16 random bytes with the version and variant bits set,
    formatted without making a L{uuid.UUID} (a third of the cost).
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class ConnectionSerials:
    """
    A serial number for each client connection and a count of the requests
    seen on it, for the C{tracker} generator. Connections are held weakly.
    """

    def __init__(self) -> None:
        self._serials: Iterator[int] = itertools.count(1)
        self._seen: "weakref.WeakKeyDictionary[Any, list[int]]" = weakref.WeakKeyDictionary()

    def count(self, connection: Any) -> tuple[int, int]:
        """
        Count one more request on C{connection}; C{(serial, requests)}.
        """
        entry = self._seen.get(connection)
        if entry is None:
            entry = self._seen[connection] = [next(self._serials), 0]
        entry[1] += 1
        return entry[0], entry[1]


def _connection(ctx: Any) -> Any:
    """
    The client connection (channel) of this request.

    PDK gap: the PDK exposes neither the server address nor the
    connection's serial and request count (nginx's C{$connection} and
    C{$connection_requests}); this reads the twisted.web request.
    """
    return ctx.request._request.channel


@attrs.frozen
class CorrelationId(GatewayPlugin):
    """
    Kong's correlation-id.

    @ivar process_id: this process's UUID for C{uuid#counter}.
    """

    process_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    _counter: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), repr=False)
    _connections: ConnectionSerials = attrs.field(factory=ConnectionSerials, repr=False)

    name = "correlation-id"
    version = __version__
    priority = 100001
    config_schema = Record({
        "header_name": String(default="Kong-Request-ID", description="The header that carries the id."),
        "generator": String(required=True, default="uuid#counter", one_of=GENERATORS,
                            description="How ids are made: uuid, uuid#counter or tracker."),
        "echo_downstream": Boolean(required=True, default=False,
                                   description="Send the id back to the client too."),
    })

    def idle_phases(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """
        Without a header name, nothing to do; without C{echo_downstream},
        nothing in C{header_filter}.
        """
        if config["header_name"] is None:
            return ("access", "header_filter")
        return () if config["echo_downstream"] else ("header_filter",)

    def generate(self, ctx: Any, generator: str) -> str:
        """
        A new id from C{generator}.
        """
        if generator == "uuid":
            return random_uuid()
        if generator == "uuid#counter":
            return f"{self.process_id}#{next(self._counter)}"
        raw = ctx.request._request
        serial, requests = ctx.plugin.get("connection") or self._connections.count(_connection(ctx))
        host = raw.getHost()
        return (f"{getattr(host, 'host', '')}-{getattr(host, 'port', '')}-{os.getpid()}-{serial}-{requests}"
                f"-{ctx.started:.3f}")

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        name = config["header_name"]
        if name is None:
            return
        generator = config["generator"]
        if generator == "tracker":
            ctx.plugin["connection"] = self._connections.count(_connection(ctx))
        value = ctx.request.get_header(name)
        if not value:
            # (generate(), with the default generator inline)
            value = (f"{self.process_id}#{next(self._counter)}" if generator == "uuid#counter"
                     else self.generate(ctx, generator))
            ctx.upstream.set_header(name, value)
        ctx.shared[SHARED_KEY] = value
        if config["echo_downstream"]:
            ctx.plugin["id"] = value

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        if not config["echo_downstream"]:
            return
        name = config["header_name"]
        if name is None:
            return
        value = ctx.plugin.get("id") or ctx.request.get_header(name)
        if not value:
            value = self.generate(ctx, config["generator"])
        ctx.response.set_header(name, value)
