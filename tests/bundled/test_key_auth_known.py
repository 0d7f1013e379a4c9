"""
Tests for key-auth's outcomes kept by key (L{echogate.bundled.key_auth}):
a key seen before in the first key name's header is answered without
looking its credential up, for as long as the snapshot lasts.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.key_auth import KeyAuth
from echogate.pdk.credentials import KEYAUTH, CredentialIndex
from echogate.testing import GatewayHarness, HarnessResponse
from tests.bundled.test_key_auth import KEYS, UNAUTHORIZED
from tests.bundled.test_plugin_paths import _config, _context
from tests.entities.test_credentials import ALICE, BOB, people

ALICE_RECORD = {"id": ALICE, "username": "alice", "custom_id": None}


class KnownKeyTests(SynchronousTestCase):
    """
    The outcome of a key, kept by the key for the snapshot's life.
    """

    def setUp(self) -> None:
        self.found: list[Any] = []
        real = CredentialIndex.find

        def find(index: CredentialIndex, kind: str, key: str | None) -> Any:
            self.found.append(key)
            return real(index, kind, key)

        self.patch(CredentialIndex, "find", find)
        self.harness = GatewayHarness([KeyAuth()], [("key-auth", {})], entities=people(KEYS))

    def request(self, headers: dict[str, str]) -> HarnessResponse:
        return self.successResultOf(self.harness.request("GET", "/", headers=headers))

    def identity(self, response: HarnessResponse) -> tuple[Any, ...]:
        self.assertEqual(response.status, 200, response.body)
        headers = response.json()["headers"]
        return tuple(headers.get(name) for name in ("x-consumer-id", "x-consumer-username",
                                                    "x-credential-identifier"))

    def test_lookedUpOnce(self) -> None:
        """
        A key is looked up the first time only; later requests with it
        tell the upstream the same identity.
        """
        answers = [self.identity(self.request({"apikey": key}))
                   for key in ("secret-1", "secret-2", "secret-1", "secret-2")]
        self.assertEqual(self.found, ["secret-1", "secret-2"])
        self.assertEqual(answers[:2], answers[2:])
        self.assertEqual(answers[0], ([ALICE], ["alice"], ["00000000-0000-4000-8000-0000000000a1"]))

    def test_newSnapshot(self) -> None:
        """
        A new snapshot looks the key up again: a key now another
        consumer's is told as that consumer's, a key removed is refused.
        """
        self.identity(self.request({"apikey": "secret-1"}))
        self.identity(self.request({"apikey": "secret-2"}))
        self.harness.set_entities({"keyauth_credentials": [{"consumer": {"id": BOB}, "key": "secret-1"}]})
        self.assertEqual(self.identity(self.request({"apikey": "secret-1"}))[:2], ([BOB], ["bob"]))
        response = self.request({"apikey": "secret-2"})
        self.assertEqual((response.status, response.json()), (401, UNAUTHORIZED))
        self.assertEqual(self.found, ["secret-1", "secret-2", "secret-1", "secret-2"])

    def test_duplicateNotKept(self) -> None:
        """
        A known key sent twice (two header lines) is still a duplicate.
        """
        plugin = KeyAuth()
        config = _config(plugin)
        index = CredentialIndex(
            [ALICE_RECORD], {KEYAUTH: [{"id": "k", "key": "secret-1", "consumer": {"id": ALICE}}]})
        once = _context({b"apikey": [b"secret-1"]}, index)
        plugin.access(once.view("key-auth"), config)
        self.assertIsNone(once.exit)
        twice = _context({b"apikey": [b"secret-1", b"secret-1"]}, index)
        plugin.access(twice.view("key-auth"), config)
        assert twice.exit is not None
        self.assertEqual((twice.exit.status, twice.exit.body), (401, b'{"message": "Duplicate API key found"}'))
