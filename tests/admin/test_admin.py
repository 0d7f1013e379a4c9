"""
Tests for L{echogate.admin}: the Admin API, over in-memory HTTP (treq's
C{StubTreq}) against L{tests.storefake.MemoryStore}. No sockets.

This module holds L{AdminTestCase}, which the other C{test_admin_*}
modules share, and the tests of what is not an entity endpoint.
"""
from __future__ import annotations

import json
from itertools import count
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from werkzeug.routing import RequestRedirect
from zope.interface import implementer

from echogate.admin import AdminAPI, NodeInfo
from echogate.admin.responses import error_response
from echogate.errors import DatabaseUnavailable
from echogate.interfaces import IGatewayPlugin
from echogate.schema import Record
from echogate.schema.fields import Integer, String
from tests.storefake import MemoryStore

NOW = 1700000000
HOST = "http://127.0.0.1:8001"
NOT_FOUND = {"message": "Not found"}


@implementer(IGatewayPlugin)
@attrs.frozen
class FakePlugin:
    """
    A plugin with a small config schema.
    """

    name: str
    version: str = "1.2.3"
    priority: int = 1000
    config_schema: Record = Record({
        "header": String(default="X-Echo"),
        "limit": Integer(default=10),
    })


PLUGINS = {"echo": FakePlugin("echo"), "other": FakePlugin("other", "0.1.0", 5)}

NODE = NodeInfo(
    node_id="11111111-2222-4333-8444-555555555555",
    hostname="gw1",
    version="0.1.0",
    configuration={"admin_listen": ["127.0.0.1:8001"], "plugins": ["bundled"]},
)


def ids() -> Callable[[], str]:
    """
    A source of predictable UUIDs.
    """
    numbers = count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


@attrs.frozen
class Answer:
    """
    What the Admin API answered.
    """

    status: int
    headers: Mapping[bytes, list[bytes]]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class AdminTestCase(SynchronousTestCase):
    """
    An Admin API over a fresh L{MemoryStore}, with helpers to call it.
    """

    on_change_result: Any = None

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.clock.advance(NOW)
        self.changes = 0
        self.status_calls = 0
        self.api = self.make_api()
        self.treq = StubTreq(self.api.resource())

    def make_api(self, **kw: Any) -> AdminAPI:
        arguments: dict[str, Any] = dict(
            store=self.store, plugins=PLUGINS, clock=self.clock, node=NODE,
            on_change=self.on_change, new_id=ids(),
            status=lambda: {"connections_active": 2, "total_requests": 7},
        )
        arguments.update(kw)
        return AdminAPI(**arguments)

    def on_change(self) -> Any:
        self.changes += 1
        return self.on_change_result

    def request_started(self, method: str, path: str, *, json_body: Any = None,
                        form: Any = None, body: bytes | None = None,
                        content_type: str | None = None) -> Deferred[Any]:
        headers = {}
        data = body
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        elif form is not None:
            data = urlencode(form).encode()
            content_type = "application/x-www-form-urlencoded"
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.treq.request(method, HOST + path, data=data, headers=headers)

    def finish(self, started: Deferred[Any]) -> Answer:
        self.treq.flush()
        response = self.successResultOf(started)
        content = response.content()
        self.treq.flush()
        return Answer(response.code, dict(response.headers.getAllRawHeaders()),
                      self.successResultOf(content))

    def call(self, method: str, path: str, **kw: Any) -> Answer:
        return self.finish(self.request_started(method, path, **kw))

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        answer = self.call(method, path, **kw)
        self.assertEqual(answer.status, status, answer.raw)
        return answer.json if answer.raw else None

    def error(self, method: str, path: str, status: int, **kw: Any) -> Any:
        writes = self.store.writes
        changes = self.changes
        answer = self.call(method, path, **kw)
        self.assertEqual(answer.status, status, answer.raw)
        self.assertEqual(answer.headers[b"Content-Type"], [b"application/json; charset=utf-8"])
        self.assertEqual(self.store.writes, writes, "a failed request wrote")
        self.assertEqual(self.changes, changes, "on_change called after a failure")
        return answer.json

    def service(self, name: str | None = "svc", **fields: Any) -> dict[str, Any]:
        body = {"host": "example.com", **fields}
        if name is not None:
            body["name"] = name
        return self.ok("POST", "/services", 201, json_body=body)

    def route(self, service: dict[str, Any] | None, name: str | None = None,
              **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"paths": ["/r"], **fields}
        if name is not None:
            body["name"] = name
        if service is not None:
            body["service"] = {"id": service["id"]}
        return self.ok("POST", "/routes", 201, json_body=body)


