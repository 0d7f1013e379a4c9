"""
The token-auth example in L{GatewayHarness}: a request passes with a
stored token, the phase finding it in the configuration snapshot.
"""
from __future__ import annotations

from typing import Any

from tokens_plugin import TOKENS, TokenAuth
from twisted.trial import unittest

from echogate.testing import GatewayHarness

ALICE = "11111111-1111-4111-8111-111111111111"


class TokenAuthTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        plugin = TokenAuth()
        # (The harness keeps the plugin's entities as a node does: in its
        # configuration snapshot, or in a store given as store=.)
        self.harness = GatewayHarness([plugin], configs=[("token-auth", {})])
        self.harness.set_entities({
            "consumers": [{"id": ALICE, "username": "alice"}],
            TOKENS.name: [{"token": "t-alice", "consumer": {"id": ALICE}, "label": "ci"}],
        })

    def get(self, token: str | None) -> Any:
        headers = {"X-Token": token} if token is not None else {}
        return self.successResultOf(self.harness.request("GET", "/", headers=headers))

    def test_storedToken(self) -> None:
        """
        A stored token passes; the response names its consumer.
        """
        response = self.get("t-alice")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("X-Token-Consumer"), ALICE)

    def test_unknownToken(self) -> None:
        """
        A token no record holds, or none, is 401.
        """
        self.assertEqual(self.get("t-mallory").status, 401)
        self.assertEqual(self.get(None).status, 401)
        self.assertEqual(self.harness.upstream_requests, [])

    def test_tokenRemoved(self) -> None:
        """
        Once its record is gone, a token no longer passes.
        """
        self.harness.set_entities({TOKENS.name: []})
        self.assertEqual(self.get("t-alice").status, 401)

    def test_declaration(self) -> None:
        """
        The entity belongs to consumers, its token unique and its key.
        """
        self.assertEqual((TOKENS.parent, TOKENS.unique, TOKENS.endpoint_key, TOKENS.endpoint),
                         ("consumers", ("token",), "token", "tokens"))
