"""
Tests for the Admin API's nested endpoints: C{/services/{s}/routes},
the plugins of services, routes and consumers, and C{/routes/{r}/service}
(see L{tests.admin.test_admin}).
"""
from __future__ import annotations

from tests.admin.test_admin import NOT_FOUND, AdminTestCase


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
            self.assertEqual((body[field], body["config"]["limit"]), ({"id": record["id"]}, 2),
                             f"row parent={parent!r} field={field!r} record={record!r}")
            self.assertEqual(self.ok("GET", f"/{parent}/plugins")["data"], [body],
                             f"row parent={parent!r} field={field!r} record={record!r}")
            self.assertEqual(self.ok("GET", f"/{parent}/plugins/{body['id']}"), body,
                             f"row parent={parent!r} field={field!r} record={record!r}")

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
                                            json_body={"paths": ["/z"]}), NOT_FOUND,
                                 f"row name={name!r} method={method!r}")

    def test_patch_child(self) -> None:
        """
        PATCH of a child keeps it under its parent unless the body moves it.
        """
        service = self.service("s")
        other = self.service("o")
        self.route(service, "r")
        body = self.ok("PATCH", "/services/s/routes/r", form={"paths": "/new"})
        self.assertEqual((body["paths"], body["service"]), (["/new"], {"id": service["id"]}))
        body = self.ok("PATCH", "/services/s/routes/r", form={"service.id": other["id"]})
        self.assertEqual(body["service"], {"id": other["id"]})

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
                self.assertEqual(self.error(method, path, 404, json_body={"port": 1}), NOT_FOUND,
                                 f"row method={method!r} path={path!r}")
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
