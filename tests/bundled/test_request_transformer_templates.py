"""
Tests for the value templates of the bundled request-transformer plugin
(L{echogate.bundled.templates}): rendering from the client's request, and
the template language itself.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.request_transformer import RequestTransformer
from echogate.bundled.templates import TemplateEnvironment, TemplateError, compile_template
from echogate.testing import GatewayHarness
from tests.bundled.test_request_transformer import NAME, RequestTransformerTestCase, harness
from tests.proxy.test_plugin_contract import make_plugin


class TemplateTests(RequestTransformerTestCase):
    """
    Values rendered from the client's request.
    """

    route = {"paths": ["~/users/(?<user>[a-z]+)/(\\d+)"]}

    def test_headersAndQuery(self) -> None:
        """
        Headers (by attribute, with C{_} for C{-}, or by subscript) and
        query arguments.
        """
        config = {"add": {"headers": ["x-a:$(headers.x_in)", "x-b:[$(headers['X-IN'])]"],
                          "querystring": ["q:$(query_params.page)-$(query_params[\"size\"])"]}}
        seen = self.send(harness(**config), path="/x?page=2&size=10", headers={"X-In": "v"})
        self.assertEqual((seen.header("x-a"), seen.header("x-b"), seen.path),
                         ("v", "[v]", "/x?page=2&size=10&q=2-10"))

    def test_uriCaptures(self) -> None:
        """
        Named and numbered groups of a regex route path (0 is the whole match).
        """
        config = {"replace": {"uri": "/u/$(uri_captures.user)/$(uri_captures[2])"},
                  "add": {"headers": ["x-whole:$(uri_captures[0])", "x-none:[$(uri_captures[9])]"]}}
        seen = self.send(harness(self.route, **config), path="/users/bob/42/rest")
        self.assertEqual((seen.path, seen.header("x-whole"), seen.header("x-none")),
                         ("/u/bob/42", "/users/bob/42", "[]"))

    def test_uriCapturesPrefixRoute(self) -> None:
        """
        A prefix route has no captures.
        """
        seen = self.send(harness(add={"headers": ["x-c:[$(uri_captures[0])]"]}), path="/x")
        self.assertEqual(seen.header("x-c"), "[]")

    def test_shared(self) -> None:
        """
        Values a plugin that ran before put in C{ctx.shared}.
        """

        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.shared["my_version"] = 2

        gateway = GatewayHarness([RequestTransformer(), make_plugin("setter", 900, access=access)],
                                 configs=[(NAME, {"add": {"querystring": ["v:$(shared.my_version)"]}}),
                                          ("setter", {})])
        self.assertEqual(self.send(gateway, path="/x").path, "/x?v=2")

    def test_defaults(self) -> None:
        """
        C{or} picks the first present value; an absent value renders empty.
        """
        config = {"add": {"headers": ["x-a:$(headers.x_missing or query_params.q or 'none')",
                                      "x-b:[$(headers.x_missing)]"]}}
        seen = self.send(harness(**config), path="/x?q=from-query")
        self.assertEqual((seen.header("x-a"), seen.header("x-b")), ("from-query", "[]"))
        seen = self.send(harness(**config), path="/x")
        self.assertEqual(seen.header("x-a"), "none")

    def test_literalEscapesTemplate(self) -> None:
        """
        A string literal writes C{$(} itself.
        """
        seen = self.send(harness(add={"querystring": ["q:$('$(uri_captures.user1)')"]}), path="/x")
        self.assertEqual(seen.path, "/x?q=%24%28uri_captures.user1%29")

    def test_oldValues(self) -> None:
        """
        Templates read the request as the client sent it, not as earlier
        operations changed it.
        """
        config = {"replace": {"headers": ["x-r:new"]}, "add": {"querystring": ["q:$(headers.x_r)"]},
                  "remove": {"headers": ["x-gone"]}, "append": {"headers": ["x-t:$(headers['x-gone'])"]}}
        seen = self.send(harness(**config), path="/x", headers={"X-R": "old", "X-Gone": "g"})
        self.assertEqual((seen.header("x-r"), seen.path, seen.header("x-t")), ("new", "/x?q=old", "g"))

    def test_multipleValues(self) -> None:
        """
        A repeated query argument renders its values joined with C{, }; a
        flag argument renders C{true}.
        """
        seen = self.send(harness(add={"headers": ["x-a:$(query_params.a)", "x-f:$(query_params.flag)"]}),
                         path="/x?a=1&a=2&flag")
        self.assertEqual((seen.header("x-a"), seen.header("x-f")), ("1, 2", "true"))

    def test_bodyAndRenameValues(self) -> None:
        """
        Body values and body rename targets are templates too.
        """
        config = {"add": {"body": ["who:$(headers.x_user)"]}, "rename": {"body": ["a:$(headers.x_name)"]}}
        seen = self.send(harness(**config), "POST", headers={"Content-Type": "application/json", "X-User": "u",
                                                              "X-Name": "b"}, body=b'{"a": 1}')
        self.assertEqual(json.loads(seen.body), {"b": 1, "who": "u"})


class TemplateLanguageTests(SynchronousTestCase):
    """
    L{compile_template}: what it accepts and refuses.
    """

    def render(self, source: str, headers: dict | None = None, query: dict | None = None) -> str:
        env = TemplateEnvironment(lambda: headers or {}, lambda: query or {}, ("whole", "one"), {"n": "named"},
                                  {"k": True})
        return compile_template(source).render(env)

    def test_plain(self) -> None:
        """
        Text without C{$(} is kept as it is, and is plain.
        """
        self.assertTrue(compile_template("a (b) $ c").is_plain)
        self.assertEqual(self.render("a (b) $ c"), "a (b) $ c")

    def test_lookups(self) -> None:
        """
        Each root with each kind of key.
        """
        self.assertEqual(self.render("$(headers.a_b)|$(query_params.q)|$(uri_captures[1])|$(uri_captures.n)|"
                                     "$(shared.k)|$(uri_captures['n'])|$(headers[\"A-B\"])|$(uri_captures[5])",
                                     {"a-b": ["h"]}, {"q": "v"}),
                         "h|v|one|named|true|named|h|")

    def test_literals(self) -> None:
        """
        String literals with escapes, and numbers.
        """
        self.assertEqual(self.render("$('a\\'b')$(\"x\\ny\")$(12)"), "a'bx\ny12")

    def test_errors(self) -> None:
        """
        Anything beyond lookups, literals and C{or} is refused, with a reason.
        """
        for source, reason in [("$(foo())", "unknown name 'foo'"), ("$(headers)", "headers must be followed by"),
                               ("$(headers.x-y)", "unexpected '-'"), ("$(headers.a or)", "an expression is missing"),
                               ("$(1 + 2)", "unexpected '+'"), ("$(headers.a", "unbalanced parentheses"),
                               ("$('a' 'b')", "unexpected \"'b'\""), ("$()", "an expression is missing"),
                               ("$(or 'a')", "unexpected 'or'")]:
            error = self.assertRaises(TemplateError, compile_template, source)
            self.assertIn(reason, str(error), source)
