"""
Tests for the constraints L{echogate.store.postgres.PostgresStore} has PostgreSQL
enforce: unique names and plugin scopes, primary and foreign keys, and
cascades, each failing with Kong's error (see L{tests.store.test_postgres}).
"""
from __future__ import annotations

import uuid

from echogate.errors import ForeignKeyViolation, PrimaryKeyViolation, UniqueViolation
from tests.store.test_postgres import StoreTestCase, consumer, plugin, route, service


class ConstraintTests(StoreTestCase):
    """
    The database enforces unique names, foreign keys and cascades, and
    their errors are Kong's.
    """

    async def test_service_name_unique(self) -> None:
        """
        A second service with the same name is a L{UniqueViolation}.
        """
        await self.store.insert("services", service("mock-service"))
        e = await self.failure(self.store.insert("services", service("mock-service")),
                               UniqueViolation)
        self.assertEqual(e.body(), {
            "code": UniqueViolation.code, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{name=\"mock-service\"}'",
            "fields": {"name": "mock-service"}})
        self.assertEqual(await self.store.version(), 1)

    async def test_unique_on_update(self) -> None:
        """
        Renaming onto a taken name is a L{UniqueViolation} too.
        """
        await self.store.insert("services", service("a"))
        b = await self.store.insert("services", service("b"))
        e = await self.failure(self.store.update("services", dict(b, name="a")), UniqueViolation)
        self.assertEqual(e.fields, {"name": "a"})

    async def test_unnamed_services(self) -> None:
        """
        Any number of services may have no name.
        """
        await self.store.insert("services", service())
        await self.store.insert("services", service())
        records, _ = await self.store.page("services", 10)
        self.assertEqual(len(records), 2)

    async def test_route_name_unique(self) -> None:
        """
        Route names are unique.
        """
        await self.store.insert("routes", route(None, "r"))
        e = await self.failure(self.store.insert("routes", route(None, "r")), UniqueViolation)
        self.assertEqual(e.fields, {"name": "r"})

    async def test_consumer_username_unique(self) -> None:
        """
        Consumer usernames are unique.
        """
        await self.store.insert("consumers", consumer("alice"))
        e = await self.failure(self.store.insert("consumers", consumer("alice")), UniqueViolation)
        self.assertEqual(e.fields, {"username": "alice"})

    async def test_consumer_custom_id_unique(self) -> None:
        """
        Consumer custom ids are unique.
        """
        await self.store.insert("consumers", consumer(custom_id="c1"))
        e = await self.failure(self.store.insert("consumers", consumer("bob", "c1")),
                               UniqueViolation)
        self.assertEqual(e.fields, {"custom_id": "c1"})

    async def test_plugin_scope_unique(self) -> None:
        """
        The same plugin twice on the same service is a L{UniqueViolation}
        naming the whole scope.
        """
        s = await self.store.insert("services", service())
        await self.store.insert("plugins", plugin(service=s["id"]))
        e = await self.failure(self.store.insert("plugins", plugin(service=s["id"])),
                               UniqueViolation)
        self.assertEqual(e.fields, {"name": "header-echo", "service": {"id": s["id"]},
                                    "route": None, "consumer": None})

    async def test_global_plugin_unique(self) -> None:
        """
        The same plugin twice globally (every scope null) is a
        L{UniqueViolation}: nulls are not distinct.
        """
        await self.store.insert("plugins", plugin())
        e = await self.failure(self.store.insert("plugins", plugin()), UniqueViolation)
        self.assertEqual(e.fields, {"name": "header-echo", "service": None, "route": None,
                                    "consumer": None})

    async def test_plugin_other_scopes(self) -> None:
        """
        The same plugin on different scopes, or different plugins on one
        scope, are fine.
        """
        s = await self.store.insert("services", service())
        c = await self.store.insert("consumers", consumer("alice"))
        await self.store.insert("plugins", plugin())
        await self.store.insert("plugins", plugin(service=s["id"]))
        await self.store.insert("plugins", plugin(service=s["id"], consumer=c["id"]))
        await self.store.insert("plugins", plugin("other", service=s["id"]))
        records, _ = await self.store.page("plugins", 10)
        self.assertEqual(len(records), 4)

    async def test_primary_key(self) -> None:
        """
        Inserting an id that exists is a L{PrimaryKeyViolation}.
        """
        record = await self.store.insert("services", service())
        e = await self.failure(self.store.insert("services", dict(record, name="other")),
                               PrimaryKeyViolation)
        self.assertEqual(e.fields, {"id": record["id"]})
        self.assertEqual(e.message, f"primary key violation on key '{{id=\"{record['id']}\"}}'")

    async def test_missing_service(self) -> None:
        """
        A route naming a service that does not exist is a
        L{ForeignKeyViolation} in Kong's words.
        """
        missing = str(uuid.uuid4())
        e = await self.failure(self.store.insert("routes", route(missing)), ForeignKeyViolation)
        self.assertEqual(e.body(), {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": f"the foreign key '{{id=\"{missing}\"}}' does not reference an"
                       " existing 'services' entity.",
            "fields": {"service": {"id": missing}}})

    async def test_plugin_missing_references(self) -> None:
        """
        A plugin naming a missing route or consumer is a
        L{ForeignKeyViolation} on that field.
        """
        missing = str(uuid.uuid4())
        e = await self.failure(self.store.insert("plugins", plugin(route=missing)),
                               ForeignKeyViolation)
        self.assertEqual(e.fields, {"route": {"id": missing}})
        e = await self.failure(self.store.upsert("plugins", plugin(consumer=missing)),
                               ForeignKeyViolation)
        self.assertEqual(e.fields, {"consumer": {"id": missing}})

    async def test_referenced_service(self) -> None:
        """
        Deleting a service that a route references is a
        L{ForeignKeyViolation} and deletes nothing.
        """
        s = await self.store.insert("services", service())
        await self.store.insert("routes", route(s["id"]))
        e = await self.failure(self.store.delete("services", s["id"]), ForeignKeyViolation)
        self.assertEqual(e.body(), {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"}})
        self.assertIsNotNone(await self.store.get("services", s["id"]))

    async def test_cascades(self) -> None:
        """
        Deleting a service, route or consumer deletes the plugins on it.
        """
        s = await self.store.insert("services", service())
        r = await self.store.insert("routes", route(None))
        c = await self.store.insert("consumers", consumer("alice"))
        kept = await self.store.insert("plugins", plugin())
        for p in (plugin(service=s["id"]), plugin(route=r["id"]), plugin(consumer=c["id"])):
            await self.store.insert("plugins", p)
        await self.store.delete("services", s["id"])
        await self.store.delete("routes", r["id"])
        await self.store.delete("consumers", c["id"])
        self.assertEqual((await self.store.page("plugins", 10))[0], [kept])
