"""
An attacker's requests against the Admin API endpoints added in session
10 (C{/config}, C{/tags}, C{/endpoints}, plugin entities, target health),
each sent as the attacker would, over a L{MemoryStore} or a DB-less
L{DeclaredStore}. No sockets.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from echogate.admin import AdminAPI
from echogate.declarative.dbless import DBlessConfiguration
from echogate.pdk.cache import Caches
from echogate.store.declared import DeclaredStore
from tests.admin.test_admin import NODE, NOW, AdminTestCase, ids
from tests.admin.test_admin_guard import GuardTestCase, post, send_raw
from tests.certs import make_self_signed
from tests.examples import example_module

_tokens = example_module("entity-plugin", "tokens_plugin")
PLUGINS = {"token-auth": _tokens.TokenAuth()}

CONFIG = json.dumps({"_format_version": "3.0",
                     "services": [{"name": "evil", "url": "http://evil.example"}]}).encode()


def billion_laughs(levels: int) -> bytes:
    """
    A YAML document of a few hundred bytes whose aliases expand it to
    C{9 ** levels} strings.
    """
    lines = ['_format_version: "3.0"', "_comment: x", "services:",
             "- name: s", "  url: http://x.example", '  tags: &a0 ["l","l","l","l","l","l","l","l","l"]']
    for n in range(1, levels + 1):
        lines.append(f"- &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


class GuardedEndpointTests(GuardTestCase):
    """
    Every new endpoint is behind L{AdminGuard <echogate.admin.guard.AdminGuard>}:
    a browser's cross-origin change, a rebound host name and a missing
    token are refused before the endpoint runs.
    """

    token = "s3cret"

    def setUp(self) -> None:
        declared = DeclaredStore()
        self.dbless = DBlessConfiguration(declared, PLUGINS)
        clock = Clock()
        clock.advance(NOW)
        self.api = AdminAPI(store=declared, plugins=PLUGINS, clock=clock, node=NODE, new_id=ids(),
                            token=self.token, dbless=self.dbless)
        self.site = Site(self.api.resource())

    AUTH = b"Authorization: Bearer s3cret"

    def test_postConfigCrossOrigin(self) -> None:
        """
        A page posting a configuration to C{/config} (a simple text/plain
        C{fetch}, or a form) gets 403 even with the token, and nothing is
        applied.
        """
        for body, content_type in [(CONFIG, b"text/plain"),
                                   (b"config=" + CONFIG.replace(b"&", b"%26"),
                                    b"application/x-www-form-urlencoded")]:
            answer = send_raw(self.site, post(b"127.0.0.1:8001", body, content_type, self.AUTH,
                                              b"Origin: http://attacker.example", path=b"/config"))
            self.assertEqual(answer.status, 403, answer.body)
        self.assertIsNone(self.dbless.current)

    def test_postConfigRebound(self) -> None:
        """
        C{POST /config} to a rebound name (C{Host: attacker.example:8001},
        its own origin) is 421; without the token, 401.
        """
        answer = send_raw(self.site, post(b"attacker.example:8001", CONFIG, b"application/json", self.AUTH,
                                          b"Origin: http://attacker.example:8001", path=b"/config"))
        self.assertEqual(answer.status, 421)
        answer = send_raw(self.site, post(b"127.0.0.1:8001", CONFIG, b"application/json", path=b"/config"))
        self.assertEqual(answer.status, 401)
        self.assertIsNone(self.dbless.current)

    def test_everyNewEndpoint(self) -> None:
        """
        Reads of C{/config}, C{/tags}, C{/endpoints}, a plugin entity's
        list, and C{/schemas/.../validate} need the token; the changes
        (plugin entities, target health) are refused cross-origin.
        """
        for path in [b"/config", b"/tags", b"/endpoints", b"/tokens", b"/upstreams/u/health",
                     b"/consumers/alice/tokens", b"/certificates", b"/ca_certificates"]:
            answer = send_raw(self.site, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
                                                        b"Connection: close\r\n\r\n")
            self.assertEqual(answer.status, 401, path)
        for method, path in [(b"POST", b"/schemas/services/validate"), (b"POST", b"/tokens"),
                             (b"POST", b"/consumers/alice/tokens"), (b"PUT", b"/tokens/t1"),
                             (b"PUT", b"/upstreams/u/targets/a:80/healthy"),
                             (b"PUT", b"/upstreams/u/targets/a:80/10.0.0.1/unhealthy"),
                             (b"POST", b"/certificates"), (b"DELETE", b"/ca_certificates/x")]:
            answer = send_raw(self.site, post(b"127.0.0.1:8001", b"{}", b"application/json", self.AUTH,
                                              b"Origin: null", path=path, method=method))
            self.assertEqual(answer.status, 403, path)


class ConfigBombTests(AdminTestCase):
    """
    C{POST /config} on a DB-less node refuses documents built to take the
    node down, with 400 and without applying anything.
    """

    def make_api(self, **kw: Any) -> AdminAPI:
        self.declared = DeclaredStore()
        self.dbless = DBlessConfiguration(self.declared, PLUGINS)
        return super().make_api(store=self.declared, plugins=PLUGINS, dbless=self.dbless, **kw)

    def refused(self, body: bytes, content_type: str = "application/yaml") -> str:
        answer = self.call("POST", "/config", body=body, content_type=content_type)
        self.assertEqual(answer.status, 400, answer.raw)
        self.assertIsNone(self.dbless.current)
        message: str = answer.json["message"]
        return message

    def test_billionLaughs(self) -> None:
        """
        Nine levels of aliases (387 million strings once expanded; the
        loader took 4 s for six before) are refused at once.
        """
        self.assertIn("aliases expand the document", self.refused(billion_laughs(9)))

    def test_recursiveAlias(self) -> None:
        """
        An alias inside its own anchor (a list that contains itself) is
        refused instead of failing with C{RecursionError} (a 500).
        """
        body = b'_format_version: "3.0"\nservices:\n- &s {name: s, url: "http://x", tags: [*s]}\n'
        self.assertIn("contains itself", self.refused(body))

    def test_deepNesting(self) -> None:
        """
        Arrays nested 100,000 deep, as YAML and as a JSON body, are
        refused (they were a 500: C{RecursionError}).
        """
        deep = "[" * 100_000 + "]" * 100_000
        self.assertIn("nested more than", self.refused(f'_format_version: "3.0"\n_comment: {deep}\n'.encode()))
        self.assertIn("nested more than", self.refused(
            f'{{"_format_version": "3.0", "_comment": {deep}}}'.encode(), "text/plain"))
        shallow = "[" * 100 + "]" * 100
        self.assertIn("nested more than", self.refused(
            f'{{"_format_version": "3.0", "_comment": {shallow}}}'.encode(), "application/json"))

    def test_hugeIntegers(self) -> None:
        """
        A 100,000-digit integer (a 500 before: Python refuses to convert
        it) and a base-60 integer (C{1:2:3:...}, quadratic in PyYAML) are
        refused.
        """
        self.refused(b'_format_version: "3.0"\nservices:\n- {name: s, url: "http://x", retries: '
                     + b"9" * 100_000 + b"}\n")
        self.refused(b'_format_version: "3.0"\nservices:\n- {name: s, url: "http://x", retries: '
                     + b":".join([b"59"] * 100_000) + b"}\n")

    def test_pythonTags(self) -> None:
        """
        C{!!python/object/apply} is refused by the safe loader: nothing runs.
        """
        message = self.refused(b'_format_version: "3.0"\n_comment: !!python/object/apply:os.getpid []\n')
        self.assertIn("could not determine a constructor", message)

    def test_bodyLimit(self) -> None:
        """
        A body over 16 MiB is 413 before it is parsed.
        """
        answer = self.call("POST", "/config", body=b"#" * (16 * 1024 * 1024 + 1),
                           content_type="application/yaml")
        self.assertEqual(answer.status, 413, answer.raw)

    def test_sharedValuesAllowed(self) -> None:
        """
        Anchors that share a little (a plugin's tags reused) still load.
        """
        body = (b'_format_version: "3.0"\nservices:\n- {name: a, url: "http://x", tags: &t [one, two]}\n'
                b'- {name: b, url: "http://y", tags: *t}\n')
        answer = self.call("POST", "/config", body=body, content_type="application/yaml")
        self.assertEqual(answer.status, 201, answer.raw)


class NestedOwnershipTests(AdminTestCase):
    """
    A plugin entity's nested endpoints never reach another parent's
    record: C{/consumers/alice/tokens/<bob's token>}.
    """

    def make_api(self, **kw: Any) -> AdminAPI:
        return super().make_api(plugins=PLUGINS, **kw)

    def setUp(self) -> None:
        super().setUp()
        self.ok("POST", "/consumers", 201, json_body={"username": "alice"})
        self.bob = self.ok("POST", "/consumers", 201, json_body={"username": "bob"})
        self.token = self.ok("POST", "/consumers/bob/tokens", 201, json_body={"token": "tb"})

    def test_readPatchDelete(self) -> None:
        """
        GET, PATCH and DELETE of bob's token under alice, by id or key, are 404.
        """
        for key in (self.token["id"], "tb"):
            self.assertEqual(self.call("GET", f"/consumers/alice/tokens/{key}").status, 404)
            self.error("PATCH", f"/consumers/alice/tokens/{key}", 404, json_body={"label": "x"})
            self.call("DELETE", f"/consumers/alice/tokens/{key}")
        self.assertEqual(self.ok("GET", f"/tokens/{self.token['id']}"), self.token)

    def test_put(self) -> None:
        """
        PUT of bob's token under alice (by id or by key) is 404: it used
        to move the token to alice.
        """
        for key in (self.token["id"], "tb"):
            self.error("PUT", f"/consumers/alice/tokens/{key}", 404, json_body={"token": "tb"})
        self.assertEqual(self.ok("GET", f"/tokens/{self.token['id']}")["consumer"], {"id": self.bob["id"]})


class TargetHealthTests(AdminTestCase):
    """
    A target's health override is set only through its own upstream.
    """

    def test_otherUpstream(self) -> None:
        """
        C{PUT /upstreams/u2/targets/<u1's target>/unhealthy}, by id or by
        C{host:port}, is 404 and stores nothing.
        """
        self.ok("POST", "/upstreams", 201, json_body={"name": "u1"})
        self.ok("POST", "/upstreams", 201, json_body={"name": "u2"})
        target = self.ok("POST", "/upstreams/u1/targets", 201, json_body={"target": "10.0.0.1:80"})
        for key in (target["id"], "10.0.0.1:80"):
            self.error("PUT", f"/upstreams/u2/targets/{key}/unhealthy", 404)
            self.error("PUT", f"/upstreams/u2/targets/{key}/10.0.0.1/unhealthy", 404)
        self.assertEqual(self.call("PUT", f"/upstreams/u1/targets/{target['id']}/unhealthy").status, 204)


class CacheNoticeTests(SynchronousTestCase):
    """
    A plugin cache's invalidation, carried to the other nodes as JSON
    text: a key with odd characters cannot break the message nor reach
    another key; a message that is not the expected shape is ignored.
    """

    def setUp(self) -> None:
        self.sent: list[str] = []
        clock = Clock()
        self.here = Caches(clock, "node-a", publish=self.sent.append)
        self.there = Caches(clock, "node-b", publish=lambda message: None)

    def test_oddKeys(self) -> None:
        """
        Keys with quotes, a newline, a NUL, a lone surrogate, or a JSON
        text of their own invalidate only themselves on the other node;
        a key too long for a NOTIFY empties the other node's cache.
        """
        odd = ['a", "cache": "other", "key": null, "x": "', "a\nb", "a\x00b", "\ud800",
               '{"node":"node-c","cache":"c","key":null}', "victim\\"]
        remote = self.there.cache("c")
        for key in odd + ["victim"]:
            remote.get(key, lambda: 1)
        local = self.here.cache("c")
        for key in odd:
            local.invalidate(key)
        for message in self.sent:
            self.assertLess(len(message.encode("utf-8")), 8000)
            message.encode("ascii")
            self.there.received(message)
        for key in odd:
            self.assertEqual(remote.peek(key), (False, None), key)
        self.assertEqual(remote.peek("victim"), (True, 1))
        local.invalidate("k" * 10_000)
        self.there.received(self.sent[-1])
        self.assertEqual(remote.peek("victim"), (False, None))

    def test_badShapes(self) -> None:
        """
        Messages whose cache or key is not text are ignored (a list as the
        cache's name raised C{TypeError} in the listener).
        """
        remote = self.there.cache("c")
        remote.get("k", lambda: 1)
        for message in ['{"node": "x", "cache": ["c"], "key": "k"}', '{"node": "x", "cache": "c", "key": ["k"]}',
                        '{"node": "x", "cache": "c", "key": {"a": 1}}', "[1, 2, 3]", "not json", '"c"']:
            self.there.received(message)
        self.assertEqual(remote.peek("k"), (True, 1))


class CertificatePatchTests(AdminTestCase):
    """
    A certificate's key cannot be swapped for one that does not match it
    through C{PATCH}.
    """

    def test_mismatchedKey(self) -> None:
        """
        PATCH of only C{key} (or only C{cert}) to another pair's is 400
        with C{certificate does not match key}, and the record is unchanged.
        """
        one, other = make_self_signed(["one.test"]), make_self_signed(["other.test"])
        created = self.ok("POST", "/certificates", 201, json_body={"cert": one.cert_pem, "key": one.key_pem})
        for field, value in [("key", other.key_pem), ("cert", other.cert_pem)]:
            body = self.error("PATCH", f"/certificates/{created['id']}", 400, json_body={field: value})
            self.assertEqual(body["fields"], {"@entity": ["certificate does not match key"]})
        self.assertEqual(self.ok("GET", f"/certificates/{created['id']}")["key"], one.key_pem)
