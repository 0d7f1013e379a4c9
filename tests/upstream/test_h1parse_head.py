"""
Tests for L{echogate.upstream.h1parse}: the response head, its status line and
its header lines.
"""
from __future__ import annotations

from tests.h1cases import DIFFERENCES, INVALID, VALID, _ParserTestCase


class StatusLineTests(_ParserTestCase):
    """
    The status line: C{HTTP/1.x SP 3DIGIT [SP reason] CRLF}.
    """

    def test_status(self) -> None:
        """
        The code, the version and the reason phrase are reported.
        """
        self.assertEqual(self.assertParses(b"HTTP/1.0 404 Not Found\r\n\r\n")[:3],
                         [("begin",), ("status", b"Not Found"), ("head", 404, "1.0", False)])

    def test_empty_reason(self) -> None:
        """
        After the code's space the reason phrase may be empty; it is reported.
        """
        self.assertEqual(self.assertParses(VALID["empty-reason"])[1], ("status", b""))

    def test_no_reason(self) -> None:
        """
        Without the space after the code (llhttp accepts it), no reason phrase
        is reported.
        """
        events = self.assertParses(VALID["no-reason"])
        self.assertEqual(events[:3], [("begin",), ("header", b"Content-Length", b"0"), ("head", 200, "1.1", True)])

    def test_reason_as_sent(self) -> None:
        """
        The reason phrase is everything after the code's space: spaces, HTAB
        and obs-text are kept.
        """
        events = self.assertParses(b"HTTP/1.1 200  a\tb \xe9 \r\n\r\n")
        self.assertEqual(events[1], ("status", b" a\tb \xe9 "))

    def test_code_range(self) -> None:
        """
        Codes from 100 to 999 are taken.
        """
        self.assertEqual(self.assertParses(b"HTTP/1.1 100 C\r\n\r\n")[2], ("head", 100, "1.1", True))
        self.assertEqual(self.assertParses(VALID["code-999"])[3], ("head", 999, "1.1", True))

    def test_code_below_100(self) -> None:
        """
        A code below 100 is an error.
        """
        self.assertBad(DIFFERENCES["status-099"][0])

    def test_code_not_digits(self) -> None:
        """
        A code that is not three digits is an error.
        """
        self.assertBad(INVALID["status-not-number"])

    def test_code_two_digits(self) -> None:
        """
        A two-digit code is an error.
        """
        self.assertBad(INVALID["status-two-digits"])

    def test_code_four_digits(self) -> None:
        """
        A four-digit code is an error.
        """
        self.assertBad(INVALID["status-four-digits"])

    def test_not_http(self) -> None:
        """
        Something other than HTTP is an error.
        """
        self.assertEqual(self.assertBad(INVALID["status-not-http"]), [("begin",)])

    def test_http2(self) -> None:
        """
        C{HTTP/2} is an error.
        """
        self.assertBad(INVALID["status-http2"])

    def test_http20(self) -> None:
        """
        C{HTTP/2.0} is an error.
        """
        self.assertBad(DIFFERENCES["version-2.0"][0])

    def test_http09(self) -> None:
        """
        C{HTTP/0.9} is an error.
        """
        self.assertBad(DIFFERENCES["version-0.9"][0])

    def test_http12(self) -> None:
        """
        C{HTTP/1.2} is an error.
        """
        self.assertBad(INVALID["status-http12"])

    def test_lower_case(self) -> None:
        """
        C{http/1.1} is an error.
        """
        self.assertBad(INVALID["status-lower-case"])

    def test_no_space_before_reason(self) -> None:
        """
        The code must be followed by a space or the end of the line.
        """
        self.assertBad(INVALID["status-no-space"])

    def test_two_spaces_before_code(self) -> None:
        """
        One space between the version and the code.
        """
        self.assertBad(INVALID["status-two-spaces"])

    def test_tab_before_reason(self) -> None:
        """
        HTAB is not a separator in the status line.
        """
        self.assertBad(INVALID["status-tab"])

    def test_reason_control_character(self) -> None:
        """
        A control character in the reason phrase is an error.
        """
        self.assertEqual(self.assertBad(DIFFERENCES["reason-ctl"][0]), [("begin",)])

    def test_reason_bare_cr(self) -> None:
        """
        A CR not followed by LF in the status line is an error.
        """
        self.assertBad(INVALID["status-bare-cr"])

    def test_bare_lf(self) -> None:
        """
        A status line ended by a bare LF is an error.
        """
        self.assertBad(INVALID["status-bare-lf"])

    def test_leading_blank_lines(self) -> None:
        """
        CR and LF bytes before a status line are skipped, as llhttp does,
        without starting a response.
        """
        events = self.assertParses(VALID["blank-lines-around"])
        self.assertEqual([e[0] for e in events], ["begin", "status", "head", "complete"] * 2)


