"""
Tests for L{echogate.balancer.hashkey}.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.balancer.hashkey import HashCookie, HashKey, RequestView, hash_key


def upstream(**fields: Any) -> dict[str, Any]:
    """
    An upstream record's hashing fields.
    """
    record: dict[str, Any] = {"hash_on": "none", "hash_fallback": "none",
                              "hash_on_cookie_path": "/"}
    record.update(fields)
    return record


VIEW = RequestView(
    consumer_id=None, credential_id="cred", client_ip="10.0.0.1", path="/p",
    header=lambda name: {"x-id": ["1", "2"], "x-one": "solo"}.get(name.lower()),
    cookie=lambda name: {"sess": "abc"}.get(name),
    query_arg=lambda name: {"q": ["z", "a"], "flag": ""}.get(name),
    uri_captures={"user": "bob", 1: "first"})


class HashKeyTests(SynchronousTestCase):
    """
    Tests for L{hash_key}.
    """

    def key(self, **fields: Any) -> str | None:
        """
        The key of L{VIEW} for an upstream with C{fields}.
        """
        return hash_key(upstream(**fields), VIEW).value

    def test_none(self) -> None:
        """
        C{hash_on = none} gives no key, whatever the fallback.
        """
        self.assertEqual(hash_key(upstream(hash_fallback="ip"), VIEW), HashKey(None))

    def test_sources(self) -> None:
        """
        Each C{hash_on} reads its part of the request.
        """
        self.assertEqual(self.key(hash_on="ip"), "10.0.0.1")
        self.assertEqual(self.key(hash_on="consumer"), "cred")
        self.assertEqual(self.key(hash_on="path"), "/p")
        self.assertEqual(self.key(hash_on="header", hash_on_header="X-Id"), "1, 2")
        self.assertEqual(self.key(hash_on="header", hash_on_header="x-one"), "solo")
        self.assertEqual(self.key(hash_on="cookie", hash_on_cookie="sess"), "abc")
        self.assertEqual(self.key(hash_on="query_arg", hash_on_query_arg="q"), "a,z")
        self.assertEqual(self.key(hash_on="query_arg", hash_on_query_arg="flag"), "")
        self.assertEqual(self.key(hash_on="uri_capture", hash_on_uri_capture="user"), "bob")
        self.assertEqual(self.key(hash_on="uri_capture", hash_on_uri_capture="1"), "first")

    def test_consumer_first(self) -> None:
        """
        C{consumer} is the consumer's id when there is one.
        """
        view = RequestView(consumer_id="c1", credential_id="cred")
        self.assertEqual(hash_key(upstream(hash_on="consumer"), view).value, "c1")

    def test_fallback(self) -> None:
        """
        A missing primary falls back, with the fallback's own field names.
        """
        self.assertEqual(self.key(hash_on="header", hash_on_header="x-missing",
                                  hash_fallback="header", hash_fallback_header="x-one"), "solo")
        self.assertEqual(self.key(hash_on="query_arg", hash_on_query_arg="nope",
                                  hash_fallback="ip"), "10.0.0.1")
        self.assertEqual(self.key(hash_on="uri_capture", hash_on_uri_capture="nope",
                                  hash_fallback="uri_capture",
                                  hash_fallback_uri_capture="user"), "bob")
        self.assertIsNone(self.key(hash_on="header", hash_on_header="x-missing",
                                   hash_fallback="none"))
        self.assertIsNone(self.key(hash_on="header", hash_on_header="x-missing",
                                   hash_fallback="query_arg", hash_fallback_query_arg="nope"))

    def test_cookie_made(self) -> None:
        """
        A missing hash cookie is made, used as the key and handed back to be
        set; the fallback is not consulted.
        """
        found = hash_key(upstream(hash_on="cookie", hash_on_cookie="other",
                                  hash_on_cookie_path="/app", hash_fallback="ip"),
                         VIEW, new_value=lambda: "new-id")
        self.assertEqual(found, HashKey("new-id", HashCookie("other", "new-id", "/app")))
