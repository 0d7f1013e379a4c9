"""
Tests for L{echogate.credentials}: the credential entities' schemas, what
happens to them on write, password hashing, and the in-memory index the
data path reads (through the snapshot and the PDK).
"""
from __future__ import annotations

import functools
import re
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate import credentials
from echogate.credentials import (
    ACLS,
    BASICAUTH,
    EMPTY,
    JWT,
    KEYAUTH,
    ConsumerIndex,
    CredentialIndex,
    fill_generated,
    hash_password,
    on_write,
    verify_password,
)
from echogate.entities import ENTITIES, plugin_schema
from echogate.errors import SchemaViolation
from echogate.fields import String
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.snapshot import ConfigurationData, LiveConfiguration, Snapshot
from echogate.testing import GatewayHarness
from echogate.writes import prepare_insert, prepare_update

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
            self.assertEqual((kind.name, kind.endpoint_keys, kind.foreign), (name, key, ("consumer",)))
            self.assertTrue(kind.schema.fields["consumer"].required)

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
            self.assertEqual(record["algorithm"], algorithm)

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


CONSUMERS = [
    {"id": ALICE, "username": "alice", "custom_id": "a-1"},
    {"id": BOB, "username": None, "custom_id": "b-1"},
]


class ConsumerIndexTests(SynchronousTestCase):
    """
    L{ConsumerIndex}: consumers by id, username and custom_id.
    """

    def test_get(self) -> None:
        """
        C{get} finds by id (any case), then by username.
        """
        index = ConsumerIndex(CONSUMERS)
        self.assertEqual(index.get(ALICE)["username"], "alice")
        self.assertEqual(index.get(ALICE.upper())["id"], ALICE)
        self.assertEqual(index.get("alice")["id"], ALICE)
        self.assertIsNone(index.get("a-1"))
        self.assertIsNone(index.get("nobody"))
        self.assertIsNone(index.get(None))
        self.assertEqual(len(index), 2)

    def test_usernameShapedLikeAnId(self) -> None:
        """
        A username that looks like a UUID is still found by it.
        """
        index = ConsumerIndex([{"id": ALICE, "username": BOB, "custom_id": None}])
        self.assertEqual(index.get(BOB)["id"], ALICE)

    def test_byIdAndCustomId(self) -> None:
        """
        C{by_id} finds only by id, C{by_custom_id} only by custom_id.
        """
        index = ConsumerIndex(CONSUMERS)
        self.assertEqual(index.by_id(BOB)["custom_id"], "b-1")
        self.assertIsNone(index.by_id("alice"))
        self.assertIsNone(index.by_id(None))
        self.assertEqual(index.by_custom_id("a-1")["id"], ALICE)
        self.assertIsNone(index.by_custom_id("alice"))


def _credential(consumer: str, **fields: Any) -> dict:
    return {"id": NEW_ID, "consumer": {"id": consumer}, **fields}


class CredentialIndexTests(SynchronousTestCase):
    """
    L{CredentialIndex}: credentials by key, username and consumer.
    """

    def index(self) -> CredentialIndex:
        return CredentialIndex(CONSUMERS, {
            KEYAUTH: [_credential(ALICE, key="k1"), _credential(BOB, key="k2")],
            BASICAUTH: [_credential(ALICE, username="alice-basic", password="h")],
            JWT: [_credential(BOB, key="iss-b", secret="s", algorithm="HS256")],
            ACLS: [_credential(ALICE, group="gold"), _credential(ALICE, group="admin"),
                   _credential(ALICE, group="gold"), _credential(BOB, group="silver")],
        })

    def test_find(self) -> None:
        """
        Each kind is found by its key, by the plugin's name or the entity's.
        """
        index = self.index()
        self.assertEqual(index.find("key-auth", "k2")["consumer"], {"id": BOB})
        self.assertEqual(index.find(KEYAUTH, "k1")["consumer"], {"id": ALICE})
        self.assertEqual(index.find("basic-auth", "alice-basic")["password"], "h")
        self.assertEqual(index.find("jwt", "iss-b")["secret"], "s")
        self.assertIsNone(index.find("key-auth", "k3"))
        self.assertIsNone(index.find("key-auth", None))
        self.assertIsNone(index.find("jwt", "k1"))

    def test_findUnknownKind(self) -> None:
        """
        An unknown kind is a programming error.
        """
        self.assertRaises(ValueError, self.index().find, "oauth2", "x")
        self.assertRaises(ValueError, self.index().find, "acls", "x")

    def test_groups(self) -> None:
        """
        A consumer's groups, in the order stored, each once.
        """
        index = self.index()
        self.assertEqual(index.groups(ALICE), ("gold", "admin"))
        self.assertEqual(index.groups(ALICE.upper()), ("gold", "admin"))
        self.assertEqual(index.groups(BOB), ("silver",))
        self.assertEqual(index.groups(NEW_ID), ())
        self.assertEqual(index.groups(None), ())

    def test_consumers(self) -> None:
        """
        The index carries the consumers.
        """
        self.assertEqual(self.index().consumers.get("alice")["id"], ALICE)

    def test_unknownEntity(self) -> None:
        """
        Credentials of an unknown entity are refused.
        """
        self.assertRaises(ValueError, CredentialIndex, (), {"oauth2_credentials": [{}]})

    def test_recordsCopied(self) -> None:
        """
        The index keeps its own copies of the records it was given.
        """
        record = _credential(ALICE, key="k1")
        index = CredentialIndex(CONSUMERS, {KEYAUTH: [record]})
        record["key"] = "changed"
        self.assertEqual(index.find("key-auth", "k1")["key"], "k1")

    def test_empty(self) -> None:
        """
        L{EMPTY} finds nothing.
        """
        self.assertIsNone(EMPTY.find("key-auth", "k"))
        self.assertIsNone(EMPTY.consumers.get(ALICE))
        self.assertEqual(EMPTY.groups(ALICE), ())


