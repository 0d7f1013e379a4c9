"""
Tests for the PDK's cheaper header calls (issue 25): L{HeaderEditor}'s
C{remove_headers} and C{set_headers} (several headers in one pass over the
lines), L{ClientRequest.get_header_values} and L{ClientRequest.as_is}, and
a plugin view's state made only when asked for.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from echogate.pdk.context import HeaderEditor, PluginContext, ResponseState, UpstreamRequest
from tests.pdk.test_context import client, context


def _pairs() -> list[tuple[bytes, bytes]]:
    return [(b"Server", b"nginx"), (b"x-a", b"1"), (b"X-B", b"2"), (b"X-A", b"3"), (b"Content-Length", b"10")]


class RemoveHeadersTests(SynchronousTestCase):
    """
    C{remove_headers} removes every line of every name given, any case.
    """

    def test_pairs(self) -> None:
        """
        Over wire pairs: the other lines stay, in order.
        """
        editor = UpstreamRequest(_pairs(), "/", "")
        editor.remove_headers(("X-A", "x-b", "absent"))
        self.assertEqual(editor.as_is(), [(b"Server", b"nginx"), (b"Content-Length", b"10")])

    def test_nothingToRemove(self) -> None:
        """
        Names that are absent leave the lines as they were.
        """
        pairs = _pairs()
        editor = UpstreamRequest(pairs, "/", "")
        editor.remove_headers(["x-c", "Server-Timing"])
        self.assertEqual(editor.as_is(), _pairs())

    def test_sameLengthOtherName(self) -> None:
        """
        A line whose name has a removed name's length but another name
        stays.
        """
        editor = UpstreamRequest([(b"x-aa", b"1"), (b"x-ab", b"2")], "/", "")
        editor.remove_headers(("X-AB",))
        self.assertEqual(editor.as_is(), [(b"x-aa", b"1")])

    def test_headers(self) -> None:
        """
        Over a L{Headers}: each name removed.
        """
        headers = Headers({b"X-A": [b"1", b"3"], b"X-B": [b"2"], b"X-C": [b"4"]})
        HeaderEditor(headers).remove_headers(("x-a", "X-B"))
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"X-C", [b"4"])])


class SetHeadersTests(SynchronousTestCase):
    """
    C{set_headers} replaces each header given, as C{set_header} does for
    each.
    """

    def test_pairs(self) -> None:
        """
        Over wire pairs: every line of a name given goes (any case), the
        new lines come last, in the order given; a mapping or pairs.
        """
        state = ResponseState()
        state.replace_headers(_pairs())
        state.set_headers({"X-A": "new", "X-New": "n"})
        self.assertEqual(state.as_is(), [(b"Server", b"nginx"), (b"X-B", b"2"), (b"Content-Length", b"10"),
                                         (b"X-A", b"new"), (b"X-New", b"n")])
        state.set_headers([("server", b"echogate")])
        self.assertEqual(state.get_header("Server"), "echogate")
        self.assertEqual(state.as_is()[-1], (b"server", b"echogate"))

    def test_sameAsSetHeader(self) -> None:
        """
        The lines are those that C{set_header} for each would make.
        """
        one, other = ResponseState(), ResponseState()
        one.replace_headers(_pairs())
        other.replace_headers(_pairs())
        values = [("x-b", "5"), ("Content-Length", "11"), ("X-Other", "line\r\nbreak")]
        one.set_headers(values)
        for name, value in values:
            other.set_header(name, value)
        self.assertEqual(one.as_is(), other.as_is())

    def test_repeatedName(self) -> None:
        """
        A name given twice (any case): the last value only.
        """
        editor = UpstreamRequest([], "/", "")
        editor.set_headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3")])
        self.assertEqual(editor.as_is(), [(b"X-B", b"2"), (b"x-a", b"3")])

    def test_invalidName(self) -> None:
        """
        A name that is not a token is refused, and nothing changes.
        """
        editor = UpstreamRequest(_pairs(), "/", "")
        self.assertRaises(InvalidHeaderName, editor.set_headers, {"X-A": "1", "bad name": "2"})
        self.assertEqual(editor.as_is(), _pairs())

    def test_lineBreaks(self) -> None:
        """
        A line break in a value becomes a space: no value adds a header.
        """
        editor = UpstreamRequest([], "/", "")
        editor.set_headers({"X-A": "one\r\nX-Evil: 1"})
        self.assertEqual(editor.as_is(), [(b"X-A", b"one X-Evil: 1")])

    def test_headers(self) -> None:
        """
        Over a L{Headers}: each name set.
        """
        headers = Headers({b"X-A": [b"1", b"3"], b"X-B": [b"2"]})
        HeaderEditor(headers).set_headers({"x-a": "new", "X-C": "c"})
        self.assertEqual(headers.getRawHeaders(b"x-a"), [b"new"])
        self.assertEqual(headers.getRawHeaders(b"x-b"), [b"2"])
        self.assertEqual(headers.getRawHeaders(b"x-c"), [b"c"])


class ClientRequestTests(SynchronousTestCase):
    """
    The client request's header values and headers as received.
    """

    def test_values(self) -> None:
        """
        C{get_header_values} gives every value of a header, any case, in
        order; C{[]} when absent.
        """
        request = client({b"X-Key": [b"a", b"b"], b"Other": [b"c"]})
        self.assertEqual(request.get_header_values("x-key"), ["a", "b"])
        self.assertEqual(request.get_header_values("Other"), ["c"])
        self.assertEqual(request.get_header_values("absent"), [])

    def test_asIs(self) -> None:
        """
        C{as_is} is the request's own L{Headers}, not a copy.
        """
        request = client({b"X-Key": [b"a"]})
        self.assertIs(request.as_is(), request._request.requestHeaders)


class PluginStateTests(SynchronousTestCase):
    """
    A plugin view's own state is made when first asked for.
    """

    def test_lazy(self) -> None:
        """
        A view whose plugin never reads C{ctx.plugin} makes no state; once
        read, it is the request's state for that plugin, the same for
        every view of it.
        """
        ctx = context()
        view = PluginContext(ctx, "quiet")
        self.assertEqual(ctx._plugin_state, {})
        state = view.plugin
        state["n"] = 1
        self.assertIs(PluginContext(ctx, "quiet").plugin, state)
        self.assertIs(ctx.plugin_state("quiet"), state)
