"""
Tests for L{echogate.pdk.context}: L{HeaderEditor}, over a L{Headers} or
over wire pairs, and its two subclasses that plugins edit:
L{UpstreamRequest} (C{ctx.upstream}) and L{ResponseState}
(C{ctx.response}).
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from echogate.pdk.context import HeaderEditor, ResponseState, UpstreamRequest


class HeaderEditorTests(SynchronousTestCase):
    """
    L{HeaderEditor} reads and changes headers by name, case-insensitively.
    """

    def setUp(self) -> None:
        self.headers = Headers({b"X-One": [b"1", b"uno"]})
        self.editor = HeaderEditor(self.headers)

    def test_get(self) -> None:
        """
        C{get_header} gives the first value, whatever the case; C{None} when
        absent.
        """
        self.assertEqual(self.editor.get_header("x-one"), "1")
        self.assertEqual(self.editor.get_header("X-ONE"), "1")
        self.assertIsNone(self.editor.get_header("x-two"))

    def test_getHeaders(self) -> None:
        """
        C{get_headers} gives every header, lower-case name to values.
        """
        self.assertEqual(self.editor.get_headers(), {"x-one": ["1", "uno"]})

    def test_set(self) -> None:
        """
        C{set_header} replaces every value, with one or several.
        """
        self.editor.set_header("X-ONE", "only")
        self.assertEqual(self.headers.getRawHeaders(b"x-one"), [b"only"])
        self.editor.set_header("x-many", ["a", "b"])
        self.assertEqual(self.headers.getRawHeaders(b"x-many"), [b"a", b"b"])

    def test_add(self) -> None:
        """
        C{add_header} keeps the values already there.
        """
        self.editor.add_header("x-one", "2")
        self.assertEqual(self.headers.getRawHeaders(b"x-one"), [b"1", b"uno", b"2"])

    def test_remove(self) -> None:
        """
        C{remove_header} removes every value; removing an absent header is
        fine.
        """
        self.editor.remove_header("X-One")
        self.editor.remove_header("x-absent")
        self.assertFalse(self.headers.hasHeader(b"x-one"))

    def test_latin1(self) -> None:
        """
        Values are latin-1 text.
        """
        self.editor.set_header("x-name", "café")
        self.assertEqual(self.headers.getRawHeaders(b"x-name"), ["café".encode("latin-1")])
        self.assertEqual(self.editor.get_header("x-name"), "café")


class PairsHeaderEditorTests(SynchronousTestCase):
    """
    A L{HeaderEditor} that starts as wire pairs reads and changes them
    without building a L{Headers}, until one is asked for.
    """

    def setUp(self) -> None:
        self.pairs = [(b"X-One", b"1"), (b"Content-Type", b"text/plain"), (b"x-one", b"uno")]
        self.editor = HeaderEditor(None, self.pairs)

    def test_get(self) -> None:
        """
        C{get_header} gives the first value, whatever the case; C{None} when
        absent; the pairs stay pairs.
        """
        self.assertEqual(self.editor.get_header("X-ONE"), "1")
        self.assertIsNone(self.editor.get_header("x-two"))
        self.assertIs(self.editor.as_is(), self.pairs)

    def test_getHeaders(self) -> None:
        """
        C{get_headers} gives every header, lower-case name to values.
        """
        self.assertEqual(self.editor.get_headers(), {"x-one": ["1", "uno"], "content-type": ["text/plain"]})

    def test_set(self) -> None:
        """
        C{set_header} replaces every value of the name, whatever its case,
        with one or several.
        """
        self.editor.set_header("X-ONE", "only")
        self.assertEqual(self.editor.as_is(), [(b"Content-Type", b"text/plain"), (b"X-ONE", b"only")])
        self.editor.set_header("x-many", ["a", "b"])
        self.assertEqual(self.editor.as_is()[-2:], [(b"x-many", b"a"), (b"x-many", b"b")])

    def test_add(self) -> None:
        """
        C{add_header} keeps the values already there.
        """
        self.editor.add_header("x-one", "2")
        self.assertEqual(self.editor.as_is()[-1], (b"x-one", b"2"))
        self.assertEqual(self.editor.get_headers()["x-one"], ["1", "uno", "2"])

    def test_remove(self) -> None:
        """
        C{remove_header} removes every value; removing an absent header is
        fine.
        """
        self.editor.remove_header("X-One")
        self.editor.remove_header("x-absent")
        self.assertEqual(self.editor.as_is(), [(b"Content-Type", b"text/plain")])

    def test_badName(self) -> None:
        """
        A name that is not a token is refused, as L{Headers} refuses it, and
        nothing changes.
        """
        for name in ("bad name", "x:y", "", "x\r\ny"):
            self.assertRaises(InvalidHeaderName, self.editor.set_header, name, "v")
            self.assertRaises(InvalidHeaderName, self.editor.add_header, name, "v")
        self.assertEqual(len(self.editor.as_is()), 3)

    def test_lineBreaks(self) -> None:
        """
        Line breaks in a value become spaces: a value cannot add a header.
        """
        self.editor.set_header("x-a", "one\r\nX-Evil: two")
        self.editor.add_header("x-b", "three\nfour")
        self.assertEqual(self.editor.as_is()[-2:], [(b"x-a", b"one X-Evil: two"), (b"x-b", b"three four")])

    def test_startsEmpty(self) -> None:
        """
        An editor with neither pairs nor headers collects pairs.
        """
        editor = HeaderEditor()
        self.assertIsNone(editor.get_header("x"))
        editor.set_header("X-A", "1")
        self.assertEqual(editor.as_is(), [(b"X-A", b"1")])

    def test_headersObject(self) -> None:
        """
        Asking for C{headers} builds a L{Headers} from the pairs, in order;
        from then on the methods change that object.
        """
        headers = self.editor.headers
        self.assertEqual(headers.getRawHeaders(b"x-one"), [b"1", b"uno"])
        self.editor.set_header("x-two", "2")
        self.assertIs(self.editor.as_is(), headers)
        self.assertEqual(headers.getRawHeaders(b"x-two"), [b"2"])


class UpstreamRequestTests(SynchronousTestCase):
    """
    L{UpstreamRequest} (C{ctx.upstream}) is what will be sent to the
    service.
    """

    def setUp(self) -> None:
        self.upstream = UpstreamRequest(Headers(), "/svc/x", "a=1")

    def test_setPath(self) -> None:
        """
        C{set_path} replaces the path.
        """
        self.upstream.set_path("/other")
        self.assertEqual(self.upstream.path, "/other")

    def test_setPathRelative(self) -> None:
        """
        A path not starting with C{/} is refused.
        """
        self.assertRaises(ValueError, self.upstream.set_path, "relative")
        self.assertEqual(self.upstream.path, "/svc/x")

    def test_setQueryString(self) -> None:
        """
        C{set_query} takes a ready query string.
        """
        self.upstream.set_query("b=2")
        self.assertEqual(self.upstream.query, "b=2")

    def test_setQueryMapping(self) -> None:
        """
        C{set_query} encodes a mapping, lists as repeated arguments.
        """
        self.upstream.set_query({"b": ["1", "2"], "c": "x y"})
        self.assertEqual(self.upstream.query, "b=1&b=2&c=x+y")

    def test_headers(self) -> None:
        """
        Headers are edited in place.
        """
        self.upstream.set_header("X-Up", "1")
        self.assertEqual(self.upstream.headers.getRawHeaders(b"x-up"), [b"1"])


class ResponseStateTests(SynchronousTestCase):
    """
    L{ResponseState} (C{ctx.response}) is the response on its way.
    """

    def test_setStatus(self) -> None:
        """
        C{set_status} takes an HTTP status.
        """
        state = ResponseState()
        state.set_status(201)
        self.assertEqual(state.status, 201)

    def test_setStatusInvalid(self) -> None:
        """
        Anything but an integer from 100 to 599 is refused.
        """
        state = ResponseState()
        for status in (99, 600, "200", None, 200.0):
            self.assertRaises(ValueError, state.set_status, status)
        self.assertIsNone(state.status)

    def test_upstreamHeader(self) -> None:
        """
        C{get_upstream_header} reads the upstream's own headers; C{None}
        when there was no upstream response.
        """
        state = ResponseState()
        self.assertIsNone(state.get_upstream_header("x-up"))
        state.upstream_headers = Headers({b"X-Up": [b"1"]})
        self.assertEqual(state.get_upstream_header("x-UP"), "1")
        self.assertIsNone(state.get_upstream_header("x-absent"))

    def test_replaceHeaders(self) -> None:
        """
        After C{replace_headers}, edits go to the new headers.
        """
        state = ResponseState()
        new = Headers()
        state.replace_headers(new)
        state.set_header("x-a", "1")
        self.assertEqual(new.getRawHeaders(b"x-a"), [b"1"])
        self.assertIs(state.headers, new)

    def test_replaceHeadersWithPairs(self) -> None:
        """
        C{replace_headers} takes wire pairs too; edits change them.
        """
        state = ResponseState()
        state.replace_headers([(b"X-Up", b"1")])
        state.set_header("x-a", "2")
        self.assertEqual(state.as_is(), [(b"X-Up", b"1"), (b"x-a", b"2")])

    def test_changedEarly(self) -> None:
        """
        C{changed_early} says whether a header was set before the response
        head existed, as pairs or in a L{Headers}.
        """
        state = ResponseState()
        self.assertFalse(state.changed_early)
        state.set_header("x-a", "1")
        self.assertTrue(state.changed_early)
        state = ResponseState()
        state.headers.setRawHeaders(b"x-b", [b"2"])
        self.assertTrue(state.changed_early)

    def test_fromService(self) -> None:
        """
        C{from_service} keeps the service's headers as C{upstream_headers}
        and answers C{changed_early}.
        """
        up = Headers({b"X-Up": [b"1"]})
        state = ResponseState()
        self.assertFalse(state.from_service(up))
        self.assertIs(state.upstream_headers, up)
        state = ResponseState()
        state.set_header("x-a", "1")
        self.assertTrue(state.from_service(up))
        state = ResponseState()
        state.headers.setRawHeaders(b"x-b", [b"2"])
        self.assertTrue(state.from_service(None))
        self.assertIsNone(state.upstream_headers)