DATA = ConfigurationData(
    version=3, consumers=tuple(CONSUMERS),
    keyauth_credentials=(_credential(ALICE, key="k1"),),
    basicauth_credentials=(_credential(BOB, username="bob", password="h"),),
    jwt_secrets=(_credential(BOB, key="j", secret="s", algorithm="HS256"),),
    acls=(_credential(BOB, group="g"),))


class SnapshotTests(SynchronousTestCase):
    """
    Consumers and credentials travel in the configuration snapshot.
    """

    def test_build(self) -> None:
        """
        L{Snapshot.build} indexes the consumers and credentials of the data.
        """
        index = Snapshot.build(DATA, {}).credentials
        self.assertEqual(index.find("key-auth", "k1")["consumer"], {"id": ALICE})
        self.assertEqual(index.find("basic-auth", "bob")["consumer"], {"id": BOB})
        self.assertEqual(index.find("jwt", "j")["consumer"], {"id": BOB})
        self.assertEqual(index.groups(BOB), ("g",))
        self.assertEqual(index.consumers.by_custom_id("b-1")["id"], BOB)

    def test_reload(self) -> None:
        """
        A reload swaps in the new credentials: a deleted key is gone and a
        new one found.
        """
        loads = [DATA, attrs.evolve(DATA, version=4, keyauth_credentials=(_credential(BOB, key="k9"),))]

        class Store:
            def load(self) -> Any:
                return succeed(loads.pop(0))

            def subscribe(self, callback: Any) -> Any:
                return lambda: None

            def version(self) -> Any:
                return succeed(3)

        live = LiveConfiguration(store=Store(), plugins={}, clock=Clock())
        live.start()
        self.assertIsNotNone(live.current.credentials.find("key-auth", "k1"))
        live.reload()
        self.assertIsNone(live.current.credentials.find("key-auth", "k1"))
        self.assertEqual(live.current.credentials.find("key-auth", "k9")["consumer"], {"id": BOB})
        live.stop()


class _Lookup(GatewayPlugin):
    """
    Answers with what the PDK's consumer and credential lookups find.
    """

    name = "lookup"
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        key = ctx.request.get_header("x-key")
        credential = ctx.credentials.find("key-auth", key)
        ctx.exit(200, {"credential": credential and credential["key"],
                       "consumer": (ctx.consumers.get(ctx.request.get_header("x-consumer")) or {}).get("id"),
                       "groups": list(ctx.credentials.groups(ALICE))})


class PluginContextTests(SynchronousTestCase):
    """
    C{ctx.credentials} and C{ctx.consumers} in a plugin's phases.
    """

    def test_lookups(self) -> None:
        """
        A plugin finds credentials and consumers of the current snapshot.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})], entities={
            "consumers": [{"id": ALICE, "username": "alice"}],
            KEYAUTH: [{"consumer": {"id": ALICE}, "key": "k1"}],
            ACLS: [{"consumer": {"id": ALICE}, "group": "gold"}],
        })
        response = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1", "x-consumer": "alice"}))
        self.assertEqual(response.json(), {"credential": "k1", "consumer": ALICE, "groups": ["gold"]})

    def test_nextRequest(self) -> None:
        """
        Changed credentials are found from the next request on.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})], entities={
            "consumers": [{"id": ALICE, "username": "alice"}]})
        first = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1"}))
        harness.set_entities({KEYAUTH: [{"consumer": {"id": ALICE}, "key": "k1"}]})
        second = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1"}))
        self.assertEqual((first.json()["credential"], second.json()["credential"]), (None, "k1"))

    def test_noSnapshotIndex(self) -> None:
        """
        A snapshot without an index (built by hand) finds nothing.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})])
        harness.snapshot = attrs.evolve(harness.snapshot, credentials=None)
        response = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1", "x-consumer": ALICE}))
        self.assertEqual(response.json(), {"credential": None, "consumer": None, "groups": []})

    def test_harnessCompletes(self) -> None:
        """
        The harness stores entities as the Admin API would: generated keys,
        hashed passwords, ids and timestamps.
        """
        harness = GatewayHarness([], clock=Clock())
        stored = harness.set_entities({
            "consumers": [{"id": ALICE, "username": "alice"}],
            KEYAUTH: [{"consumer": {"id": ALICE}}],
            BASICAUTH: [{"consumer": {"id": ALICE}, "username": "a", "password": "p"}]})
        self.assertRegex(stored[KEYAUTH][0]["key"], "^[0-9a-f]{32}$")
        self.assertTrue(verify_password(stored[BASICAUTH][0]["password"], "p"))
        self.assertEqual(stored["consumers"][0]["created_at"], 1)
        self.assertRaises(SchemaViolation, harness.set_entities, {ACLS: [{"consumer": {"id": ALICE}}]})


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
