"""
The bundled plugins that make sense for gRPC, on gRPC routes, over real
grpcio calls through one node (issue 22: "Plugins that make sense for gRPC
work on gRPC routes"): jwt, acl (after key-auth), ip-restriction,
rate-limiting, correlation-id, request-termination, prometheus, file-log
and http-log. (key-auth alone is L{tests.h2.test_grpc_e2e}'s.)

Each test's node has one C{grpc} service (the test service of
L{tests.h2.grpcservice}) and a C{grpc} route per plugin set, told apart by
C{hosts}: a client reaches a route by sending its host as the
C{:authority} (grpcio's C{grpc.default_authority}). Every test asserts what
a gRPC client sees: its status (the gateway's HTTP status mapped to
C{grpc-status} as Kong maps it), its message, the response's metadata, and
what the service got.

gRPC metadata keys are lowercase on the wire (HTTP/2 forbids uppercase
header names, and grpcio refuses them), so a key "in another case" is not
a call a gRPC client can make: the plugins find their headers by name
whatever its case, as over HTTP/1.1.

A node is started per test (trial's janitor forbids listeners outliving a
test, so a node per class would need the reactor's cleanliness check
turned off); it takes about a second.
"""
from __future__ import annotations

import json
import os
from typing import Any

import grpc
import jwt
from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web import server
from twisted.web.resource import Resource

from tests.gateway import RunningGateway, start_gateway
from tests.h2.grpcservice import CallOutcome, EchoClient, GrpcServer, start_grpc_server
from tests.h2.test_grpc_e2e import forwarder
from tests.waiting import until

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

#: The route's path: every method of the test service.
ROUTE_PATH = "/echotest.Echo/"

#: A time far ahead (2100-01-01), for tokens that do not expire.
LATER = 4102444800

#: Each route (named for what it tests, its host C{<name>.grpc.test}) and
#: the plugins on it (name, config). The log plugins (on C{logged}, and
#: file-log on C{term}) are added by the test (they need the test's file
#: and receiver); prometheus is global (every route counted).
ROUTES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "plain": [],
    "jwt": [("jwt", {"claims_to_verify": ["exp"]})],
    "acl": [("key-auth", {}), ("acl", {"allow": ["admins"]})],
    "ip": [("ip-restriction", {"deny": ["127.0.0.1"]})],
    "rl": [("rate-limiting", {"minute": 2, "policy": "local"})],
    "cid": [("correlation-id", {"header_name": "X-Correlation-ID", "echo_downstream": True})],
    "term": [("request-termination", {"status_code": 403, "message": "So long"})],
    "logged": [],
}


def host(route: str) -> str:
    """
    The host (C{:authority}) that reaches C{route}.
    """
    return f"{route}.grpc.test"


class _Collector(Resource):
    """
    http-log's receiving end on 127.0.0.1: the JSON documents POSTed to it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] = []

    def render_POST(self, request: Any) -> bytes:
        document = json.loads(request.content.read())
        self.entries.extend(document if isinstance(document, list) else [document])
        return b"ok"


def _lines(path: str) -> list[Any]:
    """
    The JSON records of a file-log file (none while it does not exist).
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _marked(records: list[Any], mark: str) -> list[Any]:
    """
    The log records of the calls with C{x-mark: mark} metadata.
    """
    return [record for record in records if record["request"]["headers"].get("x-mark") == mark]


def _metadata(outcome: CallOutcome) -> dict[str, str | bytes]:
    """
    A call's initial metadata (its response headers) as a mapping.
    """
    return dict(outcome.initial_metadata)


