"""
Property tests of the Admin API against the real PostgreSQL: no JSON,
form or multipart body POSTed, PUT or PATCHed to any entity's collection
makes it answer 5xx.

The bodies are drawn by hypothesis from each entity's own schema (so that
many get past the first check and reach the database), mixed with junk:
text with NUL characters and lone surrogates, values too long for an
index, wrong types, unknown fields. Hypothesis runs in a thread and sends
each request through the reactor (C{blockingCallFromThread}) to a whole
node on 127.0.0.1, so the answers are the real ones. The examples are
derandomized (the same on every run) and bounded per collection.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Mapping
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, threads
from twisted.internet.defer import ensureDeferred
from twisted.trial import unittest

from echogate.entities import credentials
from echogate.entities.schemas import ENTITIES, plugin_schema
from echogate.schema import Array, Boolean, Field, Foreign, Integer, Map, Number, Record, String
from tests.gateway import RunningGateway, start_gateway

#: Examples per collection: enough to reach every field many times, few
#: enough that the module runs in about half a minute.
EXAMPLES = 100

_NASTY_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff", "\n", ",", "/", "é", "\U0001f600", " ", "~"])
_CHARS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())


def _texts(long: int = 3000) -> st.SearchStrategy[str]:
    """
    Any text: short and ordinary, short with the characters PostgreSQL
    refuses, or too long for an index (up to C{long} characters).
    """
    return st.one_of(
        st.text(_CHARS, max_size=12),
        st.lists(st.one_of(_NASTY_CHARS, st.sampled_from("ab.-_1")), max_size=8).map("".join),
        st.tuples(st.sampled_from(["a", "é", "\U0001f600", "\x00"]),
                  st.sampled_from([513, long])).map(lambda t: t[0] * t[1]),
        st.sampled_from(["example.com", "/p", "~/r$", "GET", "http", "https", "*.example.com",
                         "10.0.0.0/8", "HS256", "X-Foo", "http://example.com:81/x"]),
    )


def _junk() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                  st.floats(allow_nan=False, allow_infinity=False), _texts()),
        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                st.dictionaries(_texts(), inner, max_size=3)),
        max_leaves=6,
    )


def _values(field: Field, ids: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """
    Values shaped for C{field} (often valid), or junk.
    """
    if depth > 3:
        return _junk()
    shaped: st.SearchStrategy[Any]
    if isinstance(field, String):
        shaped = st.sampled_from(list(field.one_of)) if field.one_of else _texts()
    elif isinstance(field, (Integer, Number)):
        shaped = st.integers(min_value=-2**40, max_value=2**40)
    elif isinstance(field, Boolean):
        shaped = st.booleans()
    elif isinstance(field, Foreign):
        shaped = st.one_of(st.sampled_from(ids).map(lambda i: {"id": i}),
                           st.dictionaries(st.sampled_from(["id", "name", "username"]), _texts(), max_size=2))
    elif isinstance(field, Array):
        shaped = st.lists(_values(field.elements, ids, depth + 1), max_size=3)
    elif isinstance(field, Map):
        shaped = st.dictionaries(_texts(), _values(field.values, ids, depth + 1), max_size=2)
    elif isinstance(field, Record):
        shaped = _records(field, ids, depth + 1)
    else:
        shaped = _junk()
    return st.one_of(shaped, shaped, shaped, _junk())


def _records(schema: Record, ids: list[str], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    optional = {name: _values(field, ids, depth) for name, field in schema.fields.items()
                if name not in ("created_at", "updated_at")}
    return st.tuples(
        st.fixed_dictionaries({}, optional=optional),
        st.dictionaries(_texts(), _junk(), max_size=1),
    ).map(lambda both: {**both[1], **both[0]})


def _plugin_bodies(plugins: Mapping[str, Any], ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    def one(name: str) -> st.SearchStrategy[dict[str, Any]]:
        return _records(plugin_schema(plugins[name]), ids).map(lambda body: {**body, "name": name})

    return st.one_of(st.sampled_from(sorted(plugins)).flatmap(one), _records(ENTITIES["plugins"].schema, ids))


def _flat(body: Any, prefix: str = "") -> list[tuple[str, str]]:
    """
    A body as form pairs, the way Kong's forms nest (C{a.b}, C{a[]}).
    """
    if isinstance(body, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in body.items():
            pairs += _flat(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    if isinstance(body, list):
        return [pair for item in body for pair in _flat(item, f"{prefix}[]")]
    if body is None:
        return [(prefix, "")]
    if isinstance(body, bool):
        return [(prefix, "true" if body else "false")]
    return [(prefix, str(body))]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def encoded(body: dict[str, Any], kind: str) -> tuple[bytes, str]:
    """
    C{body} as a request body of C{kind} (C{json}, C{form} or
    C{multipart}), and its content type.
    """
    if kind == "json":
        return json.dumps(body).encode("ascii"), "application/json"
    pairs = _flat(body)
    if kind == "form":
        data = "&".join(f"{quote(_bytes(k), safe='')}={quote(_bytes(v), safe='')}" for k, v in pairs)
        return data.encode("ascii"), "application/x-www-form-urlencoded"
    boundary = "echogate-property-boundary"
    parts = [
        b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"" + _bytes(k).replace(b'"', b"%22")
        + b"\"\r\n\r\n" + _bytes(v) + b"\r\n"
        for k, v in pairs
    ]
    return b"".join(parts) + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


class AdminBodiesTests(unittest.TestCase):
    """
    No body sent to any entity's collection makes the Admin API answer 5xx.
    """

    timeout = 300

    async def setUp(self) -> None:
        # Hashing is slow on purpose; these tests are about the answers.
        self.patch(credentials, "hash_password", lambda password, **kw: "$scrypt$fast$" + password)
        self.gw: RunningGateway = await start_gateway(self)
        self.ids: dict[str, str] = {}
        for entity, path, body in [
            ("services", "/services", {"name": "s", "host": "example.com"}),
            ("routes", "/routes", {"name": "r", "paths": ["/r"], "service": {"name": "s"}}),
            ("consumers", "/consumers", {"username": "alice"}),
            ("plugins", "/plugins", {"name": "request-termination"}),
            (credentials.KEYAUTH, "/consumers/alice/key-auth", {"key": "k"}),
            (credentials.BASICAUTH, "/consumers/alice/basic-auth", {"username": "u", "password": "p"}),
            (credentials.JWT, "/consumers/alice/jwt", {"key": "j"}),
            (credentials.ACLS, "/consumers/alice/acls", {"group": "g"}),
        ]:
            answer = await self.gw.admin("POST", path, json=body)
            self.assertEqual(answer.code, 201, answer.body)
            self.ids[entity] = answer.json()["id"]

    def check(self, collection: str, entity: str,
              bodies: Callable[[list[str]], st.SearchStrategy[dict[str, Any]]]) -> Any:
        """
        Run the property for C{collection} (its path) in a thread.
        """
        ids = list(self.ids.values()) + [str(uuid.UUID(int=1))]
        existing = self.ids[entity]
        gw = self.gw

        def send(method: str, path: str, data: bytes, content_type: str) -> Any:
            return threads.blockingCallFromThread(
                reactor, lambda: ensureDeferred(gw.admin(method, path, data=data, allow_redirects=False,
                                                         headers={"Content-Type": content_type})))

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies(ids), kind=st.sampled_from(["json", "json", "form", "multipart"]),
               method=st.sampled_from(["POST", "PUT", "PATCH"]),
               # A key in the path: kept within the request line's limit (16 KiB).
               key=_texts(long=600))
        def never_5xx(body: dict[str, Any], kind: str, method: str, key: str) -> None:
            data, content_type = encoded(body, kind)
            path = collection
            if method == "PATCH":
                path += "/" + existing
            elif method == "PUT":
                path += "/" + quote(_bytes(key), safe="")
            answer = send(method, path, data, content_type)
            assert answer.code < 500, (method, path, data[:300], answer)
            if answer.code >= 400 and answer.code != 405:
                assert "message" in answer.json(), answer

        return threads.deferToThread(never_5xx)

    def entity_bodies(self, entity: str) -> Callable[[list[str]], st.SearchStrategy[dict[str, Any]]]:
        return lambda ids: _records(ENTITIES[entity].schema, ids)

    def test_services(self) -> Any:
        """
        Bodies for services never answer 5xx.
        """
        return self.check("/services", "services", lambda ids: st.one_of(
            _records(ENTITIES["services"].schema, ids),
            st.fixed_dictionaries({"url": _texts()}, optional={"name": _texts()})))

    def test_routes(self) -> Any:
        """
        Bodies for routes never answer 5xx.
        """
        return self.check("/routes", "routes", self.entity_bodies("routes"))

    def test_consumers(self) -> Any:
        """
        Bodies for consumers never answer 5xx.
        """
        return self.check("/consumers", "consumers", self.entity_bodies("consumers"))

    def test_plugins(self) -> Any:
        """
        Bodies for plugins, with every bundled plugin's config schema, never
        answer 5xx.
        """
        plugins = self.gw.service.plugins
        return self.check("/plugins", "plugins", lambda ids: _plugin_bodies(plugins, ids))

    def test_keyAuth(self) -> Any:
        """
        Bodies for key-auth credentials, under a consumer, never answer 5xx.
        """
        return self.check("/consumers/alice/key-auth", credentials.KEYAUTH,
                          self.entity_bodies(credentials.KEYAUTH))

    def test_basicAuth(self) -> Any:
        """
        Bodies for basic-auth credentials, at the top level, never answer 5xx.
        """
        return self.check("/basic-auths", credentials.BASICAUTH, self.entity_bodies(credentials.BASICAUTH))

    def test_jwt(self) -> Any:
        """
        Bodies for jwt secrets, under a consumer, never answer 5xx.
        """
        return self.check("/consumers/alice/jwt", credentials.JWT, self.entity_bodies(credentials.JWT))

    def test_acls(self) -> Any:
        """
        Bodies for acls, at the top level, never answer 5xx.
        """
        return self.check("/acls", credentials.ACLS, self.entity_bodies(credentials.ACLS))
