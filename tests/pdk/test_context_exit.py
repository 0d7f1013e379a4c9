"""
Tests for a plugin's own answer: L{encode_exit_body}, and C{ctx.exit}
through L{echogate.testing.GatewayHarness}.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.pdk.context import encode_exit_body
from tests.proxy.test_plugin_contract import UNEXPECTED, harness_of, make_plugin


class EncodeExitBodyTests(SynchronousTestCase):
    """
    L{encode_exit_body} turns what a plugin answers with into bytes.
    """

    def test_none(self) -> None:
        """
        C{None}: empty, no content type.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body(None, headers), b"")
        self.assertEqual(headers, {})

    def test_bytes(self) -> None:
        """
        Bytes as given, no content type added.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body(b"\x00", headers), b"\x00")
        self.assertEqual(headers, {})

    def test_text(self) -> None:
        """
        A string as UTF-8 text.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body("é", headers), "é".encode())
        self.assertEqual(headers, {"Content-Type": "text/plain; charset=utf-8"})

    def test_json(self) -> None:
        """
        Anything else as JSON.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body({"a": [1, None]}, headers), b'{"a": [1, null]}')
        self.assertEqual(headers, {"Content-Type": "application/json; charset=utf-8"})

    def test_pluginsContentType(self) -> None:
        """
        A content type the plugin gave, in any case, is kept.
        """
        headers = {"content-TYPE": "text/html"}
        encode_exit_body("<p>", headers)
        self.assertEqual(headers, {"content-TYPE": "text/html"})


class ExitBodyTests(SynchronousTestCase):
    """
    How C{ctx.exit} encodes its body.
    """

    def answer(self, *args: Any) -> Any:
        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(*args)

        return self.successResultOf(harness_of(make_plugin("p", access=access)).request("GET", "/"))

    def test_text(self) -> None:
        """
        A string is sent as UTF-8 text.
        """
        response = self.answer(200, "héllo")
        self.assertEqual(response.body, "héllo".encode())
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")

    def test_bytes(self) -> None:
        """
        Bytes are sent as given, with the plugin's content type.
        """
        response = self.answer(201, b"\x00raw", {"Content-Type": "application/octet-stream"})
        self.assertEqual((response.status, response.body), (201, b"\x00raw"))
        self.assertEqual(response.header("content-type"), "application/octet-stream")

    def test_noBody(self) -> None:
        """
        No body: an empty one.
        """
        response = self.answer(204)
        self.assertEqual((response.status, response.body), (204, b""))

    def test_jsonKeepsContentType(self) -> None:
        """
        A JSON body keeps a content type the plugin set.
        """
        response = self.answer(200, [1, 2], {"content-type": "application/problem+json"})
        self.assertEqual(response.json(), [1, 2])
        self.assertEqual(response.headers["content-type"], ["application/problem+json"])

    def test_invalidStatus(self) -> None:
        """
        An invalid status is the plugin's error: 500, logged.
        """
        response = self.answer(99)
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
