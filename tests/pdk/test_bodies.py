"""
Tests for L{echogate.pdk.bodies}: JSON, URL-encoded and multipart bodies.
"""
from __future__ import annotations

from io import BytesIO

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from echogate.errors import InvalidBody, UnsupportedMediaType
from echogate.pdk.bodies import (
    CANNOT_PARSE_FORM,
    CANNOT_PARSE_JSON,
    CANNOT_PARSE_MULTIPART,
    JSON_NOT_OBJECT,
    Body,
    BodyTooLarge,
    parse_body,
    read_body,
    read_limited,
)

BOUNDARY = "----echogate-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, bytes], extra_headers: bytes = b"") -> bytes:
    """
    A multipart/form-data body with one part per C{(name, value)}.
    """
    out = b""
    for name, value in parts:
        out += (
            b"--" + BOUNDARY.encode() + b"\r\n"
            b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n'
            + extra_headers + b"\r\n" + value + b"\r\n"
        )
    return out + b"--" + BOUNDARY.encode() + b"--\r\n"


class JSONBodyTests(SynchronousTestCase):
    """
    Tests for JSON bodies.
    """

    def test_object(self) -> None:
        """
        A JSON object is kept with its values typed.
        """
        body = parse_body("application/json", b'{"port": 80, "tags": ["a"], "x": null}')
        self.assertEqual(body, Body(json={"port": 80, "tags": ["a"], "x": None}))
        self.assertFalse(body.is_form)

    def test_charset_parameter(self) -> None:
        """
        Parameters of the content type do not matter.
        """
        body = parse_body("Application/JSON; charset=utf-8", '{"name": "é"}'.encode())
        self.assertEqual(body.json, {"name": "é"})

    def test_suffix(self) -> None:
        """
        A C{+json} media type is JSON.
        """
        self.assertEqual(parse_body("application/merge-patch+json", b"{}").json, {})

    def test_invalid(self) -> None:
        """
        JSON that does not parse is C{InvalidBody} "Cannot parse JSON body".
        """
        e = self.assertRaises(InvalidBody, parse_body, "application/json", b"{nope")
        self.assertEqual(e.body(), {"message": CANNOT_PARSE_JSON})
        self.assertEqual(e.status, 400)

    def test_empty(self) -> None:
        """
        An empty body that claims to be JSON cannot be parsed.
        """
        e = self.assertRaises(InvalidBody, parse_body, "application/json", b"")
        self.assertEqual(e.message, CANNOT_PARSE_JSON)

    def test_not_utf8(self) -> None:
        """
        Bytes that are not text cannot be parsed.
        """
        e = self.assertRaises(InvalidBody, parse_body, "application/json", b'{"a": "\xff"}')
        self.assertEqual(e.message, CANNOT_PARSE_JSON)

    def test_not_an_object(self) -> None:
        """
        A JSON array, string or number is refused: the body must be an object.
        """
        for data in (b"[1]", b'"x"', b"3", b"null"):
            e = self.assertRaises(InvalidBody, parse_body, "application/json", data)
            self.assertEqual(e.body(), {"message": JSON_NOT_OBJECT}, f"row data={data!r}")

    def test_no_nan(self) -> None:
        """
        C{NaN} and C{Infinity} are not JSON.
        """
        for data in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'):
            e = self.assertRaises(InvalidBody, parse_body, "application/json", data)
            self.assertEqual(e.message, CANNOT_PARSE_JSON, f"row data={data!r}")


class URLEncodedBodyTests(SynchronousTestCase):
    """
    Tests for C{application/x-www-form-urlencoded} bodies.
    """

    def test_pairs_in_order(self) -> None:
        """
        The body's pairs are kept in order, repeated names too, values untyped.
        """
        body = parse_body(
            "application/x-www-form-urlencoded",
            b"name=a&hosts[]=x.com&hosts[]=y.com&config.limit=5&port=80",
        )
        self.assertTrue(body.is_form)
        self.assertEqual(body.pairs, (
            ("name", "a"), ("hosts[]", "x.com"), ("hosts[]", "y.com"),
            ("config.limit", "5"), ("port", "80"),
        ))

    def test_blank_values_and_escapes(self) -> None:
        """
        Blank values are kept; C{+} and percent escapes are decoded.
        """
        body = parse_body("application/x-www-form-urlencoded; charset=utf-8",
                          b"path=&name=a+b&x=%C3%A9%2F")
        self.assertEqual(body.pairs, (("path", ""), ("name", "a b"), ("x", "é/")))

    def test_empty(self) -> None:
        """
        An empty form has no pairs.
        """
        self.assertEqual(parse_body("application/x-www-form-urlencoded", b"").pairs, ())

    def test_not_utf8(self) -> None:
        """
        A form whose values are not UTF-8 is C{InvalidBody}.
        """
        for data in (b"name=%ff", b"name=\xff"):
            e = self.assertRaises(InvalidBody, parse_body,
                                  "application/x-www-form-urlencoded", data)
            self.assertEqual(e.body(), {"message": CANNOT_PARSE_FORM}, f"row data={data!r}")


