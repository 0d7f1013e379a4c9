"""
Tests for L{echogate.entities.credentials}: the credential entities' schemas, what
happens to them on write, and password hashing. The in-memory index the data
path reads is tested in L{tests.pdk.test_credentials_index}; the helpers at the
end serve the auth plugins' tests.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.trial.unittest import SynchronousTestCase

from echogate.entities import credentials
from echogate.entities.credentials import (
    ACLS,
    BASICAUTH,
    JWT,
    KEYAUTH,
    fill_generated,
    hash_password,
    on_write,
    verify_password,
)
from echogate.entities.schemas import ENTITIES, plugin_schema
from echogate.entities.writes import prepare_insert, prepare_update
from echogate.errors import SchemaViolation
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.schema.fields import String

ALICE = "00000000-0000-4000-8000-00000000000a"
BOB = "00000000-0000-4000-8000-00000000000b"
NOW = 1700000000
NEW_ID = "00000000-0000-4000-8000-0000000000c1"


@functools.lru_cache(maxsize=None)
def public_pem(kind: str) -> str:
    """
    A PEM public key: C{"rsa"}, C{"ec"} (P-256) or C{"ed25519"}.
    """
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def insert(entity: str, body: dict) -> dict:
    return prepare_insert(entity, body, plugins={}, now=NOW, new_id=NEW_ID)


class SchemaTests(SynchronousTestCase):
    """
    The credential entities validate as Kong's do.
    """

    def assertViolation(self, entity: str, body: dict, fields: dict) -> None:
        with self.assertRaises(SchemaViolation) as caught:
            insert(entity, body)
        self.assertEqual(caught.exception.fields, fields)

    def test_registered(self) -> None:
        """
        The four entities are among L{ENTITIES}, by their Kong DAO names,
        each with a required consumer.
        """
        for name, key in [(KEYAUTH, ("key",)), (BASICAUTH, ("username",)), (JWT, ("key",)), (ACLS, ())]:
            kind = ENTITIES[name]
            self.assertEqual((kind.name, kind.endpoint_keys, kind.foreign), (name, key, ("consumer",)),
                             f"row name={name!r} key={key!r}")
            self.assertTrue(kind.schema.fields["consumer"].required, f"row name={name!r} key={key!r}")

    def test_keyAuth(self) -> None:
        """
        A key-auth credential: every field present, timestamps and id filled.
        """
        record = insert(KEYAUTH, {"consumer": {"id": ALICE.upper()}, "key": "k1", "tags": ["a"]})
        self.assertEqual(record, {"id": NEW_ID, "created_at": NOW, "updated_at": NOW,
                                  "consumer": {"id": ALICE}, "key": "k1", "tags": ["a"]})

    def test_keyAuthErrors(self) -> None:
        """
        The consumer and key are required; keys are strings; fields are known.
        """
        self.assertViolation(KEYAUTH, {"key": 5, "nope": 1},
                             {"consumer": "required field missing", "key": "expected a string",
                              "nope": "unknown field"})
        self.assertViolation(KEYAUTH, {"consumer": {"id": "x"}, "key": ""},
                             {"consumer": {"id": "expected a valid UUID"},
                              "key": "length must be at least 1"})

    def test_basicAuthErrors(self) -> None:
        """
        basic-auth needs a username and a password.
        """
        self.assertViolation(BASICAUTH, {"consumer": {"id": ALICE}},
                             {"username": "required field missing", "password": "required field missing"})

    def test_aclErrors(self) -> None:
        """
        An acl needs a group.
        """
        self.assertViolation(ACLS, {"consumer": {"id": ALICE}}, {"group": "required field missing"})

    def test_jwtDefaults(self) -> None:
        """
        A jwt secret defaults to HS256 with no public key.
        """
        record = insert(JWT, {"consumer": {"id": ALICE}, "key": "iss", "secret": "s"})
        self.assertEqual((record["algorithm"], record["rsa_public_key"]), ("HS256", None))

    def test_jwtAlgorithm(self) -> None:
        """
        The algorithm is one of Kong's list.
        """
        with self.assertRaises(SchemaViolation) as caught:
            insert(JWT, {"consumer": {"id": ALICE}, "key": "k", "secret": "s", "algorithm": "none"})
        self.assertTrue(caught.exception.fields["algorithm"].startswith("expected one of: HS256, HS384"))

    def test_jwtPublicKeyRequired(self) -> None:
        """
        The asymmetric algorithms need a public key, as Kong's conditional
        check says.
        """
        for algorithm in ("RS256", "PS256", "ES256", "EdDSA"):
            self.assertViolation(JWT, {"consumer": {"id": ALICE}, "key": "k", "secret": "s", "algorithm": algorithm},
                                 {"@entity": ["failed conditional validation given value of field 'algorithm'"],
                                  "rsa_public_key": "required field missing"})

    def test_jwtPublicKeyInvalid(self) -> None:
        """
        The public key must be PEM, of the algorithm's family.
        """
        for algorithm, pem in [("RS256", "not a key"), ("RS256", public_pem("ec")),
                               ("ES256", public_pem("rsa")), ("EdDSA", public_pem("rsa"))]:
            self.assertViolation(JWT, {"consumer": {"id": ALICE}, "key": "k", "secret": "s",
                                       "algorithm": algorithm, "rsa_public_key": pem},
                                 {"@entity": ["failed conditional validation given value of field 'algorithm'"],
                                  "rsa_public_key": "invalid key"})

    def test_jwtPublicKeys(self) -> None:
        """
        RSA keys suit RS and PS, EC keys ES, Ed25519 keys EdDSA.
        """
        for algorithm, kind in [("RS256", "rsa"), ("PS512", "rsa"), ("ES256", "ec"), ("EdDSA", "ed25519")]:
            record = insert(JWT, {"consumer": {"id": ALICE}, "key": "k", "secret": "s",
                                  "algorithm": algorithm, "rsa_public_key": public_pem(kind)})
            self.assertEqual(record["algorithm"], algorithm, f"row algorithm={algorithm!r} kind={kind!r}")

    def test_noConsumerPlugins(self) -> None:
        """
        A plugin with C{no_consumer} cannot be scoped to a consumer (Kong's
        message); others can.
        """
        class Scoped(GatewayPlugin):
            name = "scoped"
            config_schema = Record({})

        class Unscoped(Scoped):
            no_consumer = True

        body = {"id": NEW_ID, "name": "x", "created_at": NOW, "updated_at": NOW, "consumer": {"id": ALICE}}
        self.assertEqual(plugin_schema(Scoped()).validate(body)["consumer"], {"id": ALICE})
        with self.assertRaises(SchemaViolation) as caught:
            plugin_schema(Unscoped()).validate(body)
        self.assertEqual(caught.exception.fields, {"consumer": "value must be null"})
        self.assertIsNone(plugin_schema(Unscoped()).validate(dict(body, consumer=None))["consumer"])


class GeneratedTests(SynchronousTestCase):
    """
    L{fill_generated}: keys and secrets Kong generates when not given.
    """

    def test_keyAuth(self) -> None:
        """
        A key-auth credential without a key gets 32 hex characters.
        """
        fields = fill_generated(KEYAUTH, {})
        self.assertRegex(fields["key"], r"^[0-9a-f]{32}$")
        self.assertNotEqual(fill_generated(KEYAUTH, {})["key"], fields["key"])

    def test_jwt(self) -> None:
        """
        A jwt secret gets a key and a secret.
        """
        fields = fill_generated(JWT, {}, token=iter(["a", "b"]).__next__)
        self.assertEqual(fields, {"key": "a", "secret": "b"})

    def test_givenKept(self) -> None:
        """
        Given values, null included (for validation to refuse), are kept.
        """
        self.assertEqual(fill_generated(JWT, {"key": "mine", "secret": None}, token=lambda: "t"),
                         {"key": "mine", "secret": None})

    def test_others(self) -> None:
        """
        basic-auth and acls generate nothing.
        """
        self.assertEqual(fill_generated(BASICAUTH, {}), {})
        self.assertEqual(fill_generated(ACLS, {}), {})


class OnWriteTests(SynchronousTestCase):
    """
    L{on_write}: basic-auth passwords are stored hashed.
    """

    def test_hashed(self) -> None:
        """
        A password given in the write is replaced by its hash; the record
        given is not changed.
        """
        record = {"username": "u", "password": "s3cret"}
        stored = on_write(BASICAUTH, record, {"username", "password"})
        self.assertTrue(stored["password"].startswith("$scrypt$"))
        self.assertTrue(verify_password(stored["password"], "s3cret"))
        self.assertEqual(record["password"], "s3cret")

    def test_notGiven(self) -> None:
        """
        A PATCH without a password keeps the stored hash as it is.
        """
        hashed = hash_password("x")
        existing = {"id": NEW_ID, "created_at": NOW, "updated_at": NOW, "consumer": {"id": ALICE},
                    "username": "u", "password": hashed, "tags": None}
        merged = prepare_update(BASICAUTH, existing, {"username": "v"}, plugins={}, now=NOW + 1)
        self.assertEqual(on_write(BASICAUTH, merged, {"username"})["password"], hashed)

    def test_otherEntities(self) -> None:
        """
        Other entities are stored as they are, even with a C{password} field.
        """
        record = {"key": "k", "password": "p"}
        self.assertIs(on_write(KEYAUTH, record, {"key", "password"}), record)


class PasswordTests(SynchronousTestCase):
    """
    L{hash_password} and L{verify_password}.
    """

    def test_format(self) -> None:
        """
        The PHC string format: algorithm, parameters, salt, hash.
        """
        self.assertRegex(hash_password("p"), r"^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$")

    def test_salted(self) -> None:
        """
        The same password hashes differently every time.
        """
        self.assertNotEqual(hash_password("p", log_n=4), hash_password("p", log_n=4))

    def test_verify(self) -> None:
        """
        The password verifies; any other does not.
        """
        stored = hash_password("pass word \u00e9", log_n=4)
        self.assertTrue(verify_password(stored, "pass word \u00e9"))
        self.assertFalse(verify_password(stored, "pass word e"))
        self.assertFalse(verify_password(stored, ""))

    def test_parametersRead(self) -> None:
        """
        The parameters are read from the stored hash, so older hashes keep
        verifying when the defaults change.
        """
        self.assertTrue(verify_password(hash_password("p", log_n=5, salt=b"s" * 16), "p"))

    def test_malformed(self) -> None:
        """
        Anything that is not such a hash never verifies.
        """
        good = hash_password("p", log_n=4)
        for stored in ["p", "", None, good[:-4], good.replace("ln=4", "ln=40"),
                       good.replace("r=8", "r=0"), good.replace("$scrypt$", "$bcrypt$"),
                       re.sub(r"\$[^$]+$", "$", good)]:
            self.assertFalse(verify_password(stored, "p"), stored)  # type: ignore[arg-type]


class ModuleTests(SynchronousTestCase):
    """
    The module's public names.
    """

    def test_collections(self) -> None:
        """
        Each entity has its Admin API names and endpoint key.
        """
        self.assertEqual([(c.entity, c.nested, c.top, c.endpoint_key) for c in credentials.COLLECTIONS], [
            (KEYAUTH, "key-auth", "key-auths", "key"), (BASICAUTH, "basic-auth", "basic-auths", "username"),
            (JWT, "jwt", "jwts", "key"), (ACLS, "acls", "acls", "group")])


# ---------------------------------------------------------------------------
# Helpers for the auth plugins' tests (tests.test_plugin_*)


class Stamp(GatewayPlugin):
    """
    A low-priority plugin that sends its config's C{value} upstream as
    X-Stamp: shows which config (global or consumer-scoped) applied.
    """

    name = "stamp"
    priority = 10
    config_schema = Record({"value": String(default="global")})

    def access(self, ctx: Any, config: Any) -> None:
        ctx.upstream.set_header("X-Stamp", config["value"])


class PreAuth(GatewayPlugin):
    """
    A high-priority plugin that authenticates every request as the
    consumer named by X-Pre-Auth (an earlier auth plugin).
    """

    name = "pre-auth"
    priority = 5000
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        name = ctx.request.get_header("x-pre-auth")
        if name:
            ctx.authenticate(ctx.consumers.get(name), {"id": "pre-auth-credential"})


def people(harness_entities: dict | None = None) -> dict:
    """
    The consumers alice (with a custom_id) and bob, plus C{harness_entities}.
    """
    return {"consumers": [{"id": ALICE, "username": "alice", "custom_id": "a-1"},
                          {"id": BOB, "username": "bob"}], **(harness_entities or {})}