class GrpcPluginsTests(unittest.TestCase):
    """
    Each plugin's effect on gRPC calls through a node.
    """

    timeout = 60

    gw: RunningGateway
    upstream: GrpcServer

    async def setUp(self) -> None:  # type: ignore[override]  # (trial awaits it)
        self.upstream = start_grpc_server(self)
        self.collector = _Collector()
        site = server.Site(self.collector)
        site.noisy = False
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(listening.stopListening)
        receiver: int = listening.getHost().port  # type: ignore[attr-defined]
        self.log_path = os.path.abspath(self.mktemp())
        self.gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 http2"})
        self.port = self.gw.proxy_port
        self.clients: dict[str, EchoClient] = {}
        routes = dict(ROUTES)
        routes["logged"] = [
            ("file-log", {"path": self.log_path}),
            ("http-log", {"http_endpoint": f"http://127.0.0.1:{receiver}/logs",
                          "queue": {"max_batch_size": 1, "max_coalescing_delay": 0.01}})]
        routes["term"] = [*routes["term"], ("file-log", {"path": self.log_path})]
        await self.admin("POST", "/services", {"name": "echo", "protocol": "grpc", "host": "127.0.0.1",
                                               "port": self.upstream.port})
        for consumer in ("alice", "bob"):
            await self.admin("POST", "/consumers", {"username": consumer})
            await self.admin("POST", f"/consumers/{consumer}/key-auth", {"key": f"{consumer}-key"})
        await self.admin("POST", "/consumers/alice/acls", {"group": "admins"})
        await self.admin("POST", "/consumers/bob/acls", {"group": "guests"})
        self.jwt_credential = await self.admin("POST", "/consumers/alice/jwt", {})
        await self.admin("POST", "/plugins", {"name": "prometheus", "config": {"status_code_metrics": True}})
        for name, plugins in routes.items():
            await self.admin("POST", "/services/echo/routes", {"name": name, "protocols": ["grpc", "grpcs"],
                                                               "paths": [ROUTE_PATH], "hosts": [host(name)]})
            for plugin, config in plugins:
                await self.admin("POST", f"/routes/{name}/plugins", {"name": plugin, "config": config})
        # Written last, seen by L{served}: once it works, the node has it all.
        await self.admin("POST", "/routes/plain/plugins", {"name": "correlation-id", "config": {
            "header_name": "x-ready", "echo_downstream": True}})
        await self.served()
        self.upstream.service.calls.clear()

    async def admin(self, method: str, path: str, body: dict[str, Any], code: int = 201) -> Any:
        """
        Call the Admin API; the entity answered (the answer's code checked).
        """
        answer = await self.gw.admin(method, path, json=body)
        self.assertEqual(answer.code, code, (path, answer.body))
        return answer.json() if answer.body else {}

    def client(self, route: str, fresh: bool = False, port: int | None = None) -> EchoClient:
        """
        A client (a channel of its own) whose calls reach C{route}: h2c to
        the node, the route's host as the C{:authority}; one per route
        unless C{fresh} (or to another C{port}, such as a forwarder's).
        """
        if route in self.clients and not fresh and port is None:
            return self.clients[route]
        channel = grpc.insecure_channel(f"127.0.0.1:{port or self.port}", options=[
            ("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1),
            ("grpc.default_authority", host(route))])
        made = EchoClient(channel)
        self.addCleanup(made.close)
        if not fresh and port is None:
            self.clients[route] = made
        return made

    async def served(self) -> None:
        """
        Wait until the node has the test's configuration: the plugin
        written last (correlation-id on C{plain}, with C{echo_downstream})
        answers a call.
        """
        last: list[CallOutcome] = []

        async def ready() -> bool:
            outcome = await self.client("plain").unary(message="ready", timeout=5)
            last[:] = [outcome]
            return outcome.code == OK and "x-ready" in _metadata(outcome)

        try:
            await until(ready, timeout=10, interval=0.1, message="the node configured")
        except AssertionError:
            self.fail(f"the node never had the test's configuration: {last}")

    async def test_jwt(self) -> None:
        """
        jwt: a call without a token is UNAUTHENTICATED (the service not
        called), as is an expired token and a token in C{authorization-bin}
        metadata (binary metadata is another header, base64 on the wire:
        the plugin reads C{authorization} only, as Kong); a valid token in
        C{authorization: Bearer} metadata is OK, the service seeing the
        consumer. (C{bearer} in lowercase is accepted, as by Kong.) Two
        C{authorization} values: the first is the one read.
        """
        client = self.client("jwt")
        credential = self.jwt_credential
        signed = jwt.encode({"iss": credential["key"], "exp": LATER}, credential["secret"], algorithm="HS256")
        expired = jwt.encode({"iss": credential["key"], "exp": 1}, credential["secret"], algorithm="HS256")
        missing = await client.unary(message="x")
        self.assertEqual(missing.code, UNAUTHENTICATED, missing)
        for metadata in ([("authorization", f"Bearer {expired}")],
                         [("authorization-bin", f"Bearer {signed}".encode())],
                         [("authorization", f"Basic {signed}")]):
            refused = await client.unary(message="x", metadata=metadata)
            self.assertEqual(refused.code, UNAUTHENTICATED, (metadata, refused))
        self.assertEqual(self.upstream.service.calls, [])
        for scheme in ("Bearer", "bearer"):
            allowed = await client.unary(message="x", metadata=[("authorization", f"{scheme} {signed}")])
            self.assertEqual((allowed.code, allowed.reply.message), (OK, "x"), allowed)
            self.assertEqual(allowed.reply.metadata["x-consumer-username"], "alice")
        # Two authorization values: the first is read (Kong's get_header), a
        # valid token behind a bad one does not get in.
        doubled = await client.unary(message="x", metadata=[("authorization", "Bearer junk"),
                                                            ("authorization", f"Bearer {signed}")])
        self.assertEqual(doubled.code, UNAUTHENTICATED, doubled)
        self.assertEqual(self.upstream.service.calls, ["Unary", "Unary"])

    async def test_acl(self) -> None:
        """
        acl after key-auth: a consumer of an allowed group is OK (the
        service sees its groups); one of another group is
        PERMISSION_DENIED, even when the call claims the group itself in
        C{x-consumer-groups} metadata (the plugin reads the authenticated
        consumer's groups, never the request's); no key is
        UNAUTHENTICATED, and so are two C{apikey} values (Kong's
        C{Duplicate API key found}: HTTP/2 lets a call repeat a key
        freely, and the plugin must not pick the one it likes).
        """
        client = self.client("acl")
        allowed = await client.unary(message="x", metadata=[("apikey", "alice-key")])
        self.assertEqual(allowed.code, OK, allowed)
        self.assertEqual((allowed.reply.metadata["x-consumer-username"], allowed.reply.metadata["x-consumer-groups"]),
                         ("alice", "admins"))
        denied = await client.unary(message="x", metadata=[("apikey", "bob-key")])
        self.assertEqual(denied.code, PERMISSION_DENIED, denied)
        spoofed = await client.unary(message="x", metadata=[("apikey", "bob-key"),
                                                            ("x-consumer-groups", "admins")])
        self.assertEqual(spoofed.code, PERMISSION_DENIED, spoofed)
        streamed = await client.bidi([{"message": "a"}], metadata=[("apikey", "bob-key")])
        self.assertEqual((streamed.code, streamed.replies), (PERMISSION_DENIED, ()), streamed)
        anonymous = await client.unary(message="x")
        self.assertEqual(anonymous.code, UNAUTHENTICATED, anonymous)
        doubled = await client.unary(message="x", metadata=[("apikey", "alice-key"), ("apikey", "bob-key")])
        self.assertEqual((doubled.code, doubled.details), (UNAUTHENTICATED, "Duplicate API key found"), doubled)
        self.assertEqual(self.upstream.service.calls, ["Unary"])

    async def test_ipRestriction(self) -> None:
        """
        ip-restriction denying 127.0.0.1: PERMISSION_DENIED, with Kong's
        message; claiming another address in C{x-forwarded-for} or
        C{x-real-ip} metadata does not walk around it (the peer is not a
        trusted proxy, so those are not read), nor does a streaming call.
        """
        client = self.client("ip")
        denied = await client.unary(message="x")
        self.assertEqual((denied.code, denied.details),
                         (PERMISSION_DENIED, "IP address not allowed: 127.0.0.1"), denied)
        spoofed = await client.unary(message="x", metadata=[("x-forwarded-for", "10.1.2.3"),
                                                            ("x-real-ip", "10.1.2.3")])
        self.assertEqual(spoofed.code, PERMISSION_DENIED, spoofed)
        streamed = await client.client_stream([{"message": "a"}, {"message": "b"}])
        self.assertEqual(streamed.code, PERMISSION_DENIED, streamed)
        self.assertEqual(self.upstream.service.calls, [])

    async def test_rateLimiting(self) -> None:
        """
        rate-limiting (2 a minute, local, by the client's address): the
        first two calls are OK, their initial metadata carrying Kong's
        rate-limit headers; the third is RESOURCE_EXHAUSTED with Kong's
        message. A streaming call counts as one, and neither a new
        connection nor a forged C{x-forwarded-for} resets the count.
        """
        one = await self.client("rl").unary(message="1")
        two = await self.client("rl").bidi([{"message": "2a"}, {"message": "2b"}])
        self.assertEqual([one.code, two.code], [OK, OK], (one, two))
        for outcome, remaining in ((one, "1"), (two, "0")):
            headers = _metadata(outcome)
            self.assertEqual((headers.get("x-ratelimit-limit-minute"), headers.get("x-ratelimit-remaining-minute"),
                              headers.get("ratelimit-limit"), headers.get("ratelimit-remaining")),
                             ("2", remaining, "2", remaining), headers)
        three = await self.client("rl", fresh=True).unary(message="3", metadata=[("x-forwarded-for", "10.9.9.9")])
        self.assertEqual((three.code, three.details), (RESOURCE_EXHAUSTED, "API rate limit exceeded"), three)
        self.assertEqual(three.trailing.get("x-ratelimit-remaining-minute"), "0", three)
        self.assertEqual(self.upstream.service.calls, ["Unary", "Bidi"])

    async def test_correlationId(self) -> None:
        """
        correlation-id (C{X-Correlation-ID}, C{echo_downstream}): the
        service gets the id as C{x-correlation-id} metadata, and the
        response's initial metadata echoes it; a call bringing its own id
        keeps it (Kong passes a present id on, so a client chooses its id:
        the plugin correlates, it does not authenticate).
        """
        client = self.client("cid")
        outcome = await client.unary(message="x")
        self.assertEqual(outcome.code, OK, outcome)
        sent = outcome.reply.metadata["x-correlation-id"]
        self.assertRegex(sent, r"^[0-9a-f-]{36}#\d+$")
        self.assertEqual(_metadata(outcome).get("x-correlation-id"), sent)
        streamed = await client.server_stream(message="s", count=2)
        ids = {reply.metadata["x-correlation-id"] for reply in streamed.replies}
        self.assertEqual(len(ids), 1)
        self.assertNotIn(sent, ids)
        self.assertEqual(_metadata(streamed).get("x-correlation-id"), ids.pop())
        own = await client.unary(message="x", metadata=[("x-correlation-id", "mine-1")])
        self.assertEqual((own.reply.metadata["x-correlation-id"], _metadata(own).get("x-correlation-id")),
                         ("mine-1", "mine-1"))

    async def test_requestTermination(self) -> None:
        """
        request-termination (403, C{So long}) on a gRPC route: answered
        the gRPC way, PERMISSION_DENIED with the message as C{grpc-message},
        the service never called; a streaming call is answered alike
        before its messages are read. The answers end their streams only:
        the client's connection goes on (one connection for every call).
        """
        counting, port = forwarder(self, self.port)
        client = self.client("term", port=port)
        outcome = await client.unary(message="x")
        self.assertEqual((outcome.code, outcome.details), (PERMISSION_DENIED, "So long"), outcome)
        streamed = await client.bidi([{"message": f"m{i}"} for i in range(5)])
        self.assertEqual((streamed.code, streamed.details, streamed.replies), (PERMISSION_DENIED, "So long", ()))
        again = await client.client_stream([{"message": "a"}])
        self.assertEqual(again.code, PERMISSION_DENIED, again)
        self.assertEqual(self.upstream.service.calls, [])
        self.assertEqual(counting.accepted, 1)

    async def test_prometheus(self) -> None:
        """
        prometheus (global, C{status_code_metrics}): after calls, the
        requests of the grpc service's routes are counted by their HTTP
        status and source: a call the service answered with an error
        status is still a 200 from the service (gRPC's status travels in
        the trailers), a call a plugin refused is the plugin's status
        (401, C{exit}).
        """
        before = await self.counted()
        ok = await self.client("logged").unary(message="x")
        failed = await self.client("logged").unary(message="x", status=5, status_message="none")
        refused = await self.client("jwt").unary(message="x")
        self.assertEqual([ok.code, failed.code, refused.code], [OK, grpc.StatusCode.NOT_FOUND, UNAUTHENTICATED])
        after = await self.counted()
        grown = {labels: value - before.get(labels, 0.0) for labels, value in after.items()
                 if value != before.get(labels)}
        self.assertEqual(grown, {
            '{code="200",consumer="",route="logged",service="echo",source="service"}': 2.0,
            '{code="401",consumer="",route="jwt",service="echo",source="exit"}': 1.0})

    async def counted(self) -> dict[str, float]:
        """
        The node's C{echogate_http_requests_total} counts of the C{echo}
        service, by their labels (the metrics are the process's, shared by
        the tests' nodes: compare before and after).
        """
        metrics = await self.gw.admin("GET", "/metrics")
        self.assertEqual(metrics.code, 200)
        counted = {}
        for line in metrics.body.decode().splitlines():
            if line.startswith("echogate_http_requests_total{") and 'service="echo"' in line:
                labels, value = line[len("echogate_http_requests_total"):].rsplit(" ", 1)
                counted[labels] = float(value)
        return counted

    async def test_fileLog(self) -> None:
        """
        file-log: the record of a gRPC call names its route and service,
        the HTTP status (200, also for a call the service failed: gRPC's
        status is in the trailers, which the record does not carry; a
        trailers-only answer's C{grpc-status} is among its headers), a
        POST to the method's path. A call request-termination answered:
        403, source C{exit}, its C{grpc-status} 7 and C{grpc-message}. Kong's record has no protocol field:
        the request's URL says C{http} (the listener's scheme, as Kong's
        C{ngx.var.scheme}), the route's C{protocols} say grpc.
        """
        outcome = await self.client("logged").unary(message="x", status=5, status_message="none",
                                                    metadata=[("x-mark", "file-log")])
        self.assertEqual(outcome.code, grpc.StatusCode.NOT_FOUND, outcome)
        records = await until(lambda: _marked(_lines(self.log_path), "file-log"), message="the call logged")
        self.assertEqual(len(records), 1, records)
        self.assertLogged(records[0])
        # A call the gateway answered (request-termination): its record
        # has the HTTP status and the gRPC answer's headers.
        terminated = await self.client("term").unary(message="x", metadata=[("x-mark", "exit")])
        self.assertEqual(terminated.code, PERMISSION_DENIED, terminated)
        (record,) = await until(lambda: _marked(_lines(self.log_path), "exit"), message="the exit logged")
        headers = record["response"]["headers"]
        self.assertEqual((record["route"]["name"], record["source"], record["upstream_status"],
                          record["response"]["status"]), ("term", "exit", "", 403))
        self.assertEqual((headers["content-type"], headers["grpc-status"], headers["grpc-message"]),
                         ("application/grpc", "7", "So long"))

    async def test_fileLogExitHeadersAsSent(self) -> None:
        """
        The record of a gRPC call a plugin answered before its body was
        read lists the response headers sent: no C{Connection: close}
        (HTTP/2 forbids connection-specific headers, so it never goes on
        the wire, and the stream's end closes nothing but the stream).
        """
        terminated = await self.client("term").unary(message="x", metadata=[("x-mark", "exit")])
        self.assertEqual(terminated.code, PERMISSION_DENIED, terminated)
        self.assertNotIn("connection", {key for key, _ in terminated.initial_metadata + terminated.trailing_metadata})
        (record,) = await until(lambda: _marked(_lines(self.log_path), "exit"), message="the exit logged")
        self.assertNotIn("connection", record["response"]["headers"])


    async def test_httpLog(self) -> None:
        """
        http-log: a receiver on 127.0.0.1 gets the same record of a gRPC
        call as file-log writes.
        """
        outcome = await self.client("logged").unary(message="x", status=5, status_message="none",
                                                    metadata=[("x-mark", "http-log")])
        self.assertEqual(outcome.code, grpc.StatusCode.NOT_FOUND, outcome)
        records = await until(lambda: _marked(self.collector.entries, "http-log"), message="the call posted")
        self.assertEqual(len(records), 1, records)
        self.assertLogged(records[0])

    def assertLogged(self, record: dict[str, Any]) -> None:
        """
        C{record} is the log record of one C{Unary} call on the C{logged}
        route.
        """
        self.assertEqual((record["route"]["name"], record["route"]["protocols"], record["service"]["name"],
                          record["service"]["protocol"]), ("logged", ["grpc", "grpcs"], "echo", "grpc"))
        request = record["request"]
        self.assertEqual((request["method"], request["uri"], request["headers"]["content-type"]),
                         ("POST", "/echotest.Echo/Unary", "application/grpc"))
        self.assertEqual(request["url"], f"http://{host('logged')}:{self.port}/echotest.Echo/Unary")
        self.assertEqual([name for name in request["headers"] if name.startswith(":")], [])
        self.assertEqual((record["response"]["status"], record["upstream_status"], record["client_ip"]),
                         (200, "200", "127.0.0.1"))
        self.assertNotIn("protocol", record)


