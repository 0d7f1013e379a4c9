"""
Tests for the PDK's cheaper calls of issue 25's second pass: the client's
headers read from Twisted's own table (L{stored_name}), a plugin's fixed
header names set in one pass (L{HeaderNames}, L{HeaderEditor.set_named},
L{HeaderLines}), the size of header lines (L{lines_size}), and plugin
views made with the context's fixed parts as plain attributes.
"""
from __future__ import annotations

from itertools import chain

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from echogate.pdk import rawheaders
from echogate.pdk.context import PluginContext, ResponseState, UpstreamRequest
from echogate.pdk.headers import HeaderEditor, HeaderLines, HeaderNames
from echogate.pdk.rawheaders import lines_size, stored_name
from echogate.pdk.requests import ClientRequest
from tests.pdk.test_context import FakeRequest, client, context

#: Request headers as a client may send them: several values, odd case.
_SENT = {b"x-Key": [b"a", b"b"], b"Content-Type": [b"text/plain"], b"host": [b"example.com"],
         b"X-EMPTY": [b""], b"WWW-Authenticate": [b"Key"]}


class StoredNameTests(SynchronousTestCase):
    """
    L{stored_name} is the key Twisted's L{Headers} keeps a name under.
    """

    def test_twistedsSpelling(self) -> None:
        """
        The name as L{Headers.getAllRawHeaders} gives it back, whatever
        the case it was given in, for C{str} and C{bytes}.
        """
        for name in ("content-type", "CONTENT-TYPE", b"x-key", "www-authenticate", "Dnt", b"te"):
            headers = Headers()
            headers.addRawHeader(name, b"v")
            [(spelled, _)] = headers.getAllRawHeaders()
            self.assertEqual(stored_name(name), spelled)

    def test_invalid(self) -> None:
        """
        A name that is not a token is refused, as L{Headers} refuses it.
        """
        for name in ("bad name", "x:y", ""):
            self.assertRaises(InvalidHeaderName, stored_name, name)
            self.assertRaises(InvalidHeaderName, Headers().getRawHeaders, name.encode())


class ClientHeadersTests(SynchronousTestCase):
    """
    C{ctx.request.get_header} and C{get_header_values} read the client's
    headers from Twisted's table when it keeps them by name, and give what
    C{getRawHeaders} gives.
    """

    def test_sameAsGetRawHeaders(self) -> None:
        """
        Every name, any case, present or not: the values Twisted gives
        (decoded as Latin-1), the first for C{get_header}.
        """
        request = client(dict(_SENT))
        raw = request._request.requestHeaders
        for name in ("x-key", "X-KEY", "content-type", "Host", "x-empty", "absent", "www-authenticate", b"x-key"):
            values = raw.getRawHeaders(name if isinstance(name, bytes) else name.encode())
            expected = [v.decode("latin-1") for v in values] if values else []
            self.assertEqual(request.get_header_values(name), expected, name)  # type: ignore[arg-type]
            self.assertEqual(request.get_header(name), expected[0] if expected else None, name)  # type: ignore[arg-type]

    def test_latin1(self) -> None:
        """
        Values are decoded as Latin-1, every byte kept.
        """
        request = client({b"X-Name": [b"caf\xe9"]})
        self.assertEqual((request.get_header("x-name"), request.get_header_values("x-name")), ("caf\xe9", ["caf\xe9"]))

    def test_emptyValues(self) -> None:
        """
        A header set to no values reads as absent, as with
        C{getRawHeaders}.
        """
        request = client()
        request._request.requestHeaders.setRawHeaders(b"X-None", [])
        self.assertEqual((request.get_header("x-none"), request.get_header_values("x-none")), (None, []))

    def test_withoutGetRawHeaders(self) -> None:
        """
        With Twisted's L{Headers}, no call of C{getRawHeaders}: a dict
        lookup instead of three calls.
        """
        self.assertTrue(rawheaders.DIRECT)
        request = client(dict(_SENT))

        def refused(*args: object) -> None:
            raise AssertionError("getRawHeaders called")

        self.patch(Headers, "getRawHeaders", refused)
        self.assertEqual(request.get_header("X-Key"), "a")
        self.assertEqual(request.get_header_values("x-key"), ["a", "b"])
        self.assertIsNone(request.get_header("absent"))

    def test_otherHeaders(self) -> None:
        """
        Another kind of headers object (a subclass of L{Headers}) is read
        with its C{getRawHeaders}.
        """
        asked = []

        class Logged(Headers):
            def getRawHeaders(self, name, default=None):  # type: ignore[no-untyped-def,override]
                asked.append(name)
                return super().getRawHeaders(name, default)

        fake = FakeRequest()
        fake.requestHeaders = Logged({b"X-A": [b"1"]})
        request = ClientRequest(fake, "/", "/", "", "10.0.0.1")
        self.assertEqual((request.get_header("x-a"), request.get_header_values("X-A")), ("1", ["1"]))
        self.assertEqual(asked, [b"x-a", b"X-A"])

    def test_invalidName(self) -> None:
        """
        A name that is not a token is refused, as before.
        """
        request = client(dict(_SENT))
        self.assertRaises(InvalidHeaderName, request.get_header, "bad name")
        self.assertRaises(InvalidHeaderName, request.get_header_values, "bad name")


