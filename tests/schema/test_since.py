"""
Tests for the C{@since} fields of L{echogate.schema}'s public names.
"""
from __future__ import annotations

import inspect

from twisted.trial.unittest import SynchronousTestCase

import echogate.schema


class SinceTests(SynchronousTestCase):
    """
    Plugin authors write their configs in L{echogate.schema}: each public
    class and function it exports says since when it is there.
    """

    def test_package(self) -> None:
        """
        The package's docstring has a C{@since} field.
        """
        self.assertIn("@since: ", echogate.schema.__doc__ or "")

    def test_exports(self) -> None:
        """
        Every class and function in C{echogate.schema.__all__} has a
        C{@since} field in its docstring.
        """
        missing = []
        for name in echogate.schema.__all__:
            value = getattr(echogate.schema, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if "@since: " not in (value.__doc__ or ""):
                missing.append(name)
        self.assertEqual(missing, [])
