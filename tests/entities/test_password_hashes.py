"""
Known-answer tests for basic-auth's password hashing
(L{echogate.entities.credentials.hash_password} and
L{echogate.entities.credentials.verify_password}): hashes made once with a
fixed salt and pinned here, so that a change in how a password becomes
bytes (its encoding, a Unicode normalisation) or in the scrypt parameters
is caught; a round trip alone would not notice, and every stored
credential would stop matching.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate.entities.credentials import hash_password, verify_password

#: (password, salt, the hash stored for it), made with the default cost.
PINNED: dict[str, tuple[str, bytes, str]] = {
    "ascii": (
        "correct horse battery staple", bytes(range(0, 16)),
        "$scrypt$ln=14,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$"
        "11kKyiyYAc8G7rp3KmncMc44YlkdllIqxOa7pq0fMaU="),
    "latin1-range": (
        "caf\u00e9", bytes(range(1, 17)),
        "$scrypt$ln=14,r=8,p=1$AQIDBAUGBwgJCgsMDQ4PEA==$"
        "FCG6JY/PFmhBDqw2p1dTwglHHKXw4WcI6L2R6fzwP+w="),
    "decomposed": (
        "cafe\u0301", bytes(range(2, 18)),
        "$scrypt$ln=14,r=8,p=1$AgMEBQYHCAkKCwwNDg8QEQ==$"
        "TPSNZspvg3TPQvoxWrMOG2gwB2gyjmGUKE2sN/j8MNQ="),
    "cyrillic-emoji": (
        "\u043f\u0430\u0440\u043e\u043b\u044c\U0001f511", bytes(range(3, 19)),
        "$scrypt$ln=14,r=8,p=1$AwQFBgcICQoLDA0ODxAREg==$"
        "yNQZxFQ+ZoRwewTwoNM2ZYoupuyVMmMZ+wf6QQi1GBo="),
    "single-space": (
        " ", bytes(range(4, 20)),
        "$scrypt$ln=14,r=8,p=1$BAUGBwgJCgsMDQ4PEBESEw==$"
        "/dgynSEjsnAF6sLIK/yJISHevi0ELS9FUwez4uxW3PY="),
    "long": (
        "x" * 200, bytes(range(5, 21)),
        "$scrypt$ln=14,r=8,p=1$BQYHCAkKCwwNDg8QERITFA==$"
        "s6kAgF+Svoc1GbUjltg5saShlmOUiIpznFzc9a2K7Sc="),
}


class PinnedHashTests(SynchronousTestCase):
    """
    Each pinned hash is what L{hash_password} makes for its password and
    salt, and L{verify_password} accepts the password against it.
    """

    def check_hash(self, name: str) -> None:
        password, salt, pinned = PINNED[name]
        self.assertEqual(hash_password(password, salt=salt), pinned)

    def check_verify(self, name: str) -> None:
        password, _, pinned = PINNED[name]
        self.assertIs(verify_password(pinned, password), True)

    def test_hash_ascii(self) -> None:
        """An ASCII password hashes to its pinned hash."""
        self.check_hash("ascii")

    def test_verify_ascii(self) -> None:
        """An ASCII password matches its pinned hash."""
        self.check_verify("ascii")

    def test_hash_latin1_range(self) -> None:
        """A password with an accented letter is hashed as UTF-8, not Latin-1."""
        self.check_hash("latin1-range")

    def test_verify_latin1_range(self) -> None:
        """A password with an accented letter matches its pinned hash."""
        self.check_verify("latin1-range")

    def test_hash_decomposed(self) -> None:
        """A decomposed (NFD) password is hashed as given, not normalised."""
        self.check_hash("decomposed")

    def test_verify_decomposed(self) -> None:
        """A decomposed (NFD) password matches its pinned hash."""
        self.check_verify("decomposed")

    def test_hash_cyrillic_emoji(self) -> None:
        """A password outside Latin-1, with an astral character, hashes as pinned."""
        self.check_hash("cyrillic-emoji")

    def test_verify_cyrillic_emoji(self) -> None:
        """A password outside Latin-1 matches its pinned hash."""
        self.check_verify("cyrillic-emoji")

    def test_hash_single_space(self) -> None:
        """A one-space password hashes to its pinned hash (it is not stripped)."""
        self.check_hash("single-space")

    def test_verify_single_space(self) -> None:
        """A one-space password matches its pinned hash."""
        self.check_verify("single-space")

    def test_hash_long(self) -> None:
        """A 200-character password hashes to its pinned hash (no truncation)."""
        self.check_hash("long")

    def test_verify_long(self) -> None:
        """A 200-character password matches its pinned hash."""
        self.check_verify("long")


class PinnedMismatchTests(SynchronousTestCase):
    """
    Passwords that look alike do not match each other's pinned hash.
    """

    def test_composed_does_not_match_decomposed(self) -> None:
        """The composed (NFC) form does not match the hash of the decomposed one."""
        _, _, pinned = PINNED["decomposed"]
        self.assertIs(verify_password(pinned, "caf\u00e9"), False)

    def test_decomposed_does_not_match_composed(self) -> None:
        """The decomposed (NFD) form does not match the hash of the composed one."""
        _, _, pinned = PINNED["latin1-range"]
        self.assertIs(verify_password(pinned, "cafe\u0301"), False)

    def test_empty_does_not_match_space(self) -> None:
        """The empty password does not match the hash of a single space."""
        _, _, pinned = PINNED["single-space"]
        self.assertIs(verify_password(pinned, ""), False)

    def test_truncated_does_not_match_long(self) -> None:
        """The long password cut short does not match its hash."""
        _, _, pinned = PINNED["long"]
        self.assertIs(verify_password(pinned, "x" * 199), False)
