"""
Tests for L{echogate.admin}: the Admin API, over in-memory HTTP (treq's
C{StubTreq}) against L{tests.storefake.MemoryStore}. No sockets.
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
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from echogate.admin import AdminAPI, NodeInfo
from echogate.errors import DatabaseUnavailable, ForeignKeyViolation
from echogate.interfaces import IGatewayPlugin
from echogate.schema import Integer, Record, String
from tests.storefake import MemoryStore
from tests.test_bodies import MULTIPART, multipart

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
        for path in ("/nope", "/services/x/y", "/routes/x/routes", "/upstreams",
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
            self.assertEqual(self.error(method, path, 405), {"message": "Method not allowed"})


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
                             PLUGINS["echo"].config_schema.describe()["fields"])
            self.assertIn("name", fields)

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


class CreateTests(AdminTestCase):
    """
    Tests for C{POST /{entity}}.
    """

    def test_json(self) -> None:
        """
        A JSON body creates the entity: 201 with the stored record, every
        field present, id and timestamps set.
        """
        body = self.ok("POST", "/services", 201,
                       json_body={"name": "s", "host": "example.com", "tags": ["a"]})
        self.assertEqual(body["id"], "00000000-0000-4000-8000-000000000001")
        self.assertEqual((body["created_at"], body["updated_at"]), (NOW, NOW))
        self.assertEqual((body["name"], body["host"], body["port"], body["protocol"]),
                         ("s", "example.com", 80, "http"))
        self.assertIsNone(body["path"])
        self.assertEqual(body, self.store.tables["services"][body["id"]])
        self.assertEqual(self.changes, 1)

    def test_form(self) -> None:
        """
        A URL-encoded body is typed by the schema.
        """
        body = self.ok("POST", "/services", 201, form=[
            ("name", "s"), ("host", "example.com"), ("port", "8080"), ("retries", "2"),
            ("tags", "one"), ("path", ""),
        ])
        self.assertEqual((body["port"], body["retries"], body["tags"], body["path"]),
                         (8080, 2, ["one"], None))

    def test_multipart(self) -> None:
        """
        A multipart body is typed by the schema.
        """
        data = multipart(("name", b"s"), ("host", b"example.com"), ("port", b"8080"),
                         ("tags[]", b"a"), ("tags[]", b"b"))
        body = self.ok("POST", "/services", 201, body=data, content_type=MULTIPART)
        self.assertEqual((body["port"], body["tags"]), (8080, ["a", "b"]))

    def test_form_nested(self) -> None:
        """
        Form names nest: a plugin's C{config.*} is typed by that plugin's schema.
        """
        body = self.ok("POST", "/plugins", 201,
                       form=[("name", "echo"), ("config.limit", "45"), ("enabled", "false")])
        self.assertEqual(body["config"], {"header": "X-Echo", "limit": 45})
        self.assertIs(body["enabled"], False)

    def test_query_is_not_body(self) -> None:
        """
        Query arguments are not entity fields.
        """
        body = self.ok("POST", "/services?name=q&port=1", 201,
                       json_body={"host": "example.com"})
        self.assertEqual((body["name"], body["port"]), (None, 80))

    def test_schema_violation(self) -> None:
        """
        An invalid entity is 400 with Kong's schema violation body, and
        nothing is stored.
        """
        body = self.error("POST", "/services", 400, json_body={"port": 80, "path": "x"})
        self.assertEqual((body["code"], body["name"]), (2, "schema violation"))
        self.assertEqual(body["fields"]["host"], "required field missing")
        self.assertIn("host: required field missing", body["message"])
        self.assertEqual(self.store.tables["services"], {})

    def test_empty_body(self) -> None:
        """
        An empty body without a content type is C{{}}: here, a missing host.
        """
        body = self.error("POST", "/services", 400)
        self.assertEqual(body["fields"], {"host": "required field missing"})

    def test_form_untypable(self) -> None:
        """
        A form value that cannot be typed is a schema violation.
        """
        body = self.error("POST", "/services", 400, form={"host": "h", "port": "abc"})
        self.assertEqual(set(body["fields"]), {"port"})

    def test_unique(self) -> None:
        """
        A taken unique value is 409 Kong's unique violation.
        """
        self.service("s")
        body = self.error("POST", "/services", 409, json_body={"name": "s", "host": "h"})
        self.assertEqual(body, {
            "code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{name=\"s\"}'",
            "fields": {"name": "s"},
        })

    def test_foreign_key(self) -> None:
        """
        A foreign key naming nothing is 400 Kong's foreign key violation.
        """
        missing = "00000000-0000-4000-8000-00000000dead"
        body = self.error("POST", "/routes", 400,
                          json_body={"paths": ["/"], "service": {"id": missing}})
        self.assertEqual(body, {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": f"the foreign key '{{id=\"{missing}\"}}' does not reference"
                       " an existing 'services' entity.",
            "fields": {"service": {"id": missing}},
        })

    def test_foreign_key_by_name(self) -> None:
        """
        A foreign key may name its entity by endpoint key.
        """
        service = self.service("s")
        body = self.ok("POST", "/routes", 201, json_body={"paths": ["/"], "service": {"name": "s"}})
        self.assertEqual(body["service"], {"id": service["id"]})
        body = self.ok("POST", "/routes", 201, form={"paths": "/", "service.name": "s"})
        self.assertEqual(body["service"], {"id": service["id"]})

    def test_foreign_key_by_unknown_name(self) -> None:
        """
        A foreign key naming nothing by endpoint key is a schema violation.
        """
        body = self.error("POST", "/routes", 400,
                          json_body={"paths": ["/"], "service": {"name": "nope"}})
        self.assertEqual(body["code"], 2)
        self.assertIn("service", body["fields"])

    def test_bad_json(self) -> None:
        """
        A JSON body that does not parse is 400 "Cannot parse JSON body".
        """
        self.assertEqual(self.error("POST", "/services", 400, body=b"{",
                                    content_type="application/json"),
                         {"message": "Cannot parse JSON body"})

    def test_json_not_object(self) -> None:
        """
        A JSON body that is not an object is 400.
        """
        self.assertEqual(self.error("POST", "/services", 400, json_body=[1]),
                         {"message": "JSON body must be an object"})

    def test_unsupported_type(self) -> None:
        """
        A body of another content type is 415.
        """
        self.assertEqual(self.error("POST", "/services", 415, body=b"host: x",
                                    content_type="text/yaml"),
                         {"message": "Unsupported Content-Type"})

    def test_too_large(self) -> None:
        """
        A body over the limit is 413.
        """
        self.treq = StubTreq(self.make_api(max_body_size=20).resource())
        self.assertEqual(self.error("POST", "/services", 413,
                                    json_body={"host": "example.com", "x": "y"}),
                         {"message": "Request body larger than 20 bytes"})

    def test_unknown_plugin(self) -> None:
        """
        A plugin that is not enabled is a schema violation.
        """
        body = self.error("POST", "/plugins", 400, json_body={"name": "nope"})
        self.assertEqual((body["code"], list(body["fields"])), (2, ["name"]))

    def test_plugin_twice(self) -> None:
        """
        The same plugin twice on the same scope is 409.
        """
        self.ok("POST", "/plugins", 201, json_body={"name": "echo"})
        self.assertEqual(self.error("POST", "/plugins", 409, json_body={"name": "echo"})["code"], 5)


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


class GetTests(AdminTestCase):
    """
    Tests for C{GET /{entity}/{id or endpoint key}}.
    """

    def test_by_id_and_name(self) -> None:
        """
        An entity is found by id or by name.
        """
        service = self.service("s")
        self.assertEqual(self.ok("GET", f"/services/{service['id']}"), service)
        self.assertEqual(self.ok("GET", "/services/s"), service)

    def test_consumer(self) -> None:
        """
        A consumer is found by username or custom_id.
        """
        consumer = self.ok("POST", "/consumers", 201, json_body={"username": "u", "custom_id": "c"})
        self.assertEqual(self.ok("GET", "/consumers/u"), consumer)
        self.assertEqual(self.ok("GET", "/consumers/c"), consumer)

    def test_missing(self) -> None:
        """
        A missing entity is 404 C{{"message": "Not found"}}.
        """
        for path in ("/services/nope", "/routes/00000000-0000-4000-8000-000000000009",
                     "/consumers/x", "/plugins/x"):
            self.assertEqual(self.error("GET", path, 404), NOT_FOUND)

    def test_percent_encoded(self) -> None:
        """
        The key is percent-decoded.
        """
        self.service("é")
        self.assertEqual(self.ok("GET", "/services/%C3%A9")["name"], "é")


class ListTests(AdminTestCase):
    """
    Tests for C{GET /{entity}}: pages, sizes and tags.
    """

    def services(self, n: int, **fields: Any) -> list[dict[str, Any]]:
        return [self.service(None, **fields) for _ in range(n)]

    def test_last_page(self) -> None:
        """
        The last page has C{next: null} and no C{offset}.
        """
        created = self.services(2)
        self.assertEqual(self.ok("GET", "/services"), {"data": created, "next": None})

    def test_follow_next(self) -> None:
        """
        Following C{next} until it is null lists every entity once.
        """
        created = self.services(5)
        seen: list[dict[str, Any]] = []
        path: str | None = "/services?size=2"
        pages = 0
        while path is not None:
            body = self.ok("GET", path)
            seen.extend(body["data"])
            pages += 1
            if body["next"] is not None:
                self.assertEqual(body["next"],
                                 f"/services?offset={body['offset']}&size=2")
            else:
                self.assertNotIn("offset", body)
            path = body["next"]
        self.assertEqual((seen, pages), (created, 3))

    def test_default_size(self) -> None:
        """
        A page holds 100 entities unless told otherwise.
        """
        self.services(101)
        body = self.ok("GET", "/services")
        self.assertEqual(len(body["data"]), 100)
        self.assertEqual(body["next"], f"/services?offset={body['offset']}")
        self.assertEqual(len(self.ok("GET", body["next"])["data"]), 1)

    def test_bad_size(self) -> None:
        """
        A size that is not an integer from 1 to 1000 is 400 Kong's invalid size.
        """
        self.assertEqual(self.error("GET", "/services?size=abc", 400), {
            "code": 9, "name": "invalid size", "message": "size must be a number"})
        for size in ("0", "1001", "1.5", "-1"):
            self.assertEqual(self.error("GET", f"/services?size={size}", 400), {
                "code": 9, "name": "invalid size",
                "message": "size must be an integer between 1 and 1000"})
        self.ok("GET", "/services?size=1000")
        self.ok("GET", "/services?size=1")

    def test_bad_offset(self) -> None:
        """
        An offset the store did not hand out is 400 Kong's invalid offset.
        """
        self.assertEqual(self.error("GET", "/services?offset=%21%21", 400), {
            "code": 7, "name": "invalid offset", "message": "'!!' is not a valid offset"})

    def test_tags_all(self) -> None:
        """
        C{?tags=a,b} lists the entities carrying both tags.
        """
        both = self.service("ab", tags=["a", "b"])
        self.service("a", tags=["a"])
        self.service("none")
        self.assertEqual(self.ok("GET", "/services?tags=a,b")["data"], [both])

    def test_tags_any(self) -> None:
        """
        C{?tags=a/b} lists the entities carrying either tag.
        """
        a = self.service("a", tags=["a"])
        b = self.service("b", tags=["b"])
        self.service("c", tags=["c"])
        self.assertEqual(self.ok("GET", "/services?tags=a/b")["data"], [a, b])

    def test_tags_in_next(self) -> None:
        """
        C{next} keeps the tag filter.
        """
        tagged = self.services(3, tags=["x y"])
        self.services(2)
        body = self.ok("GET", "/services?tags=x%20y&size=2")
        self.assertEqual(body["next"],
                         f"/services?offset={body['offset']}&size=2&tags=x%20y")
        self.assertEqual(body["data"] + self.ok("GET", body["next"])["data"], tagged)

    def test_bad_tags(self) -> None:
        """
        Tags mixing C{,} and C{/}, or an empty tag, are 400 invalid options.
        """
        for tags in ("a,b/c", "", "a,,b", "a/"):
            self.assertEqual(self.error("GET", f"/services?tags={tags}", 400), {
                "code": 11, "name": "invalid options",
                "message": "invalid option (tags: invalid filter syntax)",
                "options": {"tags": "invalid filter syntax"}}, tags)


class PutTests(AdminTestCase):
    """
    Tests for C{PUT /{entity}/{id or endpoint key}}: an upsert.
    """

    def test_create_by_name(self) -> None:
        """
        PUT by name creates the entity with that name: 200.
        """
        body = self.ok("PUT", "/services/foo", json_body={"host": "example.com"})
        self.assertEqual((body["name"], body["host"]), ("foo", "example.com"))
        self.assertEqual(self.store.tables["services"], {body["id"]: body})

    def test_replace_by_name(self) -> None:
        """
        PUT by name replaces the entity with that name, keeping its id and
        creation time; fields not given are back to their defaults.
        """
        old = self.service("foo", port=8080, retries=1)
        self.clock.advance(10)
        body = self.ok("PUT", "/services/foo", json_body={"host": "other.com"})
        self.assertEqual((body["id"], body["created_at"], body["updated_at"]),
                         (old["id"], NOW, NOW + 10))
        self.assertEqual((body["host"], body["port"], body["retries"]), ("other.com", 80, 5))
        self.assertEqual(len(self.store.tables["services"]), 1)

    def test_name_from_path(self) -> None:
        """
        The name in the path wins over one in the body.
        """
        body = self.ok("PUT", "/services/foo", json_body={"host": "h", "name": "bar"})
        self.assertEqual(body["name"], "foo")

    def test_create_by_id(self) -> None:
        """
        PUT by id creates the entity with that id.
        """
        id = "00000000-0000-4000-8000-0000000000aa"
        body = self.ok("PUT", f"/services/{id}", json_body={"host": "h", "name": "n"})
        self.assertEqual((body["id"], body["name"]), (id, "n"))
        self.assertEqual(list(self.store.tables["services"]), [id])

    def test_replace_by_id(self) -> None:
        """
        PUT by id replaces the entity with that id.
        """
        old = self.service("foo")
        body = self.ok("PUT", f"/services/{old['id']}", json_body={"host": "h2"})
        self.assertEqual((body["id"], body["name"], body["host"]), (old["id"], None, "h2"))

    def test_consumer_by_username(self) -> None:
        """
        PUT by a non-id key on consumers sets the username.
        """
        body = self.ok("PUT", "/consumers/alice", form={"custom_id": "c1"})
        self.assertEqual((body["username"], body["custom_id"]), ("alice", "c1"))

    def test_form(self) -> None:
        """
        PUT takes form bodies, typed.
        """
        body = self.ok("PUT", "/services/foo", form={"host": "h", "port": "81"})
        self.assertEqual(body["port"], 81)

    def test_invalid(self) -> None:
        """
        An invalid PUT is 400 and changes nothing.
        """
        old = self.service("foo")
        body = self.error("PUT", "/services/foo", 400, json_body={"port": "x"})
        self.assertEqual(body["code"], 2)
        self.assertEqual(self.store.tables["services"], {old["id"]: old})

    def test_plugin_by_name(self) -> None:
        """
        Plugins have no endpoint key: PUT needs an id.
        """
        body = self.error("PUT", "/plugins/echo", 400, json_body={"name": "echo"})
        self.assertEqual(body, {"code": 2, "name": "schema violation",
                                "message": "schema violation (id: expected a valid UUID)",
                                "fields": {"id": "expected a valid UUID"}})

    def test_plugin_by_id(self) -> None:
        """
        A plugin is created or replaced by id, its config typed from a form.
        """
        id = "00000000-0000-4000-8000-0000000000bb"
        body = self.ok("PUT", f"/plugins/{id}", form={"name": "echo", "config.limit": "3"})
        self.assertEqual((body["id"], body["config"]["limit"]), (id, 3))
        body = self.ok("PUT", f"/plugins/{id}", form={"name": "echo"})
        self.assertEqual(body["config"]["limit"], 10)


class PatchTests(AdminTestCase):
    """
    Tests for C{PATCH /{entity}/{id or endpoint key}}.
    """

    def test_json(self) -> None:
        """
        PATCH changes the fields given and keeps the others.
        """
        old = self.service("s", port=8080)
        self.clock.advance(3)
        body = self.ok("PATCH", "/services/s", json_body={"retries": 1})
        self.assertEqual((body["id"], body["port"], body["retries"], body["updated_at"]),
                         (old["id"], 8080, 1, NOW + 3))
        self.assertEqual(self.store.tables["services"][old["id"]], body)

    def test_form(self) -> None:
        """
        PATCH takes form bodies, typed.
        """
        self.service("s")
        self.assertEqual(self.ok("PATCH", "/services/s", form={"port": "81"})["port"], 81)

    def test_multipart(self) -> None:
        """
        PATCH takes multipart bodies, typed.
        """
        self.service("s")
        body = self.ok("PATCH", "/services/s", body=multipart(("port", b"82")),
                       content_type=MULTIPART)
        self.assertEqual(body["port"], 82)

    def test_plugin_config_form(self) -> None:
        """
        A plugin's config in a PATCH form is typed by the existing plugin's schema.
        """
        plugin = self.ok("POST", "/plugins", 201, json_body={"name": "echo"})
        body = self.ok("PATCH", f"/plugins/{plugin['id']}", form={"config.limit": "7"})
        self.assertEqual(body["config"], {"header": "X-Echo", "limit": 7})

    def test_missing(self) -> None:
        """
        PATCH of a missing entity is 404.
        """
        self.assertEqual(self.error("PATCH", "/services/nope", 404, json_body={"port": 1}),
                         NOT_FOUND)

    def test_invalid(self) -> None:
        """
        An invalid PATCH is 400 and changes nothing.
        """
        old = self.service("s")
        body = self.error("PATCH", "/services/s", 400, json_body={"port": 70000})
        self.assertEqual(list(body["fields"]), ["port"])
        self.assertEqual(self.store.tables["services"][old["id"]], old)

    def test_unique(self) -> None:
        """
        PATCH to a taken name is 409.
        """
        self.service("a")
        self.service("b")
        self.assertEqual(self.error("PATCH", "/services/b", 409, json_body={"name": "a"})["code"], 5)


class DeleteTests(AdminTestCase):
    """
    Tests for C{DELETE /{entity}/{id or endpoint key}}.
    """

    def test_delete(self) -> None:
        """
        DELETE by id or name is 204 and the entity is gone.
        """
        a = self.service("a")
        self.service("b")
        answer = self.call("DELETE", f"/services/{a['id']}")
        self.assertEqual((answer.status, answer.raw), (204, b""))
        self.ok("DELETE", "/services/b", 204)
        self.assertEqual(self.store.tables["services"], {})

    def test_absent(self) -> None:
        """
        Deleting what does not exist is 204 too.
        """
        self.ok("DELETE", "/services/nope", 204)
        self.ok("DELETE", "/plugins/00000000-0000-4000-8000-0000000000cc", 204)

    def test_referenced(self) -> None:
        """
        A service that routes reference cannot be deleted: 400.
        """
        service = self.service("s")
        self.route(service)
        body = self.error("DELETE", "/services/s", 400)
        self.assertEqual(body["message"],
                         "an existing 'routes' entity references this 'services' entity")
        self.assertIn(service["id"], self.store.tables["services"])

    def test_cascade(self) -> None:
        """
        Deleting a service deletes the plugins scoped to it.
        """
        self.service("s")
        self.ok("POST", "/services/s/plugins", 201, json_body={"name": "echo"})
        self.ok("DELETE", "/services/s", 204)
        self.assertEqual(self.store.tables["plugins"], {})


class NestedTests(AdminTestCase):
    """
    Tests for nested endpoints such as C{/services/{s}/routes}.
    """

    def test_create_fills_foreign_key(self) -> None:
        """
        POST under a parent sets the child's foreign key to it, whatever
        the body says.
        """
        service = self.service("s")
        other = self.service("o")
        body = self.ok("POST", "/services/s/routes", 201,
                       json_body={"paths": ["/x"], "service": {"id": other["id"]}})
        self.assertEqual(body["service"], {"id": service["id"]})
        body = self.ok("POST", f"/services/{service['id']}/routes", 201, form={"paths": "/y"})
        self.assertEqual((body["service"], body["paths"]), ({"id": service["id"]}, ["/y"]))

    def test_list_only_parents(self) -> None:
        """
        GET under a parent lists only that parent's children.
        """
        s = self.service("s")
        o = self.service("o")
        mine = [self.route(s, "r1"), self.route(s, "r2")]
        self.route(o, "r3")
        self.route(None, "r4", hosts=["h"])
        self.assertEqual(self.ok("GET", "/services/s/routes"), {"data": mine, "next": None})

    def test_list_pages(self) -> None:
        """
        Nested lists page, their C{next} under the parent's id.
        """
        s = self.service("s")
        mine = [self.route(s) for _ in range(3)]
        body = self.ok("GET", "/services/s/routes?size=2")
        self.assertEqual(body["next"],
                         f"/services/{s['id']}/routes?offset={body['offset']}&size=2")
        self.assertEqual(body["data"] + self.ok("GET", body["next"])["data"], mine)

    def test_plugins_under_each_parent(self) -> None:
        """
        Plugins nest under services, routes and consumers.
        """
        service = self.service("s")
        route = self.route(service, "r")
        consumer = self.ok("POST", "/consumers", 201, json_body={"username": "u"})
        for parent, field, record in (("services/s", "service", service),
                                      ("routes/r", "route", route),
                                      ("consumers/u", "consumer", consumer)):
            body = self.ok("POST", f"/{parent}/plugins", 201,
                           form={"name": "echo", "config.limit": "2"})
            self.assertEqual((body[field], body["config"]["limit"]), ({"id": record["id"]}, 2))
            self.assertEqual(self.ok("GET", f"/{parent}/plugins")["data"], [body])
            self.assertEqual(self.ok("GET", f"/{parent}/plugins/{body['id']}"), body)

    def test_missing_parent(self) -> None:
        """
        Any nested endpoint under a missing parent is 404.
        """
        for method, path in (("GET", "/services/nope/routes"),
                             ("POST", "/services/nope/routes"),
                             ("GET", "/consumers/nope/plugins"),
                             ("GET", "/services/nope/routes/r"),
                             ("PUT", "/services/nope/routes/r"),
                             ("PATCH", "/services/nope/routes/r"),
                             ("DELETE", "/services/nope/routes/r")):
            self.assertEqual(self.error(method, path, 404, json_body={"paths": ["/"]}),
                             NOT_FOUND, (method, path))

    def test_child(self) -> None:
        """
        C{/services/{s}/routes/{r}} is the route when it belongs to the service.
        """
        service = self.service("s")
        route = self.route(service, "r")
        self.assertEqual(self.ok("GET", "/services/s/routes/r"), route)
        self.assertEqual(self.ok("GET", f"/services/{service['id']}/routes/{route['id']}"), route)

    def test_child_of_another(self) -> None:
        """
        A child that belongs to another parent (or none, or does not exist) is 404.
        """
        self.service("s")
        other = self.service("o")
        self.route(other, "r")
        self.route(None, "free", hosts=["h"])
        for name in ("r", "free", "nope"):
            for method in ("GET", "PATCH", "DELETE"):
                self.assertEqual(self.error(method, f"/services/s/routes/{name}", 404,
                                            json_body={"paths": ["/z"]}), NOT_FOUND)

    def test_patch_child(self) -> None:
        """
        PATCH of a child keeps it under its parent.
        """
        service = self.service("s")
        self.route(service, "r")
        body = self.ok("PATCH", "/services/s/routes/r", form={"paths": "/new"})
        self.assertEqual((body["paths"], body["service"]), (["/new"], {"id": service["id"]}))

    def test_put_child(self) -> None:
        """
        PUT of a child creates or replaces it under the parent.
        """
        service = self.service("s")
        body = self.ok("PUT", "/services/s/routes/r", json_body={"paths": ["/a"]})
        self.assertEqual((body["name"], body["service"]), ("r", {"id": service["id"]}))
        again = self.ok("PUT", "/services/s/routes/r", json_body={"paths": ["/b"]})
        self.assertEqual((again["id"], again["paths"]), (body["id"], ["/b"]))

    def test_delete_child(self) -> None:
        """
        DELETE of a child is 204 and deletes only it.
        """
        service = self.service("s")
        self.route(service, "r")
        self.ok("DELETE", "/services/s/routes/r", 204)
        self.assertEqual(self.store.tables["routes"], {})
        self.assertIn(service["id"], self.store.tables["services"])
        self.assertEqual(self.changes, 3)


class RouteServiceTests(AdminTestCase):
    """
    Tests for C{/routes/{r}/service}.
    """

    def test_get(self) -> None:
        """
        GET is the route's service.
        """
        service = self.service("s")
        self.route(service, "r")
        self.assertEqual(self.ok("GET", "/routes/r/service"), service)

    def test_no_service(self) -> None:
        """
        A route without a service, or no route, is 404.
        """
        self.route(None, "r", hosts=["h"])
        for method in ("GET", "PATCH", "DELETE"):
            for path in ("/routes/r/service", "/routes/nope/service"):
                self.assertEqual(self.error(method, path, 404, json_body={"port": 1}), NOT_FOUND)
        self.assertEqual(self.error("PUT", "/routes/nope/service", 404,
                                    json_body={"host": "h"}), NOT_FOUND)

    def test_patch(self) -> None:
        """
        PATCH changes the route's service.
        """
        self.route(self.service("s"), "r")
        self.assertEqual(self.ok("PATCH", "/routes/r/service", form={"port": "99"})["port"], 99)
        self.assertEqual(self.ok("GET", "/services/s")["port"], 99)

    def test_put_replaces(self) -> None:
        """
        PUT replaces the route's service, keeping its id.
        """
        service = self.service("s", port=99)
        self.route(service, "r")
        body = self.ok("PUT", "/routes/r/service", json_body={"host": "new.com"})
        self.assertEqual((body["id"], body["host"], body["port"]), (service["id"], "new.com", 80))

    def test_put_creates(self) -> None:
        """
        PUT on a route without a service creates one and links the route to it.
        """
        self.route(None, "r", hosts=["h"])
        body = self.ok("PUT", "/routes/r/service", json_body={"host": "new.com"})
        self.assertEqual(self.ok("GET", "/routes/r")["service"], {"id": body["id"]})
        self.assertEqual(self.changes, 2)

    def test_put_invalid(self) -> None:
        """
        An invalid PUT stores nothing.
        """
        self.route(None, "r", hosts=["h"])
        self.assertEqual(self.error("PUT", "/routes/r/service", 400, json_body={})["code"], 2)

    def test_delete(self) -> None:
        """
        A route's service cannot be deleted through the route: 405.
        """
        self.route(self.service("s"), "r")
        self.assertEqual(self.error("DELETE", "/routes/r/service", 405),
                         {"message": "Method not allowed"})