class EncodingTests(AdminTestCase):
    """
    Tests for how every answer is encoded.
    """

    def test_json_content_type(self) -> None:
        """
        Answers are JSON with a UTF-8 content type.
        """
        answer = self.call("GET", "/services")
        self.assertEqual(answer.headers[b"Content-Type"], [b"application/json; charset=utf-8"])
        self.assertEqual(answer.json, {"data": [], "next": None})

    def test_utf8(self) -> None:
        """
        Non-ASCII text is sent as UTF-8.
        """
        self.service("s", tags=["é"])
        answer = self.call("GET", "/services/s")
        self.assertIn("é".encode(), answer.raw)


class UnknownPathTests(AdminTestCase):
    """
    Tests for paths and methods the Admin API does not serve.
    """

    def test_unknown_path(self) -> None:
        """
        An unknown path is 404 C{{"message": "Not found"}}.
        """
        for path in ("/nope", "/services/x/y", "/routes/x/routes", "/vaults",
                     "/services/x/routes/y/z", "/consumers/x/routes"):
            self.assertEqual(self.error("GET", path, 404), NOT_FOUND, path)

    def test_wrong_method(self) -> None:
        """
        A known path with a method it does not serve is 405
        C{{"message": "Method not allowed"}}, naming the allowed methods.
        """
        answer = self.call("DELETE", "/services")
        self.assertEqual((answer.status, answer.json), (405, {"message": "Method not allowed"}))
        self.assertEqual(answer.headers[b"Allow"], [b"GET, HEAD, POST"])
        for method, path in (("POST", "/services/x"), ("PUT", "/services"),
                             ("POST", "/"), ("POST", "/plugins/enabled"),
                             ("DELETE", "/services/x/routes")):
            self.assertEqual(self.error(method, path, 405), {"message": "Method not allowed"},
                             f"row method={method!r} path={path!r}")


class RootTests(AdminTestCase):
    """
    Tests for C{GET /}.
    """

    def test_node(self) -> None:
        """
        C{GET /} tells the tagline, version, hostname, node id and configuration.
        """
        body = self.ok("GET", "/")
        self.assertEqual(body["tagline"], "Welcome to echogate")
        self.assertEqual(body["version"], "0.1.0")
        self.assertEqual(body["hostname"], "gw1")
        self.assertEqual(body["node_id"], NODE.node_id)
        self.assertEqual(body["configuration"], dict(NODE.configuration))

    def test_plugins(self) -> None:
        """
        C{GET /} lists the plugins available on this node and those in use.
        """
        self.ok("POST", "/plugins", 201, json_body={"name": "other"})
        body = self.ok("GET", "/")
        self.assertEqual(body["plugins"], {
            "available_on_server": {
                "echo": {"version": "1.2.3", "priority": 1000},
                "other": {"version": "0.1.0", "priority": 5},
            },
            "enabled_in_cluster": ["other"],
        })

    def test_plugins_in_use_many_pages(self) -> None:
        """
        Plugins in use are gathered from every page of stored plugins.
        """
        for n in range(1002):
            id = f"00000000-0000-4000-8000-{n:012d}"
            self.store.tables["plugins"][id] = {"id": id, "name": "other" if n == 1001 else "echo"}
        self.assertEqual(self.ok("GET", "/")["plugins"]["enabled_in_cluster"],
                         ["echo", "other"])


class StatusTests(AdminTestCase):
    """
    Tests for C{GET /status}.
    """

    def test_reachable(self) -> None:
        """
        C{GET /status} gives the server counters, the database's
        reachability and the configuration version.
        """
        self.service()
        self.assertEqual(self.ok("GET", "/status"), {
            "server": {"connections_active": 2, "total_requests": 7},
            "database": {"reachable": True},
            "configuration_version": 1,
        })

    def test_no_counters(self) -> None:
        """
        Without a C{status} callable the server section is empty.
        """
        self.treq = StubTreq(self.make_api(status=None).resource())
        self.assertEqual(self.ok("GET", "/status")["server"], {})

    def test_unreachable(self) -> None:
        """
        A failing database is C{reachable: false}, still 200.
        """
        self.store.fail_next(DatabaseUnavailable())
        body = self.ok("GET", "/status")
        self.assertEqual((body["database"], body["configuration_version"]),
                         ({"reachable": False}, None))

    def test_timeout(self) -> None:
        """
        A database that does not answer in time is C{reachable: false}.
        """
        self.store.hang_version = True
        started = self.request_started("GET", "/status")
        self.treq.flush()
        self.assertNoResult(started)
        self.clock.advance(5)
        body = self.finish(started).json
        self.assertEqual(body["database"], {"reachable": False})