def _pairs() -> list[tuple[bytes, bytes]]:
    return [(b"Server", b"nginx"), (b"x-a", b"1"), (b"X-B", b"2"), (b"X-A", b"3"), (b"Content-Length", b"10")]


class HeaderNamesTests(SynchronousTestCase):
    """
    L{HeaderNames} checks a plugin's names once; C{set_named} sets them.
    """

    def test_checked(self) -> None:
        """
        A name that is not a token, or a name given twice (any case), is
        refused when the names are made.
        """
        self.assertRaises(InvalidHeaderName, HeaderNames, ("X-A", "bad name"))
        self.assertRaises(ValueError, HeaderNames, ("X-A", "x-a"))
        self.assertEqual(HeaderNames(("X-A", b"X-B")).names, (b"X-A", b"X-B"))

    def test_sameAsSetAndRemove(self) -> None:
        """
        Over wire pairs: the lines are those C{remove_headers} for the
        names without a value, then C{set_headers} for the others, make.
        """
        names = HeaderNames(("x-a", "X-New", "server", "X-B"))
        values = ("new", "n", None, b"bytes\r\nX-Evil: 1")
        one = UpstreamRequest(_pairs(), "/", "")
        one.set_named(names, values)
        other = UpstreamRequest(_pairs(), "/", "")
        other.remove_headers(["server"])
        other.set_headers([("x-a", "new"), ("X-New", "n"), ("X-B", b"bytes\r\nX-Evil: 1")])
        self.assertEqual(one.as_is(), other.as_is())
        self.assertEqual(one.as_is(), [(b"Content-Length", b"10"), (b"x-a", b"new"), (b"X-New", b"n"),
                                       (b"X-B", b"bytes X-Evil: 1")])

    def test_lines(self) -> None:
        """
        C{names.lines(values)} are the lines of the names with a value,
        cleaned; C{set_named} adds them as they are. Every value bytes or
        not, the same lines.
        """
        names = HeaderNames(("X-A", "X-B", "X-C"))
        self.assertEqual(names.lines((b"1", b"2\r\n3", b"4")), ((b"X-A", b"1"), (b"X-B", b"2 3"), (b"X-C", b"4")))
        self.assertEqual(names.lines((b"1", None, "4")), ((b"X-A", b"1"), (b"X-C", b"4")))
        self.assertEqual(names.lines([b"1", b"2", b"4"]), names.lines((b"1", b"2", b"4")))
        lines = names.lines(("1", None, "caf\xe9"))
        self.assertIsInstance(lines, HeaderLines)
        editor = UpstreamRequest(_pairs(), "/", "")
        editor.set_named(names, lines)
        self.assertEqual(editor.as_is()[-2:], [(b"X-A", b"1"), (b"X-C", b"caf\xe9")])
        self.assertNotIn(b"x-a", [name.lower() for name, _ in editor.as_is()[:-2]])

    def test_noLines(self) -> None:
        """
        On an editor without lines: the values' lines.
        """
        editor = ResponseState()
        editor.set_named(HeaderNames(("X-A",)), ("1",))
        self.assertEqual(editor.as_is(), [(b"X-A", b"1")])

    def test_headers(self) -> None:
        """
        Over a L{Headers}: each name removed, those with a value set, from
        values or lines.
        """
        names = HeaderNames(("x-a", "X-C", "X-B"))
        for values in (("new", "c", None), names.lines(("new", "c", None))):
            headers = Headers({b"X-A": [b"1", b"3"], b"X-B": [b"2"], b"X-D": [b"4"]})
            HeaderEditor(headers).set_named(names, values)
            self.assertEqual(sorted(headers.getAllRawHeaders()), [(b"X-A", [b"new"]), (b"X-C", [b"c"]),
                                                                   (b"X-D", [b"4"])])


