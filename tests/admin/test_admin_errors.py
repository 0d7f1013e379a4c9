"""
Tests for the shape of the Admin API's schema violations: errors on an
array's elements come back as Kong's array (C{null} for each good
element), and text that is not UTF-8 never breaks an answer.
"""
from __future__ import annotations

from tests.admin.test_admin import AdminTestCase


class ArrayErrorShapeTests(AdminTestCase):
    """
    C{fields} of an array field is an array, as Kong answers it.
    """

    def test_secondPath(self) -> None:
        """
        POST /routes {"paths": ["/ok", "nope"]}: fields.paths is [null, message].
        """
        body = self.error("POST", "/routes", 400, json_body={"paths": ["/ok", "nope"]})
        message = "should start with: / (fixed path) or ~/ (regex path)"
        self.assertEqual(body["fields"], {"paths": [None, message]})
        self.assertEqual(body["message"], f"schema violation (paths.2: {message})")

    def test_firstAndThird(self) -> None:
        """
        Bad first and third elements: [message, null, message].
        """
        body = self.error("POST", "/routes", 400, json_body={"hosts": ["a b", "ok.test", "c d"]})
        self.assertEqual(body["fields"], {"hosts": ["invalid hostname: a b", None, "invalid hostname: c d"]})

    def test_tags(self) -> None:
        """
        A bad tag reads the same way: fields.tags is an array.
        """
        body = self.error("POST", "/consumers", 400, json_body={"username": "u", "tags": ["ok", "a,b"]})
        self.assertEqual(body["fields"]["tags"][0], None)
        self.assertTrue(body["fields"]["tags"][1].startswith("invalid tag 'a,b'"))

    def test_form(self) -> None:
        """
        From a form too (hosts[]=ok.test&hosts[]=a%20b).
        """
        body = self.error("POST", "/routes", 400, form=[("hosts[]", "ok.test"), ("hosts[]", "a b")])
        self.assertEqual(body["fields"], {"hosts": [None, "invalid hostname: a b"]})

    def test_pluginConfig(self) -> None:
        """
        Plugin config errors stay objects keyed by field (config.x), as before.
        """
        body = self.error("POST", "/plugins", 400, json_body={"name": "echo", "config": {"limit": "x"}})
        self.assertEqual(body["fields"], {"config": {"limit": "expected an integer"}})

    def test_nestedInConfig(self) -> None:
        """
        An array inside a plugin config is an array in the answer.
        """
        from echogate.schema import Array, Record, String
        from tests.admin.test_admin import FakePlugin

        self.api = self.make_api(plugins={"lists": FakePlugin("lists", config_schema=Record({
            "names": Array(String())}))})
        from treq.testing import StubTreq

        self.treq = StubTreq(self.api.resource())
        body = self.error("POST", "/plugins", 400, json_body={"name": "lists", "config": {"names": ["a", 1]}})
        self.assertEqual(body["fields"], {"config": {"names": [None, "expected a string"]}})
        self.assertEqual(body["message"], "schema violation (config.names.2: expected a string)")


class UnencodableTextTests(AdminTestCase):
    """
    A lone surrogate repeated in an answer is escaped, never an HTML 500.
    """

    def test_surrogateInMessage(self) -> None:
        """
        An unknown field named "\\ud800" comes back as JSON naming it.
        """
        body = self.error("POST", "/consumers", 400, body=b'{"username": "u", "\\ud800": 1}',
                          content_type="application/json")
        self.assertEqual(body["fields"], {"\ud800": "unknown field"})