class PluginInfoTests(AdminTestCase):
    """
    Tests for C{/plugins/enabled} and the schema endpoints.
    """

    def test_enabled(self) -> None:
        """
        C{GET /plugins/enabled} lists the enabled plugins' names.
        """
        self.assertEqual(self.ok("GET", "/plugins/enabled"), {"enabled_plugins": ["echo", "other"]})

    def test_plugin_schema(self) -> None:
        """
        C{GET /schemas/plugins/{name}} (or C{/plugins/schema/{name}})
        describes a plugin entity whose config is the plugin's schema.
        """
        for path in ("/schemas/plugins/echo", "/plugins/schema/echo"):
            body = self.ok("GET", path)
            fields = dict(next(iter(f.items())) for f in body["fields"])
            self.assertEqual(fields["config"]["fields"],
                             PLUGINS["echo"].config_schema.describe()["fields"], f"row path={path!r}")
            self.assertIn("name", fields, f"row path={path!r}")

    def test_unknown_plugin_schema(self) -> None:
        """
        The schema of an unknown plugin is 404.
        """
        self.assertEqual(self.error("GET", "/schemas/plugins/nope", 404),
                         {"message": "No plugin named 'nope'"})

    def test_entity_schema(self) -> None:
        """
        C{GET /schemas/{entity}} describes an entity's fields.
        """
        body = self.ok("GET", "/schemas/services")
        names = [next(iter(f)) for f in body["fields"]]
        self.assertIn("host", names)
        self.assertEqual(self.error("GET", "/schemas/nope", 404),
                         {"message": "No entity named 'nope'"})


class ChangeTests(AdminTestCase):
    """
    Tests for C{on_change}: once after every successful write, never after
    a failed one, awaited before answering.
    """

    def test_once_per_write(self) -> None:
        """
        Each successful write calls C{on_change} once.
        """
        service = self.service("s")
        self.ok("PATCH", "/services/s", json_body={"port": 81})
        self.ok("PUT", "/services/t", json_body={"host": "h"})
        self.ok("DELETE", f"/services/{service['id']}", 204)
        self.assertEqual(self.changes, 4)

    def test_reads_do_not_change(self) -> None:
        """
        Reads and deletes of nothing do not call C{on_change}.
        """
        for path in ("/", "/status", "/services", "/services/x", "/plugins/enabled"):
            self.call("GET", path)
        self.ok("DELETE", "/services/nothing", 204)
        self.assertEqual(self.changes, 0)

    def test_awaited(self) -> None:
        """
        The answer waits for the Deferred that C{on_change} returns.
        """
        reloaded: Deferred[None] = Deferred()
        self.on_change_result = reloaded
        started = self.request_started("POST", "/services", json_body={"host": "h"})
        self.treq.flush()
        self.assertNoResult(started)
        reloaded.callback(None)
        self.assertEqual(self.finish(started).status, 201)

    def test_failure_logged(self) -> None:
        """
        A failing C{on_change} is logged; the stored change is still answered.
        """
        self.on_change_result = fail(RuntimeError("reload failed"))
        self.ok("POST", "/services", 201, json_body={"host": "h"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ErrorTests(AdminTestCase):
    """
    Tests for failures of the store and of the Admin API itself.
    """

    def test_database_unavailable(self) -> None:
        """
        L{DatabaseUnavailable} is 503 with its message.
        """
        self.store.fail_next(DatabaseUnavailable())
        self.assertEqual(self.error("GET", "/services", 503),
                         {"message": "The database is unavailable; the change was not applied"})

    def test_unexpected(self) -> None:
        """
        Anything unexpected is 500 without details, its traceback logged.
        """
        self.store.fail_next(ZeroDivisionError("secret detail"))
        answer = self.call("GET", "/services/x")
        self.assertEqual((answer.status, answer.json),
                         (500, {"message": "An unexpected error occurred"}))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ErrorResponseTests(SynchronousTestCase):
    """
    Tests for L{error_response} with routing errors Klein raises.
    """

    def test_redirect(self) -> None:
        """
        A routing redirect keeps its status and C{Location}, with a JSON body.
        """
        request = DummyRequest([b""])
        body = error_response(request, Failure(RequestRedirect("http://h/services")))
        self.assertEqual((request.responseCode, json.loads(body)),
                         (308, {"message": "Permanent Redirect"}))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"location"),
                         [b"http://h/services"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"application/json; charset=utf-8"])