class LinesSizeTests(SynchronousTestCase):
    """
    L{lines_size} is the size of C{name: value} and a CRLF for each line.
    """

    def test_sizes(self) -> None:
        """
        Wire pairs, a L{Headers} (names as it spells them), any iterable
        of pairs, none.
        """
        pairs = _pairs()
        expected = sum(len(name) + len(value) + 4 for name, value in pairs)
        self.assertEqual(lines_size(pairs), expected)
        self.assertEqual(lines_size(iter(pairs)), expected)
        self.assertEqual(lines_size(tuple(pairs)), expected)
        self.assertEqual(lines_size([]), 0)
        headers = Headers({b"x-a": [b"1", b"22"], b"content-type": [b"t"]})
        self.assertEqual(lines_size(headers), len(b"X-A: 1\r\nX-A: 22\r\nContent-Type: t\r\n"))
        self.assertEqual(lines_size(Headers()), 0)

    def test_asWritten(self) -> None:
        """
        The size of the lines as a head carries them: C{name: value}
        joined by CRLFs, with the last CRLF.
        """
        pairs = _pairs()
        written = b"\r\n".join(b": ".join(pair) for pair in pairs) + b"\r\n"
        self.assertEqual(lines_size(pairs), len(written))
        self.assertEqual(len(b"".join(chain.from_iterable(pairs))) + 4 * len(pairs), len(written))


class ViewTests(SynchronousTestCase):
    """
    A plugin view holds the request context's fixed parts as plain
    attributes, the same whichever way it was made.
    """

    def test_fixedParts(self) -> None:
        """
        C{request}, C{response}, C{shared}, C{credentials} and C{started}
        are the context's own.
        """
        ctx = context()
        view = ctx.view("p")
        self.assertEqual((view.request, view.response, view.shared, view.credentials, view.started),
                         (ctx.request, ctx.response, ctx.shared, ctx.credentials, ctx.started))
        self.assertIs(view.shared, ctx.shared)
        self.assertIs(view.response, ctx.response)

    def test_sameAsConstructed(self) -> None:
        """
        C{ctx.view(name)} (made without a call of C{__init__}) has every
        attribute a L{PluginContext} made by its constructor has.
        """
        ctx = context()
        made, constructed = ctx.view("p"), PluginContext(ctx, "p")
        for slot in PluginContext.__slots__:
            self.assertEqual(getattr(made, slot), getattr(constructed, slot), slot)

    def test_livePartsFollow(self) -> None:
        """
        What changes during a request (the upstream request, the route, the
        consumer) is read from the context each time.
        """
        ctx = context()
        view = ctx.view("p")
        ctx.upstream = UpstreamRequest([], "/", "")
        ctx.route = {"id": "r"}
        view.authenticate({"id": "c"}, {"id": "k"})
        self.assertEqual((view.upstream, view.route, view.consumer, ctx.view("q").consumer),
                         (ctx.upstream, {"id": "r"}, {"id": "c"}, {"id": "c"}))
