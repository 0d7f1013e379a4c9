"""
Tests for L{echogate.routing.paths}.
"""
from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from echogate.routing.paths import (
    compile_regex_path,
    join_upstream_path,
    normalize_path,
    python_regex,
    regex_literal_prefix,
)
from tests.tables import raises_for

# (raw request path, normalised path)
NORMALISED = [
    ("/", "/"),
    ("/plain/path", "/plain/path"),
    ("/%41%62%63", "/Abc"),
    ("/a%2db%5Fc%7Ed%2E", "/a-b_c~d."),
    ("/a%2fb", "/a%2Fb"),
    ("/a%2Fb", "/a%2Fb"),
    ("/%3a%40%21%24%26%27%28%29%2a%2b%2c%3b%3d", "/%3A%40%21%24%26%27%28%29%2A%2B%2C%3B%3D"),
    ("/%3f%23%5b%5d%25", "/%3F%23%5B%5D%25"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/a%20b", "/a%20b"),
    ("/%252e", "/%252e"),
    ("/%00", "/%00"),
    ("/a:b@c!$&'()*+,;=[]", "/a:b@c!$&'()*+,;=[]"),
    ("/a b", "/a%20b"),
    ('/"<>\\^`{|}', "/%22%3C%3E%5C%5E%60%7B%7C%7D"),
    ("/café", "/caf%C3%A9"),
    ("/.", "/"),
    ("/..", "/"),
    ("/../..", "/"),
    ("/a/.", "/a/"),
    ("/a/..", "/"),
    ("/a/b/..", "/a/"),
    ("/a/b/../c", "/a/c"),
    ("/a/./b", "/a/b"),
    ("/a/../../b", "/b"),
    ("/../a", "/a"),
    ("/%2e/a", "/a"),
    ("/%2E%2E/a", "/a"),
    ("/a/%2e%2E/b", "/b"),
    ("/a/.%2e", "/"),
    ("/a%2F..%2Fb", "/a%2F..%2Fb"),
    ("/route./req", "/route./req"),
    ("/route%2E/req", "/route./req"),
    ("/route../req", "/route../req"),
    ("/.hidden/..x", "/.hidden/..x"),
    ("/a//b", "/a/b"),
    ("//a", "/a"),
    ("///admin/x", "/admin/x"),
    ("/a//../b", "/b"),
    ("/a/%2F/b", "/a/%2F/b"),
    ("/a%2F%2Fb", "/a%2F%2Fb"),
    ("/%252e%252e/a", "/%252e%252e/a"),
    ("/.//a", "/a"),
    ("/a/", "/a/"),
]

# Raw paths that cannot be normalised.
UNNORMALISABLE = [
    "",
    "a/b",
    "*",
    "http://example.com/a",
    "%2F",
    "/%zz",
    "/%4",
    "/%",
    "/a%g1",
    "/a?b",
    "/a#b",
    "/a\x00b",
    "/a\r\nb",
    "/a\x7f",
    "/\ud800",
]


class NormalizePathTests(SynchronousTestCase):
    """
    Tests for L{normalize_path}.
    """

    def test_table(self) -> None:
        """
        Each raw path normalises as the table says.
        """
        for raw, expected in NORMALISED:
            with self.subTest(raw=raw):
                self.assertEqual(normalize_path(raw), expected, f"row raw={raw!r} expected={expected!r}")

    def test_idempotent(self) -> None:
        """
        A normalised path is its own normalisation, so normalising once is
        the same as normalising again.
        """
        for raw, _ in NORMALISED:
            once = normalize_path(raw)
            with self.subTest(raw=raw):
                self.assertEqual(normalize_path(once), once, f"row raw={raw!r}")

    def test_result_is_ascii(self) -> None:
        """
        The normalised path is ASCII, even when the raw path was not.
        """
        self.assertTrue(normalize_path("/ünï/çødé").isascii())

    def test_bytes(self) -> None:
        """
        Bytes are taken byte for byte: a non-ASCII byte is percent-encoded
        on its own.
        """
        self.assertEqual(normalize_path(b"/a%2e/../b\xe9"), "/b%E9")
        self.assertEqual(normalize_path(b"/caf\xc3\xa9"), "/caf%C3%A9")

    def test_unnormalisable(self) -> None:
        """
        A path that does not start with C{/}, or holds a malformed
        percent-encoding, a control character, C{?} or C{#}, raises
        L{ValueError}.
        """
        for raw in UNNORMALISABLE:
            with self.subTest(raw=raw):
                raises_for(self, raw, ValueError, normalize_path, raw)

    def test_unnormalisable_bytes(self) -> None:
        """
        Bytes that cannot be normalised raise L{ValueError} too.
        """
        self.assertRaises(ValueError, normalize_path, b"/%zz")
        self.assertRaises(ValueError, normalize_path, b"relative")

    def test_bad_percent_message(self) -> None:
        """
        The error for a malformed percent-encoding says what is wrong.
        """
        error = self.assertRaises(ValueError, normalize_path, "/ok/%zz")
        self.assertIn("percent-encoding", str(error))


# Kong's path handling v0 (spec/fixtures/router_path_handling_tests.lua):
# (service path, route path or None, strip_path, request path, upstream path).
# The request path is raw: it is normalised first, as the proxy does.
JOINED = [
    ("/", "/", False, "/", "/"),
    ("/", "/", True, "/", "/"),
    ("/", "/", False, "/route", "/route"),
    ("/", "/", True, "/route", "/route"),
    ("/", "/", True, "/route/", "/route/"),
    ("/", "/", True, "/routereq", "/routereq"),
    ("/", "/", True, "/route/req", "/route/req"),
    ("/", "/route", False, "/route", "/route"),
    ("/", "/route", False, "/route/", "/route/"),
    ("/", "/route", False, "/routereq", "/routereq"),
    ("/", "/route", True, "/route", "/"),
    ("/", "/route", True, "/route/", "/"),
    ("/", "/route", True, "/routereq", "/req"),
    ("/", "/route/", False, "/route/", "/route/"),
    ("/", "/route/", False, "/route/req", "/route/req"),
    ("/", "/route/", True, "/route/", "/"),
    ("/", "/route/", True, "/route/req", "/req"),
    ("/srv", "/rou", False, "/roureq", "/srv/roureq"),
    ("/srv", "/rou", True, "/roureq", "/srv/req"),
    ("/srv/", "/rou", False, "/rou", "/srv/rou"),
    ("/srv/", "/rou", True, "/rou", "/srv"),
    ("/service", "/", False, "/", "/service"),
    ("/service", "/", True, "/", "/service"),
    ("/service", "/", True, "/route", "/service/route"),
    ("/service", "/", False, "/route/", "/service/route/"),
    ("/service", "/", True, "/route/", "/service/route/"),
    ("/service", "/", True, "/routereq", "/service/routereq"),
    ("/service", "/", True, "/route/req", "/service/route/req"),
    ("/service", "/route", False, "/route", "/service/route"),
    ("/service", "/route", False, "/route/", "/service/route/"),
    ("/service", "/route", False, "/routereq", "/service/routereq"),
    ("/service", "/route", True, "/route", "/service"),
    ("/service", "/route", True, "/route/", "/service/"),
    ("/service", "/route", True, "/routereq", "/service/req"),
    ("/service", "/route", True, "/route/x", "/service/x"),
    ("/service", "/route/", False, "/route/", "/service/route/"),
    ("/service", "/route/", False, "/route/req", "/service/route/req"),
    ("/service", "/route/", True, "/route/", "/service/"),
    ("/service", "/route/", True, "/route/req", "/service/req"),
    ("/service/", "/", True, "/route/", "/service/route/"),
    ("/service/", "/", False, "/", "/service/"),
    ("/service/", "/", True, "/", "/service/"),
    ("/service/", "/", True, "/route", "/service/route"),
    ("/service/", "/", True, "/routereq", "/service/routereq"),
    ("/service/", "/", False, "/route/req", "/service/route/req"),
    ("/service/", "/route", False, "/route", "/service/route"),
    ("/service/", "/route", False, "/route/", "/service/route/"),
    ("/service/", "/route", False, "/routereq", "/service/routereq"),
    ("/service/", "/route", True, "/route", "/service"),
    ("/service/", "/route", True, "/route/", "/service/"),
    ("/service/", "/route", True, "/routereq", "/service/req"),
    ("/service/", "/route/", False, "/route/", "/service/route/"),
    ("/service/", "/route/", False, "/route/req", "/service/route/req"),
    ("/service/", "/route/", True, "/route/", "/service/"),
    ("/service/", "/route/", True, "/route/req", "/service/req"),
    ("/s/", "/route", True, "/route/x", "/s/x"),
    # Routes that matched without a path (by host, say).
    ("/", None, False, "/", "/"),
    ("/", None, True, "/", "/"),
    ("/", None, True, "/route", "/route"),
    ("/", None, False, "/route/", "/route/"),
    ("/service", None, True, "/", "/service"),
    ("/service", None, False, "/", "/service"),
    ("/service", None, True, "/route", "/service/route"),
    ("/service", None, False, "/route", "/service/route"),
    ("/service", None, True, "/route/", "/service/route/"),
    ("/service/", None, True, "/", "/service/"),
    ("/service/", None, False, "/route", "/service/route"),
    ("/service/", None, True, "/route/", "/service/route/"),
    # No service path: like "/".
    (None, "/route", True, "/route", "/"),
    (None, "/route", True, "/route/x", "/x"),
    (None, "/route", False, "/route/x", "/route/x"),
    (None, None, False, "/a/b/", "/a/b/"),
    (None, None, True, "/a/b/", "/a/b/"),
    ("", "/route", False, "/route", "/route"),
    # Dot segments left after the prefix (normalised first).
    ("/service", "/route", True, "/route./req", "/service/req"),
    ("/service/", "/route", True, "/route./req", "/service/req"),
    ("/service", "/route", True, "/route%2E/req", "/service/req"),
    ("/service", "/route", True, "/route%2e/req", "/service/req"),
    ("/service/", "/route", True, "/route%2e/req", "/service/req"),
    ("/service", "/route", True, "/route../req", "/service/req"),
    ("/service/", "/route", True, "/route../req", "/service/req"),
    ("/service", "/route", True, "/route%2E%2E/req", "/service/req"),
    ("/service", "/route", True, "/route%2e%2E/req", "/service/req"),
    ("/service/", "/route", True, "/route%2e%2E/req", "/service/req"),
    ("/service", "/route", True, "/route.", "/service"),
    ("/service", "/route", True, "/route..", "/service"),
    ("/service", "/route", False, "/route./req", "/service/route./req"),
    ("/service/", "/route", False, "/route./req", "/service/route./req"),
    ("/service", "/route", False, "/route%2E/req", "/service/route./req"),
    ("/service", "/route", False, "/route../req", "/service/route../req"),
    ("/service/", "/route", False, "/route%2e%2E/req", "/service/route../req"),
    # Reserved characters stay encoded.
    ("/", "/endel%2Fst", True, "/endel%2fst", "/"),
    ("/up", "/endel%2Fst", True, "/endel%2Fst/a%2Fb", "/up/a%2Fb"),
]


class NormalizeFastPathTests(SynchronousTestCase):
    def test_sameAsTheFullWalk(self) -> None:
        """
        The shortcut for paths with nothing to decode or escape gives what
        the byte-by-byte walk gives, for every path of a mixed alphabet
        (plain characters, dots, slashes, escapes, characters to escape).
        """
        from echogate.routing.paths import _SLASHES, _canonical_bytes, _remove_dot_segments

        rng = random.Random(5)
        alphabet = [b"a", b"Z", b"0", b"-", b"~", b".", b"/", b"//", b"..", b"%2e", b"%2F", b"%41", b" ", b"[",
                    b"]", b"@", b"\xc3\xa9", b"'", b"%zz"]
        for _ in range(3000):
            raw = b"/" + b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
            try:
                expected = _remove_dot_segments(_SLASHES.sub("/", _canonical_bytes(raw)))
            except ValueError:
                raises_for(self, raw, ValueError, normalize_path, raw)
                continue
            self.assertEqual(normalize_path(raw), expected, raw)


class JoinUpstreamPathTests(SynchronousTestCase):
    """
    Tests for L{join_upstream_path}.
    """

    def test_table(self) -> None:
        """
        Each request path goes upstream as Kong's path handling v0 says.
        """
        for service_path, route_path, strip, raw, expected in JOINED:
            path = normalize_path(raw)
            stripped = route_path if route_path is not None else ""
            with self.subTest(
                service=service_path, route=route_path, strip=strip, request=raw
            ):
                self.assertTrue(path.startswith(stripped),
                                f"row {(service_path, route_path, strip, raw)!r}")
                self.assertEqual(
                    join_upstream_path(service_path, path, stripped, strip), expected,
                    f"row {(service_path, route_path, strip, raw)!r}"
                )

    def test_regex_match_stripped(self) -> None:
        """
        A regex path's whole match is what strip_path removes.
        """
        self.assertEqual(
            join_upstream_path(
                "/svc", "/users/123/profile/hello/world", "/users/123/profile", True
            ),
            "/svc/hello/world",
        )
        self.assertEqual(
            join_upstream_path(
                None, "/users/123/profile/hello/world", "/users/123/profile", True
            ),
            "/hello/world",
        )

    def test_stripped_not_a_prefix(self) -> None:
        """
        A C{stripped} that does not start the request path raises
        L{ValueError}.
        """
        error = self.assertRaises(
            ValueError, join_upstream_path, "/s", "/other", "/route", True
        )
        self.assertIn("/route", str(error))


# (PCRE as Kong users write it, Python)
TRANSLATED = [
    (r"/users/(?<id>\d+)", r"/users/(?P<id>\d+)"),
    (r"/(?<_x>a)(?<y1>b)", r"/(?P<_x>a)(?P<y1>b)"),
    (r"/(?P<id>\d+)", r"/(?P<id>\d+)"),
    (r"/(?<=a)b(?<!c)", r"/(?<=a)b(?<!c)"),
    (r"/\(?<a>", r"/\(?<a>"),
    (r"/[(?<a>]", r"/[(?<a>]"),
    (r"/[]](?<a>x)", r"/[]](?P<a>x)"),
    (r"/[^]](?<a>x)", r"/[^]](?P<a>x)"),
    (r"/(?<1>x)", r"/(?<1>x)"),
]

# (Python regex, literal prefix)
LITERAL_PREFIXES = [
    (r"/users/\d+", "/users/"),
    (r"^/users/\d+", "/users/"),
    (r"/a/b?", "/a/"),
    (r"/a/b*", "/a/"),
    (r"/a/b+", "/a/"),
    (r"/a{2}", "/"),
    (r"/x\.y\/z", "/x.y/z"),
    (r"/a\|b", "/a|b"),
    (r"/a\d", "/a"),
    (r"/a|/b", ""),
    (r"/a/(b|c)|/d", ""),
    (r"/(a|b)/c", "/"),
    (r"/a[|]b", "/a"),
    (r"/a[]|]b", "/a"),
    (r"(?i)/abc", ""),
    (r"/p/(?P<id>\d+)", "/p/"),
    (r"/a.b", "/a"),
    (r"/a$", "/a"),
    (r"", ""),
]


class RegexPathTests(SynchronousTestCase):
    """
    Tests for L{python_regex}, L{compile_regex_path} and
    L{regex_literal_prefix}.
    """

    def test_translate(self) -> None:
        """
        PCRE named groups become Python named groups; nothing else changes.
        """
        for pcre, python in TRANSLATED:
            with self.subTest(pcre=pcre):
                self.assertEqual(python_regex(pcre), python, f"row pcre={pcre!r} python={python!r}")

    def test_compile(self) -> None:
        """
        A regex path compiles, with or without its C{~}, to a pattern that
        matches at the start of a path.
        """
        for path in (r"~/users/(?<id>\d+)", r"/users/(?<id>\d+)"):
            pattern = compile_regex_path(path)
            found = pattern.match("/users/42/x")
            assert found is not None
            self.assertEqual(found.group(0), "/users/42", f"row path={path!r}")
            self.assertEqual(found.groupdict(), {"id": "42"}, f"row path={path!r}")
            self.assertIsNone(pattern.match("/x/users/42"), f"row path={path!r}")

    def test_compile_error(self) -> None:
        """
        A regex that does not compile raises L{ValueError} naming it.
        """
        for path in ("~/(", "~/a)", "~*", "~/(?<1>x)"):
            with self.subTest(path=path):
                error = raises_for(self, path, ValueError, compile_regex_path, path)
                self.assertIn("invalid regex", str(error), f"row path={path!r}")

    def test_literal_prefix(self) -> None:
        """
        The literal prefix is what every match starts with, or C{""}.
        """
        for pattern, prefix in LITERAL_PREFIXES:
            with self.subTest(pattern=pattern):
                self.assertEqual(regex_literal_prefix(pattern), prefix, f"row pattern={pattern!r} prefix={prefix!r}")
