"""
The Admin API against the real PostgreSQL, over real sockets: each error
class with its Kong-shaped body, and nothing stored by a bad request.
"""
from __future__ import annotations

from twisted.trial import unittest

from tests.gateway import start_gateway


class AdminOnPostgresTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.gw = await start_gateway(self)

    async def count(self, collection: str) -> int:
        return len((await self.gw.admin("GET", f"/{collection}")).json()["data"])

    async def test_schemaViolationStoresNothing(self) -> None:
        """
        A bad body: 400 listing every bad field, and nothing stored.
        """
        answer = await self.gw.admin("POST", "/services", data={"name": "x", "port": "abc", "path": "nope"})
        self.assertEqual(answer.code, 400)
        body = answer.json()
        self.assertEqual((body["code"], body["name"]), (2, "schema violation"))
        self.assertEqual(set(body["fields"]), {"host", "port", "path"})
        self.assertEqual(await self.count("services"), 0)

    async def test_uniqueViolation(self) -> None:
        """
        A taken name: 409 from the database's unique constraint.
        """
        body = {"name": "twice", "url": "http://127.0.0.1:1"}
        self.assertEqual((await self.gw.admin("POST", "/services", json=body)).code, 201)
        answer = await self.gw.admin("POST", "/services", json=body)
        self.assertEqual(answer.code, 409)
        self.assertEqual(answer.json()["code"], 5)
        self.assertEqual(answer.json()["fields"], {"name": "twice"})
        self.assertEqual(await self.count("services"), 1)

    async def test_deleteReferencedService(self) -> None:
        """
        Deleting a service that a route uses: 400, and both remain.
        """
        await self.gw.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:1"})
        await self.gw.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        answer = await self.gw.admin("DELETE", "/services/s")
        self.assertEqual(answer.code, 400)
        self.assertEqual(answer.json()["name"], "foreign key violation")
        self.assertEqual(await self.count("services"), 1)
        self.assertEqual(await self.count("routes"), 1)

    async def test_cascade(self) -> None:
        """
        Deleting a route deletes its plugins.
        """
        await self.gw.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:1"})
        route = (await self.gw.admin("POST", "/services/s/routes", json={"paths": ["/p"]})).json()
        await self.gw.admin("POST", f"/routes/{route['id']}/plugins", json={"name": "header-echo"})
        self.assertEqual(await self.count("plugins"), 1)
        self.assertEqual((await self.gw.admin("DELETE", f"/routes/{route['id']}")).code, 204)
        self.assertEqual(await self.count("plugins"), 0)

    async def test_notFoundAndMethods(self) -> None:
        """
        404 for an absent entity or path, 405 for a wrong method, 204 for
        deleting what is absent.
        """
        answer = await self.gw.admin("GET", "/services/absent")
        self.assertEqual(answer.code, 404)
        self.assertEqual((await self.gw.admin("GET", "/nowhere")).json(), {"message": "Not found"})
        self.assertEqual((await self.gw.admin("PATCH", "/services")).code, 405)
        self.assertEqual((await self.gw.admin("DELETE", "/services/absent")).code, 204)

    async def test_bodies(self) -> None:
        """
        Bad JSON is 400; an unsupported content type is 415.
        """
        answer = await self.gw.admin("POST", "/services", data=b"{nope",
                                     headers={"Content-Type": "application/json"})
        self.assertEqual(answer.code, 400)
        answer = await self.gw.admin("POST", "/services", data=b"name=x",
                                     headers={"Content-Type": "text/plain"})
        self.assertEqual(answer.code, 415)
        self.assertEqual(await self.count("services"), 0)

    async def test_pagesAndTags(self) -> None:
        """
        Lists page through the database with next links, and filter by tags.
        """
        for i in range(5):
            await self.gw.admin("POST", "/services", json={
                "name": f"s{i}", "url": "http://127.0.0.1:1", "tags": ["even" if i % 2 == 0 else "odd"]})
        seen, path = [], "/services?size=2"
        while path:
            page = (await self.gw.admin("GET", path)).json()
            seen += [s["name"] for s in page["data"]]
            path = page["next"]
        self.assertEqual(sorted(seen), [f"s{i}" for i in range(5)])
        evens = (await self.gw.admin("GET", "/services?tags=even")).json()["data"]
        self.assertEqual(sorted(s["name"] for s in evens), ["s0", "s2", "s4"])

    async def test_putUpsertsByName(self) -> None:
        """
        PUT by name creates, then replaces, keeping the id.
        """
        first = await self.gw.admin("PUT", "/services/named", json={"url": "http://127.0.0.1:1"})
        self.assertEqual(first.code, 200)
        second = await self.gw.admin("PUT", "/services/named", json={"url": "http://127.0.0.1:2"})
        self.assertEqual(second.json()["id"], first.json()["id"])
        self.assertEqual(second.json()["port"], 2)

    async def test_pluginErrors(self) -> None:
        """
        A plugin not enabled, a bad config field, and a duplicate on one scope.
        """
        answer = await self.gw.admin("POST", "/plugins", json={"name": "no-such"})
        self.assertEqual(answer.code, 400)
        self.assertIn("name", answer.json()["fields"])
        answer = await self.gw.admin("POST", "/plugins", json={"name": "header-echo", "config": {"nope": 1}})
        self.assertEqual(answer.code, 400)
        self.assertEqual(answer.json()["fields"], {"config": {"nope": "unknown field"}})
        self.assertEqual((await self.gw.admin("POST", "/plugins", json={"name": "header-echo"})).code, 201)
        self.assertEqual((await self.gw.admin("POST", "/plugins", json={"name": "header-echo"})).code, 409)
