"""
Tests for the Admin API's writes: POST, PUT, PATCH and DELETE of
services, routes, consumers and plugins (see L{tests.admin.test_admin}).
"""
from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from echogate.errors import ForeignKeyViolation
from tests.admin.test_admin import NOT_FOUND, NOW, AdminTestCase
from tests.pdk.test_bodies import MULTIPART, multipart
from tests.storefake import MemoryStore


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
        PUT by id (in any case) replaces the entity with that id, keeping
        its creation time.
        """
        old = self.service("foo")
        self.clock.advance(1)
        body = self.ok("PUT", f"/services/{old['id'].upper()}", json_body={"host": "h2"})
        self.assertEqual((body["id"], body["name"], body["host"], body["created_at"]),
                         (old["id"], None, "h2", NOW))
        self.assertEqual(list(self.store.tables["services"]), [old["id"]])

    def test_id_from_path(self) -> None:
        """
        The id in the path wins over one in the body.
        """
        id = "00000000-0000-4000-8000-0000000000aa"
        body = self.ok("PUT", f"/services/{id}",
                       json_body={"host": "h", "id": "00000000-0000-4000-8000-0000000000ab"})
        self.assertEqual(body["id"], id)

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

    def test_deleted_meanwhile(self) -> None:
        """
        An entity deleted by someone else between lookup and delete is 204,
        and nothing changed here.
        """
        class VanishingStore(MemoryStore):
            def delete(self, entity: str, id: str) -> Deferred[bool]:
                return succeed(False)

        self.store = VanishingStore()
        self.treq = StubTreq(self.make_api().resource())
        self.service("s")
        self.ok("DELETE", "/services/s", 204)
        self.assertEqual(self.changes, 1)

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