class MultipartBodyTests(SynchronousTestCase):
    """
    Tests for C{multipart/form-data} bodies.
    """

    def test_pairs_in_order(self) -> None:
        """
        Each part is one pair, in order, its value decoded as UTF-8.
        """
        data = multipart(("name", b"svc"), ("port", b"8080"), ("x.y", "é".encode()))
        body = parse_body(MULTIPART, data)
        self.assertEqual(body.pairs, (("name", "svc"), ("port", "8080"), ("x.y", "é")))

    def test_part_charset(self) -> None:
        """
        A part's own charset decodes its value.
        """
        data = multipart(("name", "é".encode("latin-1")),
                         extra_headers=b"Content-Type: text/plain; charset=latin-1\r\n")
        self.assertEqual(parse_body(MULTIPART, data).pairs, (("name", "é"),))

    def test_empty(self) -> None:
        """
        An empty multipart body has no pairs.
        """
        self.assertEqual(parse_body(MULTIPART, b"").pairs, ())
        self.assertEqual(parse_body("multipart/form-data", b"").pairs, ())

    def test_no_boundary(self) -> None:
        """
        A multipart body without a boundary in its content type is C{InvalidBody}.
        """
        e = self.assertRaises(InvalidBody, parse_body, "multipart/form-data",
                              multipart(("a", b"b")))
        self.assertEqual(e.body(), {"message": CANNOT_PARSE_MULTIPART})

    def test_truncated(self) -> None:
        """
        A multipart body cut short is C{InvalidBody}.
        """
        data = multipart(("a", b"b"))[:-12]
        e = self.assertRaises(InvalidBody, parse_body, MULTIPART, data)
        self.assertEqual(e.message, CANNOT_PARSE_MULTIPART)

    def test_garbage(self) -> None:
        """
        A body that is not multipart at all is C{InvalidBody}.
        """
        e = self.assertRaises(InvalidBody, parse_body, MULTIPART, b"name=x")
        self.assertEqual(e.message, CANNOT_PARSE_MULTIPART)

    def test_not_utf8(self) -> None:
        """
        A part that is not text in its charset is C{InvalidBody}.
        """
        e = self.assertRaises(InvalidBody, parse_body, MULTIPART, multipart(("a", b"\xff")))
        self.assertEqual(e.message, CANNOT_PARSE_MULTIPART)


class OtherBodyTests(SynchronousTestCase):
    """
    Tests for bodies without a content type or with another one.
    """

    def test_empty_without_type(self) -> None:
        """
        An empty body without a content type is an empty object.
        """
        self.assertEqual(parse_body(None, b""), Body(json={}))

    def test_empty_other_type(self) -> None:
        """
        An empty body of another type is an empty object.
        """
        self.assertEqual(parse_body("text/plain", b""), Body(json={}))

    def test_body_without_type(self) -> None:
        """
        A body without a content type is C{UnsupportedMediaType} (415).
        """
        e = self.assertRaises(UnsupportedMediaType, parse_body, None, b"name=x")
        self.assertEqual(e.status, 415)
        self.assertEqual(e.body(), {"message": "Unsupported Content-Type"})

    def test_body_other_type(self) -> None:
        """
        A body of another type is C{UnsupportedMediaType}.
        """
        self.assertRaises(UnsupportedMediaType, parse_body, "text/plain", b"x")
        self.assertRaises(UnsupportedMediaType, parse_body, "application/xml", b"<a/>")


class BodyNamesTests(SynchronousTestCase):
    """
    Tests for L{Body.names}.
    """

    def test_json(self) -> None:
        """
        A JSON body's names are its keys.
        """
        self.assertEqual(Body(json={"a": 1, "config": {"b": 2}}).names(), {"a", "config"})

    def test_form(self) -> None:
        """
        A form's names are the top-level fields its pairs set.
        """
        body = Body(pairs=(("config.x", "1"), ("hosts[]", "a"), ("name", "n"),
                           ("headers.x-a", "b")))
        self.assertEqual(body.names(), {"config", "hosts", "name", "headers"})


class ReadBodyTests(SynchronousTestCase):
    """
    Tests for L{read_body} and L{read_limited}.
    """

    def request(self, content: bytes, content_type: bytes | None) -> DummyRequest:
        request = DummyRequest([b"services"])
        request.method = b"PATCH"
        request.content = BytesIO(content)
        request.content.seek(len(content))
        if content_type is not None:
            request.requestHeaders.setRawHeaders(b"content-type", [content_type])
        return request

    def test_reads_content(self) -> None:
        """
        The whole content is read from its start, whatever the method.
        """
        request = self.request(b'{"a": 1}', b"application/json")
        self.assertEqual(read_body(request), Body(json={"a": 1}))

    def test_query_is_not_body(self) -> None:
        """
        Query arguments on the request are not part of the body.
        """
        request = self.request(b"", None)
        request.args = {b"name": [b"x"]}
        self.assertEqual(read_body(request), Body(json={}))

    def test_rewinds(self) -> None:
        """
        The content is left at its start for whoever reads it next.
        """
        request = self.request(b"host=a", b"application/x-www-form-urlencoded")
        read_body(request)
        self.assertEqual(request.content.read(), b"host=a")

    def test_limit(self) -> None:
        """
        A body of exactly the limit is read; one byte more is C{BodyTooLarge} (413).
        """
        request = self.request(b'{"a": "xx"}', b"application/json")
        self.assertEqual(read_body(request, limit=11), Body(json={"a": "xx"}))
        e = self.assertRaises(BodyTooLarge, read_body, request, limit=10)
        self.assertEqual(e.status, 413)
        self.assertEqual(e.body(), {"message": "Request body larger than 10 bytes"})

    def test_no_content(self) -> None:
        """
        A request without content reads as empty.
        """
        self.assertEqual(read_limited(None, 10), b"")