class HeaderTests(_ParserTestCase):
    """
    Header lines: C{name ":" OWS value OWS CRLF}.
    """

    def test_headers(self) -> None:
        """
        Names are reported as sent, values without surrounding whitespace.
        """
        events = self.assertParses(VALID["value-whitespace"])
        self.assertEqual(events[2:7], [("header", b"A", b"b"), ("header", b"B", b"c  d"), ("header", b"C", b""),
                                       ("header", b"D", b""), ("header", b"Content-Length", b"0")])

    def test_token_characters(self) -> None:
        """
        Every token character may be in a name.
        """
        self.assertEqual(self.assertParses(VALID["token-name"])[2], ("header", b"!#$%&'*+-.^_`|~09azAZ", b"x"))

    def test_obs_text_value(self) -> None:
        """
        Bytes 0x80-0xFF and HTAB may be in a value.
        """
        self.assertEqual(self.assertParses(VALID["obs-text"])[2], ("header", b"X-Y", b"\x80a\tb\xff"))

    def test_space_before_colon(self) -> None:
        """
        Whitespace between the name and the colon is an error.
        """
        self.assertBad(INVALID["space-before-colon"])

    def test_space_in_name(self) -> None:
        """
        A space in a name is an error.
        """
        self.assertBad(INVALID["space-in-name"])

    def test_no_colon(self) -> None:
        """
        A line without a colon is an error, also when it is a name seen
        before; the lines before it are reported.
        """
        self.assertParses(b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n")
        events = self.assertBad(INVALID["no-colon"])
        self.assertEqual(events[-1], ("header", b"X", b"1"))

    def test_empty_name(self) -> None:
        """
        An empty name is an error.
        """
        self.assertBad(INVALID["empty-name"])

    def test_separator_in_name(self) -> None:
        """
        A separator in a name is an error.
        """
        self.assertBad(INVALID["separator-in-name"])

    def test_obs_text_in_name(self) -> None:
        """
        A byte above 0x7F in a name is an error.
        """
        self.assertBad(INVALID["obs-text-in-name"])

    def test_obs_fold(self) -> None:
        """
        A line starting with whitespace (obs-fold) is an error.
        """
        self.assertBad(INVALID["obs-fold"])

    def test_first_line_folded(self) -> None:
        """
        A first header line starting with whitespace is an error.
        """
        self.assertBad(INVALID["space-after-status-line"])

    def test_value_nul(self) -> None:
        """
        NUL in a value is an error; the lines before it are reported.
        """
        self.assertEqual(self.assertBad(INVALID["value-nul"])[-1], ("header", b"B", b"d"))

    def test_value_control_character(self) -> None:
        """
        A control character in a value is an error.
        """
        self.assertBad(INVALID["value-ctl"])

    def test_value_vertical_tab(self) -> None:
        """
        VT in a value is an error.
        """
        self.assertBad(INVALID["value-vt"])

    def test_value_del(self) -> None:
        """
        DEL in a value is an error.
        """
        self.assertBad(INVALID["value-del"])

    def test_value_bare_cr(self) -> None:
        """
        A CR not followed by LF in a value is an error.
        """
        self.assertBad(INVALID["value-bare-cr"])

    def test_bare_lf(self) -> None:
        """
        A header line ended by a bare LF is an error.
        """
        self.assertBad(INVALID["header-bare-lf"])

    def test_head_ended_by_bare_lf(self) -> None:
        """
        A head ended by a bare LF is an error.
        """
        self.assertBad(INVALID["head-end-bare-lf"])

    def test_head_ended_by_cr_cr(self) -> None:
        """
        A CR before the head's last CRLF is an error.
        """
        self.assertBad(INVALID["head-end-cr-cr"])
