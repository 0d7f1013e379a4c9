"""
The Admin API's C{/tags}, C{/schemas/{entity}/validate} and
C{/endpoints}, against the real PostgreSQL over real sockets; and the
writing of C{/endpoints} from a routing map.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.trial import unittest

from echogate.admin.endpoints import endpoints
from tests.gateway import start_gateway

URL = "http://127.0.0.1:1"


class CompletenessOnPostgresTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.gw = await start_gateway(self)

    async def ok(self, method: str, path: str, code: int = 200, **kw: Any) -> Any:
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer)
        return answer.json()

    async def tagged(self) -> dict[str, dict[str, Any]]:
        """
        A service, a route, a consumer and an upstream tagged C{t} (and
        other tags); keyed by entity name.
        """
        return {
            "services": await self.ok("POST", "/services", 201,
                                      json={"name": "s", "url": URL, "tags": ["t", "svc"]}),
            "routes": await self.ok("POST", "/services/s/routes", 201, json={"paths": ["/p"], "tags": ["t"]}),
            "consumers": await self.ok("POST", "/consumers", 201, json={"username": "c", "tags": ["other", "t"]}),
            "upstreams": await self.ok("POST", "/upstreams", 201, json={"name": "u", "tags": ["t"]}),
        }

    async def test_tags(self) -> None:
        """
        C{GET /tags} lists one row per tag of every tagged entity, ordered
        by entity id, in Kong's shape.
        """
        records = await self.tagged()
        await self.ok("POST", "/consumers", 201, json={"username": "untagged"})
        body = await self.ok("GET", "/tags")
        expected = sorted(
            ({"entity_name": name, "entity_id": record["id"], "tag": tag}
             for name, record in records.items() for tag in record["tags"]),
            key=lambda row: (row["entity_id"], row["entity_name"]))
        self.assertEqual(body, {"data": expected, "next": None})

    async def test_oneTag(self) -> None:
        """
        C{GET /tags/{tag}} lists the entities carrying that tag, of every
        type; an unknown tag lists nothing.
        """
        records = await self.tagged()
        body = await self.ok("GET", "/tags/t")
        self.assertEqual(body["next"], None)
        self.assertEqual(sorted((row["entity_name"], row["entity_id"], row["tag"]) for row in body["data"]),
                         sorted((name, record["id"], "t") for name, record in records.items()))
        self.assertEqual([row["entity_name"] for row in (await self.ok("GET", "/tags/svc"))["data"]],
                         ["services"])
        self.assertEqual(await self.ok("GET", "/tags/nobody"), {"data": [], "next": None})

    async def test_tagPages(self) -> None:
        """
        C{/tags} and C{/tags/{tag}} are paged by C{size}, and their C{next}
        links (with C{offset} and C{size}) lead through every row once.
        """
        await self.tagged()
        every = (await self.ok("GET", "/tags"))["data"]
        for path, wanted in [("/tags", every), ("/tags/t", [r for r in every if r["tag"] == "t"])]:
            seen: list[dict[str, Any]] = []
            link: str | None = f"{path}?size=2"
            pages = 0
            while link is not None:
                body = await self.ok("GET", link)
                self.assertLessEqual(len(body["data"]), 2)
                seen += body["data"]
                link = body["next"]
                if link is not None:
                    self.assertEqual(link, f"{path}?offset={quote(body['offset'], safe='')}&size=2")
                pages += 1
            self.assertEqual(seen, wanted)
            self.assertEqual(pages, (len(wanted) + 1) // 2)

    async def test_tagPagingErrors(self) -> None:
        """
        A bad C{size} or C{offset} is answered as the entity lists answer
        them (400, codes 9 and 7).
        """
        self.assertEqual((await self.ok("GET", "/tags?size=0", 400))["code"], 9)
        self.assertEqual((await self.ok("GET", "/tags/t?offset=bogus", 400))["code"], 7)

    async def test_unstorableTag(self) -> None:
        """
        A tag no record can carry (with a NUL) lists nothing.
        """
        await self.tagged()
        self.assertEqual(await self.ok("GET", "/tags/a%00b"), {"data": [], "next": None})

    async def test_validate(self) -> None:
        """
        C{POST /schemas/{entity}/validate} accepts a valid body, JSON or
        form, and stores nothing.
        """
        valid = {"message": "schema validation successful"}
        self.assertEqual(await self.ok("POST", "/schemas/services/validate", json={"name": "s", "url": URL}),
                         valid)
        self.assertEqual(await self.ok("POST", "/schemas/consumers/validate", data={"username": "c"}), valid)
        self.assertEqual(await self.ok("POST", "/schemas/routes/validate", json={"paths": ["/p"]}), valid)
        self.assertEqual((await self.ok("GET", "/services"))["data"], [])
        self.assertEqual((await self.ok("GET", "/consumers"))["data"], [])

    async def test_validateInvalid(self) -> None:
        """
        An invalid body is the 400 schema violation a POST would answer,
        every bad field named; nothing is stored.
        """
        body = await self.ok("POST", "/schemas/services/validate", 400,
                             json={"name": "s", "port": "abc", "path": "nope"})
        self.assertEqual((body["code"], body["name"]), (2, "schema violation"))
        self.assertEqual(set(body["fields"]), {"host", "port", "path"})
        body = await self.ok("POST", "/schemas/routes/validate", 400, json={"paths": "/p"})
        self.assertEqual(body["name"], "schema violation")
        self.assertEqual((await self.ok("POST", "/schemas/services/validate", 400, data=b"{",
                                        headers={"Content-Type": "application/json"}))["message"],
                         "Cannot parse JSON body")

    async def test_validateUnknownEntity(self) -> None:
        """
        Validating an entity there is none of is 404, as Kong answers.
        """
        self.assertEqual(await self.ok("POST", "/schemas/nope/validate", 404, json={}),
                         {"message": "No entity named 'nope'"})

    async def test_validatePlugin(self) -> None:
        """
        C{POST /schemas/plugins/validate} checks the config by the plugin
        named in the body, and a plugin that is not enabled.
        """
        self.assertEqual(await self.ok("POST", "/schemas/plugins/validate",
                                       json={"name": "rate-limiting", "config": {"minute": 10}}),
                         {"message": "schema validation successful"})
        body = await self.ok("POST", "/schemas/plugins/validate", 400,
                             json={"name": "rate-limiting", "config": {"minute": "many"}})
        self.assertIn("config", body["fields"])
        body = await self.ok("POST", "/schemas/plugins/validate", 400, json={"name": "no-such-plugin"})
        self.assertIn("name", body["fields"])
        self.assertEqual((await self.ok("GET", "/plugins"))["data"], [])

    async def test_pluginSchemaStillServed(self) -> None:
        """
        C{GET /schemas/plugins/{name}} is not taken by the validate
        endpoint: C{validate} is looked up as a plugin's name.
        """
        self.assertEqual(await self.ok("GET", "/schemas/plugins/validate", 404),
                         {"message": "No plugin named 'validate'"})
        self.assertIn("fields", await self.ok("GET", "/schemas/plugins/rate-limiting"))

    async def test_endpoints(self) -> None:
        """
        C{GET /endpoints} lists the API's paths, placeholders in Kong's
        names, sorted segment by segment.
        """
        data = (await self.ok("GET", "/endpoints"))["data"]
        for path in ["/", "/endpoints", "/services", "/services/{services}",
                     "/services/{services}/routes/{routes}", "/consumers/{consumers}/key-auth",
                     "/schemas/{entity}", "/schemas/{entity}/validate", "/schemas/plugins/validate",
                     "/tags", "/tags/{tags}", "/upstreams/{upstreams}/targets/{targets}/{address}/healthy"]:
            self.assertIn(path, data)
        self.assertEqual(data, sorted(data, key=lambda p: p.replace("/", "\x00")))
        self.assertEqual(len(data), len(set(data)))
        self.assertLess(data.index("/a" + "cls/{acls}"), data.index("/basic-auths"))


class EndpointsTests(unittest.SynchronousTestCase):
    """
    L{endpoints} writes the paths of a routing map.
    """

    def test_fromTheMap(self) -> None:
        """
        Every rule is listed, C{any(...)} expanded, variables named after
        a collection that is an endpoint itself, else by their own name.
        """
        app = Klein()
        rules = ["/", "/<any(a, ab):kind>", "/a/<key>", "/a/<key>/z", "/x/<name>", "/ab/<key>/<any(k):c>"]
        for number, rule in enumerate(rules):
            app.route(rule, endpoint=f"e{number}")(lambda request: b"")
        self.assertEqual(endpoints(app.url_map),
                         ["/", "/a", "/a/{a}", "/a/{a}/z", "/ab", "/ab/{ab}/k", "/x/{name}"])

    def test_newRouteListed(self) -> None:
        """
        A route added to the map is listed (the list is not kept by hand).
        """
        app = Klein()
        app.route("/one", endpoint="one")(lambda request: b"")
        before = endpoints(app.url_map)
        app.route("/two/<thing>", methods=["POST"], endpoint="two")(lambda request: b"")
        self.assertEqual(before, ["/one"])
        self.assertEqual(endpoints(app.url_map), ["/one", "/two/{thing}"])
