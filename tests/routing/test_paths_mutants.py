"""
Tests for L{echogate.routing.paths} written to kill mutants that survived
C{tools/mutation.py} (see C{docs/testing.md}): each test names the mutant
it kills.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate.routing.paths import regex_literal_prefix


class RegexLiteralPrefixAlternationTests(SynchronousTestCase):
    """
    L{regex_literal_prefix} finds a top-level C{|} wherever it stands, so a
    route is never filed under a prefix that only one alternative has.
    """

    def test_alternationAfterEscape(self) -> None:
        """
        A C{|} after an escaped character is still seen (mutant: the
        C{continue} after an escape to C{break}, line 323).
        """
        self.assertEqual(regex_literal_prefix(r"/a\.b|/c"), "")

    def test_alternationRightAfterEscape(self) -> None:
        """
        A C{|} right after a two-character escape is seen (mutant: the escape
        skip C{i += 2} to C{i += 3}, line 322).
        """
        self.assertEqual(regex_literal_prefix(r"/\d|/x"), "")

    def test_alternationAtOddOffset(self) -> None:
        """
        A C{|} at any offset is seen, not only every other character
        (mutant: C{i += 1} to C{i += 2}, line 336).
        """
        self.assertEqual(regex_literal_prefix("/ab|c"), "")

    def test_alternationAfterOneCharacterClass(self) -> None:
        """
        A C{|} right after a one-character class is seen: the class ends at
        its first C{]} that is not its first character (mutant:
        C{_class_start(pattern, i + 1)} to C{i + 2}, line 342).
        """
        self.assertEqual(regex_literal_prefix("/[a]|b"), "")
