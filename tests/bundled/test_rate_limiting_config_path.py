"""
rate-limiting's counted path must be written in normal form (requests are
compared by their normalised path, so any other spelling matches nothing).
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.rate_limiting import RateLimiting
from echogate.errors import SchemaViolation


class CountedPathTests(SynchronousTestCase):
    """
    The config check of C{path}.
    """

    def test_normalAccepted(self) -> None:
        """
        A path in normal form is taken as it is.
        """
        config = RateLimiting.config_schema.validate({"minute": 1, "limit_by": "path", "path": "/p/x"})
        self.assertEqual(config["path"], "/p/x")

    def test_otherSpellingsRefused(self) -> None:
        """
        Repeated slashes, dot segments and encoded unreserved characters
        are refused, naming the normal form.
        """
        for path in ("/p//x", "/p/./x", "/p/a/../x", "/p/%78"):
            with self.assertRaises(SchemaViolation, msg=path) as caught:
                RateLimiting.config_schema.validate({"minute": 1, "limit_by": "path", "path": path})
            self.assertEqual(caught.exception.fields, {"path": "non-normalized path, consider use '/p/x' instead"},
                             path)
