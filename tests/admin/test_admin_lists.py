"""
Tests for the Admin API's reads: one entity by id or endpoint key, and
lists with pages, sizes and tags (see L{tests.admin.test_admin}).
"""
from __future__ import annotations

from typing import Any

from tests.admin.test_admin import NOT_FOUND, AdminTestCase


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
            self.assertEqual(self.error("GET", path, 404), NOT_FOUND, f"row path={path!r}")

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
                "message": "size must be an integer between 1 and 1000"}, f"row size={size!r}")
        self.ok("GET", "/services?size=1000")
        self.ok("GET", "/services?size=1")

    def test_bad_offset(self) -> None:
        """
        An offset the store did not hand out is 400 Kong's invalid offset.
        """
        self.assertEqual(self.error("GET", "/services?offset=%21%21", 400), {
            "code": 7, "name": "invalid offset",
            "message": "'!!' is not a valid offset: bad base64 encoding"})

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
