"""
Tests for the bundled jwt plugin (L{echogate.bundled.jwt_auth}): through
L{GatewayHarness}, and end to end through a running gateway.
"""
from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.jwt_auth import JWTAuth
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase
from tests.entities.test_credentials import ALICE, BOB, PreAuth, Stamp, people

NOW = 1_700_000_000
SECRET = "alice's secret, " * 5  # long enough for HS512 (PyJWT warns below 64 bytes)
OTHER = "another secret, " * 5
RAW = b"\x00raw\xffbytes" * 8
INVALID = 'Bearer error="invalid_token"'


@functools.lru_cache(maxsize=None)
def keypair(kind: str) -> tuple[Any, str]:
    """
    A private key and its PEM public key: C{"rsa"}, C{"ec"} or C{"ed25519"}.
    """
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, public


def token(claims: dict, key: Any = SECRET, algorithm: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def raw_token(header: Any, claims: Any, signature: bytes = b"sig") -> str:
    def part(value: Any) -> str:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}.{part(signature)}"


SECRETS = {"jwt_secrets": [
    {"consumer": {"id": ALICE}, "key": "alice-key", "secret": SECRET},
    {"consumer": {"id": BOB}, "key": "bob-rs", "algorithm": "RS256", "rsa_public_key": keypair("rsa")[1]},
    {"consumer": {"id": BOB}, "key": "bob-es", "algorithm": "ES256", "rsa_public_key": keypair("ec")[1]},
    {"consumer": {"id": BOB}, "key": "bob-ed", "algorithm": "EdDSA", "rsa_public_key": keypair("ed25519")[1]},
    {"consumer": {"id": BOB}, "key": "bob-ps", "algorithm": "PS256", "rsa_public_key": keypair("rsa")[1]},
    {"consumer": {"id": BOB}, "key": "bob-b64", "secret": base64.b64encode(RAW).decode()},
]}


class _TokenEcho(GatewayPlugin):
    """
    Sends upstream the token jwt left for later plugins.
    """

    name = "token-echo"
    priority = 5
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        ctx.upstream.set_header("X-Token", ctx.shared.get("authenticated_jwt_token") or "none")


