"""
Testing plugins without sockets: a whole gateway (router, plugin runner,
proxy resource) built from the plugins and configs you give it, in front of
an upstream that is a Python function.

    from echogate.testing import GatewayHarness

    class HeaderEchoTests(unittest.TestCase):
        async def test_echo(self):
            gateway = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})])
            response = await gateway.request("GET", "/x", headers={"X-Request-Echo": "hi"})
            self.assertEqual(response.header("X-Response-Echo"), "hi")

Each request goes through a real L{echogate.proxy.site.GatewaySite} over an
in-memory transport, so what the plugin sees is what it would see in the
running gateway. Configs are validated with the plugin's C{config_schema}
(defaults filled in), as the Admin API does.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from echogate.errors import BAD_UPSTREAM, ProxyError
from echogate.proxy.gateway import Gateway, GatewayResource
from echogate.proxy.request import GatewayRequest
from echogate.proxy.site import GatewaySite
from echogate.proxy.snapshot import Snapshot
from echogate.store.data import ConfigurationData
from echogate.pdk.messages import headers_of
from echogate.upstream.hop_by_hop import NOT_END_TO_END, listed_names

SERVICE_ID = "00000000-0000-4000-8000-000000000001"
ROUTE_ID = "00000000-0000-4000-8000-000000000002"


@attrs.frozen
class UpstreamRequestSeen:
    """
    A request as the fake upstream received it.
    """

    method: str
    path: str
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@attrs.frozen
class UpstreamAnswer:
    """
    What the fake upstream answers: a status, headers and a body.
    """

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


def echo_upstream(request: UpstreamRequestSeen) -> UpstreamAnswer:
    """
    The default fake upstream: answers 200 with the request it saw as JSON.
    """
    body = json.dumps({"method": request.method, "path": request.path,
                       "headers": {k: v for k, v in request.headers.items()},
                       "body": request.body.decode("utf-8", "replace")}).encode()
    return UpstreamAnswer(200, {"Content-Type": "application/json"}, body)


@attrs.frozen
class HarnessResponse:
    """
    A response the gateway sent to the client.
    """

    status: int
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """
        The first value of response header C{name}, or C{None}.
        """
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class _FakeTransport:
    stopped = False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


class _FakeResponse:
    """
    The fake upstream's answer, handed over as echogate's own client hands
    over a response: the end-to-end header lines as wire pairs (hop-by-hop
    ones and the names Connection lists left out), the length apart, and a
    body that is all there.
    """

    def __init__(self, answer: UpstreamAnswer):
        self.code = answer.status
        self.phrase = b"OK"
        self.version = (b"HTTP", 1, 1)
        self.raw_headers = [(name.encode("latin-1"), str(value).encode("latin-1"))
                            for name, value in answer.headers.items()]
        listed = listed_names(v for n, v in self.raw_headers if n.lower() == b"connection")
        self.end_to_end = [(n, v) for n, v in self.raw_headers
                           if n.lower() not in NOT_END_TO_END and n.lower() not in listed]
        self.via = any(n.lower() == b"via" for n, _ in self.end_to_end)
        self.length = len(answer.body)
        self._body: bytes | None = answer.body

    @property
    def headers(self) -> Headers:
        return headers_of(self.end_to_end)

    def whole_body(self) -> bytes | None:
        body, self._body = self._body, None
        return body

    def deliverBody(self, protocol: Any) -> None:
        body, self._body = self._body, None
        transport = _FakeTransport()
        protocol.makeConnection(transport)
        if body and not transport.stopped:
            protocol.dataReceived(body)
        if transport.stopped:
            protocol.connectionLost(Failure(ConnectionLost()))
        else:
            protocol.connectionLost(Failure(ResponseDone()))


class FunctionUpstream:
    """
    An upstream that calls C{handler(UpstreamRequestSeen)}; the handler
    returns an L{UpstreamAnswer} (or a Deferred of one), or raises to make
    the gateway answer 502.
    """

    def __init__(self, handler: Callable[[UpstreamRequestSeen], Any]):
        self._handler = handler
        self.seen: list[UpstreamRequestSeen] = []

    def request(self, service: dict, method: bytes, target: bytes, headers: Any,
                body: Any = None) -> Deferred:
        if not isinstance(headers, Headers):
            headers = headers_of(headers)
        seen = UpstreamRequestSeen(
            method=method.decode("latin-1"),
            path=target.decode("latin-1"),
            headers={k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
                     for k, vs in headers.getAllRawHeaders()},
            body=body.read() if body is not None else b"",
        )
        self.seen.append(seen)
        d = maybeDeferred(self._handler, seen)
        d.addErrback(lambda f: Failure(ProxyError(502, BAD_UPSTREAM)) if not f.check(ProxyError) else f)
        return d.addCallback(_FakeResponse)

    def close(self) -> Deferred:
        return succeed(None)


def _plugin_record(plugin: Any, config: Mapping[str, Any], scope: Mapping[str, Any]) -> dict:
    validated = plugin.config_schema.validate(dict(config))
    record = {"id": str(uuid.uuid4()), "name": plugin.name, "config": validated, "enabled": True,
              "service": None, "route": None, "consumer": None}
    for key in ("service", "route", "consumer"):
        value = scope.get(key)
        if value is not None:
            record[key] = {"id": value}
    return record


def _parse_response(raw: bytes) -> HarnessResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode("latin-1").strip().lower(), []).append(value.decode("latin-1").strip())
    if headers.get("transfer-encoding", [""])[0].lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
    else:
        body = rest
    return HarnessResponse(status, headers, body)


class GatewayHarness:
    """
    A gateway for tests: one service (C{http://upstream.test}) and one
    route (C{paths=["/"]} unless you pass C{route}), the given plugins
    enabled, the given plugin configs stored.

    @param plugins: plugin objects to enable.
    @param configs: C{(plugin_name, config)} or C{(plugin_name, config,
        scope)} where C{scope} may name C{"route"}, C{"service"} or
        C{"consumer"} ids (L{ROUTE_ID}, L{SERVICE_ID}); no scope means
        global.
    @param upstream: the fake upstream's handler (default
        L{echo_upstream}).
    @param route: route fields to use instead of the default route's.
    @param service: service fields to use instead of the default service's.
    @param entities: other stored entities by collection, such as
        C{{"consumers": [{"username": "alice"}], "keyauth_credentials":
        [{"consumer": {"id": ...}, "key": "k"}]}}: each is completed and
        validated as the Admin API does (ids, timestamps, defaults,
        generated keys, hashed passwords). L{set_entities} changes them
        between requests.
    """

    def __init__(self, plugins: Iterable[Any], configs: Sequence[tuple] = (),
                 upstream: Callable[[UpstreamRequestSeen], Any] = echo_upstream,
                 route: Mapping[str, Any] | None = None, service: Mapping[str, Any] | None = None,
                 clock: Clock | None = None,
                 entities: Mapping[str, Sequence[Mapping[str, Any]]] | None = None):
        from echogate.registry import check_plugin

        self.plugins = {p.name: p for p in plugins}
        for plugin in self.plugins.values():
            check_plugin(plugin)
        self.clock = clock or Clock()
        service_record = {"id": SERVICE_ID, "name": "upstream", "protocol": "http", "host": "upstream.test",
                          "port": 80, "path": None, "retries": 5, "connect_timeout": 60000,
                          "write_timeout": 60000, "read_timeout": 60000, "enabled": True, "tags": None,
                          "created_at": 0, "updated_at": 0}
        service_record.update(service or {})
        route_record = {"id": ROUTE_ID, "name": "default", "protocols": ["http", "https"], "methods": None,
                        "hosts": None, "paths": ["/"], "headers": None, "strip_path": False,
                        "preserve_host": False, "regex_priority": 0, "created_at": 0, "updated_at": 0,
                        "service": {"id": SERVICE_ID}, "tags": None, "https_redirect_status_code": 426,
                        "path_handling": "v0", "request_buffering": True, "response_buffering": True}
        route_record.update(route or {})
        records = []
        for item in configs:
            name, config = item[0], item[1]
            scope = item[2] if len(item) > 2 else {}
            if name not in self.plugins:
                raise ValueError(f"plugin {name!r} is not among the harness's plugins")
            records.append(_plugin_record(self.plugins[name], config, scope))
        self._data = ConfigurationData(version=1, services=(service_record,), routes=(route_record,),
                                       plugins=tuple(records))
        self.snapshot = Snapshot.build(self._data, self.plugins)
        if entities:
            self.set_entities(entities)
        self.upstream = FunctionUpstream(upstream)
        self.gateway = Gateway(clock=self.clock, snapshot=lambda: self.snapshot, upstream=self.upstream)
        self.site = GatewaySite(GatewayResource(self.gateway), reactor=self.clock)

    def stored(self, collection: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        C{record} completed and validated as the Admin API stores a new
        entity of C{collection}.
        """
        from echogate.entities import credentials
        from echogate.entities.writes import prepare_insert

        fields = credentials.fill_generated(collection, dict(record))
        complete = prepare_insert(collection, fields, plugins=self.plugins,
                                  now=max(1, int(self.clock.seconds())), new_id=str(uuid.uuid4()))
        return credentials.on_write(collection, complete, fields)

    def set_entities(self, entities: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict]]:
        """
        Store these entities (by collection, replacing that collection's
        earlier ones) and serve them from the next request on.

        @return: the stored records, by collection.
        """
        stored = {name: [self.stored(name, r) for r in records] for name, records in entities.items()}
        self._data = attrs.evolve(self._data, version=self._data.version + 1,
                                  **{name: tuple(records) for name, records in stored.items()})
        self.snapshot = Snapshot.build(self._data, self.plugins)
        return stored

    @property
    def upstream_requests(self) -> list[UpstreamRequestSeen]:
        """
        Every request the fake upstream received, oldest first.
        """
        return self.upstream.seen

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"", client_ip: str = "127.0.0.1") -> Deferred:
        """
        Send one request through the gateway.

        @return: a Deferred firing with a L{HarnessResponse} once the
            response is finished.
        """
        captured: list[GatewayRequest] = []

        def factory(*a: Any, **kw: Any) -> GatewayRequest:
            request = GatewayRequest(*a, **kw)
            captured.append(request)
            return request

        self.site.requestFactory = factory
        protocol = self.site.buildProtocol(IPv4Address("TCP", client_ip, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", client_ip, 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        protocol.makeConnection(transport)
        hdrs = {"Host": "gateway.test"}
        hdrs.update(headers or {})
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        protocol.dataReceived(raw)
        if not captured or (transport.disconnecting and not captured[0].finished):
            # The HTTP parser refused the request itself (e.g. a 400), or the
            # gateway cut the connection (e.g. a body_filter raised).
            if not transport.value():
                return fail(ConnectionLost("the gateway closed the connection without an answer"))
            return succeed(_parse_response(transport.value()))
        request = captured[0]
        done: Deferred = succeed(None) if request.finished else request.notifyFinish()
        result = done.addCallback(lambda _: _parse_response(transport.value()))

        def cleanup(r: Any) -> Any:
            protocol.connectionLost(Failure(ConnectionError("harness closed")))
            return r

        return result.addBoth(cleanup)
