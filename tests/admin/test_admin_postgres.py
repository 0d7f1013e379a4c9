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


class UnstorableTextTests(unittest.TestCase):
    """
    Text PostgreSQL cannot store (a NUL, a lone surrogate, a value longer
    than an index entry) is a Kong-shaped 400 naming the field, and
    nothing is stored; each test sends the attacker's exact body.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.gw = await start_gateway(self)

    async def refused(self, method: str, path: str, raw: bytes,
                      content_type: str = "application/json") -> dict:
        answer = await self.gw.admin(method, path, data=raw, headers={"Content-Type": content_type})
        self.assertEqual(answer.code, 400, answer.body)
        body = answer.json()
        self.assertEqual((body["code"], body["name"]), (2, "schema violation"))
        return body["fields"]

    async def count(self, collection: str) -> int:
        return len((await self.gw.admin("GET", f"/{collection}")).json()["data"])

    async def test_nulUsername(self) -> None:
        """
        POST /consumers {"username": "a\\u0000b"}: 400 naming username.
        """
        fields = await self.refused("POST", "/consumers", b'{"username": "a\\u0000b"}')
        self.assertEqual(fields, {"username": "invalid value: NUL character at position 2"})
        self.assertEqual(await self.count("consumers"), 0)

    async def test_nulInForm(self) -> None:
        """
        A form's %00 (custom_id=a%00): 400 naming custom_id.
        """
        fields = await self.refused("POST", "/consumers", b"custom_id=a%00", "application/x-www-form-urlencoded")
        self.assertEqual(fields, {"custom_id": "invalid value: NUL character at position 2"})

    async def test_nulEverywhere(self) -> None:
        """
        A NUL in a key, a service name, a route path, a plugin config value
        or a map key: 400 naming the field, nothing stored.
        """
        await self.gw.admin("POST", "/consumers", json={"username": "alice"})
        cases = [
            ("/consumers/alice/key-auth", b'{"key": "k\\u0000"}',
             {"key": "invalid value: NUL character at position 2"}),
            ("/services", b'{"name": "s\\u0000", "host": "example.com"}',
             {"name": "invalid value: NUL character at position 2"}),
            ("/routes", b'{"paths": ["/a\\u0000"]}', {"paths": ["invalid value: NUL character at position 3"]}),
            ("/routes", b'{"paths": ["/a"], "headers": {"x-a\\u0000": ["v"]}}',
             {"headers": "invalid value: NUL character at position 4"}),
            ("/plugins", b'{"name": "request-termination", "config": {"message": "m\\u0000"}}',
             {"config": {"message": "invalid value: NUL character at position 2"}}),
        ]
        for path, raw, expected in cases:
            self.assertEqual((path, await self.refused("POST", path, raw)), (path, expected),
                             f"row path={path!r} raw={raw!r} expected={expected!r}")
        for collection in ("key-auths", "services", "routes", "plugins"):
            self.assertEqual(await self.count(collection), 0, f"row collection={collection!r}")

    async def test_surrogateHost(self) -> None:
        """
        POST /services {"host": "\\ud800"}: a JSON 400 naming host (not an HTML 500).
        """
        fields = await self.refused("POST", "/services", b'{"host": "\\ud800"}')
        self.assertEqual(fields, {"host": "invalid utf-8 character sequence detected at position 1"})
        self.assertEqual(await self.count("services"), 0)

    async def test_surrogateUsername(self) -> None:
        """
        A lone surrogate in a consumer's username: 400, not 500.
        """
        fields = await self.refused("POST", "/consumers", b'{"username": "x\\udfff"}')
        self.assertEqual(fields, {"username": "invalid utf-8 character sequence detected at position 2"})

    async def test_hugeTag(self) -> None:
        """
        A 900 KB tag: 400 naming the tag (not 503), nothing stored.
        """
        raw = b'{"host": "example.com", "tags": ["' + b"t" * 900_000 + b'"]}'
        fields = await self.refused("POST", "/services", raw)
        self.assertEqual(fields, {"tags": ["length must be at most 512"]})
        self.assertEqual(await self.count("services"), 0)

    async def test_incompressibleName(self) -> None:
        """
        A consumer username of 600 random characters (too long for the
        unique index, which compression does not save): 400.
        """
        import random

        name = "".join(random.Random(1).choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(600))
        fields = await self.refused("POST", "/consumers", b'{"username": "' + name.encode() + b'"}')
        self.assertEqual(fields, {"username": "length must be at most 512"})

    async def test_longestName(self) -> None:
        """
        The longest username allowed, 512 four-byte characters, is stored.
        """
        answer = await self.gw.admin("POST", "/consumers", json={"username": "\U0001f600" * 512})
        self.assertEqual(answer.code, 201, answer.body)

    async def test_nulKeyInPath(self) -> None:
        """
        GET /consumers/a%00b is 404 (no 500); PUT there is a 400 naming username.
        """
        self.assertEqual((await self.gw.admin("GET", "/consumers/a%00b")).code, 404)
        fields = await self.refused("PUT", "/consumers/a%00b", b"{}")
        self.assertEqual(fields, {"username": "invalid value: NUL character at position 2"})
        self.assertEqual(await self.count("consumers"), 0)

    async def test_nulForeignKey(self) -> None:
        """
        A foreign key given by a name with a NUL: 400, not 500.
        """
        answer = await self.gw.admin("POST", "/routes", data=b'{"paths": ["/a"], "service": {"name": "s\\u0000"}}',
                                     headers={"Content-Type": "application/json"})
        self.assertEqual(answer.code, 400, answer.body)