class JWTAuthTests(SynchronousTestCase):
    """
    jwt through the harness (the clock at C{NOW}).
    """

    def harness(self, config: dict | None = None, plugins: list | None = None, configs: list | None = None
                ) -> GatewayHarness:
        clock = Clock()
        clock.advance(NOW)
        return GatewayHarness([JWTAuth(), *(plugins or [])], [("jwt", config or {}), *(configs or [])],
                              entities=people(SECRETS), clock=clock)

    def request(self, harness: GatewayHarness, bearer: str | None = None, path: str = "/",
                headers: dict | None = None, method: str = "GET") -> HarnessResponse:
        headers = dict(headers or {})
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.successResultOf(harness.request(method, path, headers=headers))

    def seen(self, response: HarnessResponse) -> dict[str, list[str]]:
        self.assertEqual(response.status, 200, response.body)
        return response.json()["headers"]

    def assertRefused(self, response: HarnessResponse, body: Any, challenge: str = INVALID) -> None:
        if isinstance(body, str):
            body = {"message": body}
        self.assertEqual((response.status, response.json(), response.header("www-authenticate")),
                         (401, body, challenge))

    def test_provides(self) -> None:
        """
        It is Kong's jwt: name, priority, not scoped to consumers.
        """
        plugin = JWTAuth()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority, plugin.no_consumer), ("jwt", 1450, True))

    def test_defaults(self) -> None:
        """
        The config's defaults are Kong's.
        """
        self.assertEqual(JWTAuth.config_schema.validate({}), {
            "uri_param_names": ["jwt"], "cookie_names": [], "key_claim_name": "iss", "secret_is_base64": False,
            "claims_to_verify": None, "anonymous": None, "run_on_preflight": True, "maximum_expiration": 0,
            "header_names": ["authorization"], "realm": None})

    def test_configErrors(self) -> None:
        """
        Every field checks its value.
        """
        bad = {"uri_param_names": "jwt", "cookie_names": [5], "key_claim_name": "", "secret_is_base64": "no",
               "claims_to_verify": ["exp", "iat"], "anonymous": {}, "run_on_preflight": None,
               "maximum_expiration": 31536001, "header_names": [""], "realm": 1}
        with self.assertRaises(SchemaViolation) as caught:
            JWTAuth.config_schema.validate(bad)
        self.assertEqual(caught.exception.fields, {
            "uri_param_names": "expected a set", "cookie_names": {"1": "expected a string"},
            "key_claim_name": "length must be at least 1", "secret_is_base64": "expected a boolean",
            "claims_to_verify": {"2": "expected one of: exp, nbf"}, "anonymous": "expected a string",
            "run_on_preflight": "required field missing",
            "maximum_expiration": "value should be between 0 and 31536000",
            "header_names": {"1": "length must be at least 1"}, "realm": "expected a string"})
        with self.assertRaises(SchemaViolation) as caught:
            JWTAuth.config_schema.validate({"maximum_expiration": -1, "key_claim_name": None})
        self.assertEqual(caught.exception.fields, {"maximum_expiration": "value should be between 0 and 31536000",
                                                   "key_claim_name": "required field missing"})

    def test_maximumExpirationNeedsExp(self) -> None:
        """
        C{maximum_expiration} needs C{exp} among the claims to verify.
        """
        with self.assertRaises(SchemaViolation) as caught:
            JWTAuth.config_schema.validate({"maximum_expiration": 60, "claims_to_verify": ["nbf"]})
        self.assertEqual(caught.exception.fields, {
            "@entity": ["failed conditional validation given value of field 'maximum_expiration'"],
            "claims_to_verify": "expected to contain: exp"})
        JWTAuth.config_schema.validate({"maximum_expiration": 60, "claims_to_verify": ["exp"]})

    def test_noToken(self) -> None:
        """
        No token: 401 Unauthorized with a plain Bearer challenge (naming
        the realm when configured).
        """
        self.assertRefused(self.request(self.harness()), "Unauthorized", "Bearer")
        self.assertRefused(self.request(self.harness({"realm": "api"})), "Unauthorized", 'Bearer realm="api"')
        self.assertRefused(self.request(self.harness(), headers={"Authorization": "Basic abc"}),
                           "Unauthorized", "Bearer")

    def test_authenticated(self) -> None:
        """
        An HS256 token signed with the consumer's secret authenticates it;
        the upstream learns the consumer and the key; later plugins find
        the token in C{ctx.shared}.
        """
        harness = self.harness(plugins=[_TokenEcho()], configs=[("token-echo", {})])
        value = token({"iss": "alice-key"})
        headers = self.seen(self.request(harness, value))
        self.assertEqual((headers["x-consumer-username"], headers["x-credential-identifier"], headers["x-token"]),
                         (["alice"], ["alice-key"], [value]))
        self.assertNotIn("x-anonymous-consumer", headers)

    def test_asymmetric(self) -> None:
        """
        RS256, PS256, ES256 and EdDSA tokens are checked with the
        credential's public key.
        """
        harness = self.harness()
        for key, kind, algorithm in [("bob-rs", "rsa", "RS256"), ("bob-ps", "rsa", "PS256"),
                                     ("bob-es", "ec", "ES256"), ("bob-ed", "ed25519", "EdDSA")]:
            headers = self.seen(self.request(harness, token({"iss": key}, keypair(kind)[0], algorithm)))
            self.assertEqual(headers["x-credential-identifier"], [key],
                             f"row key={key!r} kind={kind!r} algorithm={algorithm!r}")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.assertRefused(self.request(harness, token({"iss": "bob-rs"}, other, "RS256")), "Invalid signature")

    def test_places(self) -> None:
        """
        The token is found in the query string, cookies and headers as
        configured; C{bearer} in any case.
        """
        value = token({"iss": "alice-key"})
        harness = self.harness({"uri_param_names": ["t"], "cookie_names": ["session"], "header_names": ["x-jwt"]})
        for path, headers in [(f"/?t={value}", {}), ("/", {"Cookie": f"a=b; session={value}"}),
                              ("/", {"X-JWT": f"bearer {value}"})]:
            self.assertEqual(self.seen(self.request(harness, path=path, headers=headers))["x-consumer-id"], [ALICE],
                             f"row path={path!r} headers={headers!r}")
        self.assertRefused(self.request(harness, value), "Unauthorized", "Bearer")
        self.assertRefused(self.request(harness, headers={"X-JWT": value}), "Unauthorized", "Bearer")
        self.assertEqual(self.seen(self.request(self.harness(), path=f"/?jwt={value}"))["x-consumer-id"], [ALICE])

    def test_multipleTokens(self) -> None:
        """
        Two different tokens: 401 Multiple tokens provided; the same token
        twice is one.
        """
        harness = self.harness()
        one, two = token({"iss": "alice-key"}), token({"iss": "alice-key", "n": 2})
        self.assertRefused(self.request(harness, one, path=f"/?jwt={two}"), "Multiple tokens provided")
        self.seen(self.request(harness, one, path=f"/?jwt={one}"))

    def test_badTokens(self) -> None:
        """
        Tokens that cannot be decoded: 401 Bad token, with Kong's reason.
        """
        harness = self.harness()
        good_claims = {"iss": "alice-key"}
        for value, reason in [("abc", "invalid JSON"), ("a.b", "invalid JSON"),
                              (raw_token(b"{nope", good_claims), "invalid JSON"),
                              (raw_token({"alg": "none"}, good_claims), "invalid alg"),
                              (raw_token({"alg": 5}, good_claims), "invalid alg"),
                              (raw_token(["HS256"], good_claims), "invalid alg"),
                              (raw_token({"alg": "HS256"}, None), "invalid claims"),
                              (raw_token({"alg": "HS256"}, [1]), "invalid claims")]:
            self.assertRefused(self.request(harness, value), f"Bad token; {reason}")

    def test_keyClaim(self) -> None:
        """
        The key claim must be there and not empty; it may be in the token's
        header; it must name a credential.
        """
        harness = self.harness()
        self.assertRefused(self.request(harness, token({"sub": "x"})), "No mandatory 'iss' in claims")
        self.assertRefused(self.request(harness, token({"iss": ""})), "Invalid 'iss' in claims")
        self.assertRefused(self.request(harness, token({"iss": "nobody"})), "No credentials found for given 'iss'")
        self.assertRefused(self.request(harness, raw_token({"alg": "HS256"}, {"iss": ["alice-key"]})),
                           "No credentials found for given 'iss'")
        self.seen(self.request(harness, token({}, headers={"iss": "alice-key"})))
        kid = self.harness({"key_claim_name": "kid"})
        self.seen(self.request(kid, token({"iss": "x"}, headers={"kid": "alice-key"})))
        self.assertRefused(self.request(kid, token({"iss": "alice-key"})), "No mandatory 'kid' in claims")

    def test_algorithmAndSignature(self) -> None:
        """
        The token's algorithm must be the credential's, and its signature
        the credential's secret's.
        """
        harness = self.harness()
        self.assertRefused(self.request(harness, token({"iss": "alice-key"}, algorithm="HS512")), "Invalid algorithm")
        self.assertRefused(self.request(harness, token({"iss": "bob-rs"})), "Invalid algorithm")
        self.assertRefused(self.request(harness, token({"iss": "alice-key"}, OTHER)), "Invalid signature")
        value = token({"iss": "alice-key"})
        self.assertRefused(self.request(harness, value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")),
                           "Invalid signature")

    def test_secretIsBase64(self) -> None:
        """
        With C{secret_is_base64}, secrets are decoded before use; a secret
        that is not base64 is an invalid key.
        """
        harness = self.harness({"secret_is_base64": True})
        self.seen(self.request(harness, token({"iss": "bob-b64"}, RAW)))
        self.assertRefused(self.request(harness, token({"iss": "alice-key"})), "Invalid key/secret")

    def test_claims(self) -> None:
        """
        C{exp} and C{nbf}, when asked for, are checked against the clock;
        the body names what is wrong.
        """
        harness = self.harness({"claims_to_verify": ["exp", "nbf"]})
        self.seen(self.request(harness, token({"iss": "alice-key", "exp": NOW + 1, "nbf": NOW})))
        for claims, errors in [({"exp": NOW, "nbf": NOW}, {"exp": "token expired"}),
                               ({"exp": NOW + 1, "nbf": NOW + 1}, {"nbf": "token not valid yet"}),
                               ({}, {"exp": "must be a number", "nbf": "must be a number"}),
                               ({"exp": "tomorrow", "nbf": True},
                                {"exp": "must be a number", "nbf": "must be a number"})]:
            self.assertRefused(self.request(harness, token({"iss": "alice-key", **claims})), errors)
        self.seen(self.request(self.harness(), token({"iss": "alice-key", "exp": 1})))

    def test_maximumExpiration(self) -> None:
        """
        A token valid for longer than C{maximum_expiration} is refused.
        """
        harness = self.harness({"claims_to_verify": ["exp"], "maximum_expiration": 60})
        self.seen(self.request(harness, token({"iss": "alice-key", "exp": NOW + 60})))
        self.assertRefused(self.request(harness, token({"iss": "alice-key", "exp": NOW + 61})),
                           {"exp": "exceeds maximum allowed expiration"})

    def test_anonymous(self) -> None:
        """
        With C{anonymous}, a failed token passes as that consumer; a
        missing anonymous consumer is a 500.
        """
        harness = self.harness({"anonymous": "bob"})
        for value in (None, "abc", token({"iss": "alice-key"}, OTHER)):
            headers = self.seen(self.request(harness, value))
            self.assertEqual((headers["x-consumer-username"], headers["x-anonymous-consumer"]), (["bob"], ["true"]),
                             f"row value={value!r}")
        response = self.request(self.harness({"anonymous": "ghost"}))
        self.assertEqual((response.status, response.json()),
                         (500, {"message": "anonymous consumer ghost is configured but doesn't exist"}))

    def test_logicalOrAndPreflight(self) -> None:
        """
        With C{anonymous}, an already authenticated request passes; with
        C{run_on_preflight} false, OPTIONS passes.
        """
        harness = self.harness({"anonymous": "bob"}, plugins=[PreAuth()], configs=[("pre-auth", {})])
        self.assertNotIn("x-consumer-username", self.seen(self.request(harness, headers={"X-Pre-Auth": "alice"})))
        self.seen(self.request(self.harness({"run_on_preflight": False}), method="OPTIONS"))
        self.assertRefused(self.request(self.harness(), method="OPTIONS"), "Unauthorized", "Bearer")

    def test_consumerScopedConfig(self) -> None:
        """
        The authenticated consumer's configs of later plugins apply.
        """
        harness = self.harness(plugins=[Stamp()], configs=[("stamp", {}), ("stamp", {"value": "alice's"},
                                                                           {"consumer": ALICE})])
        self.assertEqual(self.seen(self.request(harness, token({"iss": "alice-key"})))["x-stamp"], ["alice's"])
        self.assertEqual(self.seen(self.request(harness, token({"iss": "bob-es"}, keypair("ec")[0], "ES256")))
                         ["x-stamp"], ["global"])

    def test_nextRequest(self) -> None:
        """
        A deleted credential is refused from the next request on.
        """
        harness = self.harness()
        self.seen(self.request(harness, token({"iss": "alice-key"})))
        harness.set_entities({"jwt_secrets": []})
        self.assertRefused(self.request(harness, token({"iss": "alice-key"})), "No credentials found for given 'iss'")


class JWTEndToEndTests(AuthTestCase):
    """
    jwt in a running gateway.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.consumer("alice")

    async def test_hs256(self) -> None:
        """
        A generated key and secret: the token they sign is accepted; an
        expired one is refused when exp is checked; deleting the credential
        refuses the next request.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        secret = await self.admin_ok("POST", "/consumers/alice/jwt", 201, data={})
        good = token({"iss": secret["key"], "exp": 4_000_000_000}, secret["secret"])
        headers = self.seen_headers(await self.call(headers={"Authorization": f"Bearer {good}"}))
        self.assertEqual((headers["x-consumer-id"], headers["x-credential-identifier"]),
                         ([self.alice["id"]], [secret["key"]]))
        expired = token({"iss": secret["key"], "exp": 1}, secret["secret"])
        self.assertRefused(await self.call(path=f"/mock/request?jwt={expired}"), 401, {"exp": "token expired"},
                           INVALID)
        self.assertRefused(await self.call(), 401, {"message": "Unauthorized"}, "Bearer")
        await self.admin_ok("DELETE", f"/jwts/{secret['id']}", 204)
        self.assertRefused(await self.call(headers={"Authorization": f"Bearer {good}"}), 401,
                           {"message": "No credentials found for given 'iss'"}, INVALID)

    async def test_rs256(self) -> None:
        """
        An RS256 credential with a public key accepts tokens its private
        key signed, and nothing else.
        """
        await self.plugin("jwt", {"realm": "mock"})
        private, public = keypair("rsa")
        await self.admin_ok("POST", "/consumers/alice/jwt", 201, json={
            "key": "alice-rs", "algorithm": "RS256", "rsa_public_key": public})
        good = token({"iss": "alice-rs"}, private, "RS256")
        self.assertEqual(self.seen_headers(await self.call(headers={"Authorization": f"Bearer {good}"}))
                         ["x-consumer-username"], ["alice"])
        forged = token({"iss": "alice-rs"}, OTHER)
        self.assertRefused(await self.call(headers={"Authorization": f"Bearer {forged}"}), 401,
                           {"message": "Invalid algorithm"}, 'Bearer realm="mock", error="invalid_token"')
