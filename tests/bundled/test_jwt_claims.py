"""
The jwt plugin's registered time claims (C{exp}, C{nbf}) against tokens an
attacker writes by hand: numbers that are not finite (C{NaN}, C{Infinity},
which Python's json module reads), strings, booleans, null, objects and
integers too large for a float. A running gateway with the real
PostgreSQL, and the token sent on a raw socket.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.jwt_auth import check_claims
from tests.admin.test_credentials_api import AuthTestCase
from tests.rawclient import connect, status_of

INVALID = 'Bearer error="invalid_token"'
NOT_A_NUMBER = {"exp": "must be a number"}


def b64url(data: bytes) -> str:
    """
    Base64url without padding, as in a JWT.
    """
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def hs256_token(payload: bytes, secret: str) -> str:
    """
    A JWT whose claims are exactly C{payload} (JSON as the attacker wrote
    it, C{NaN} and all), signed with HS256 by C{secret}.
    """
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{b64url(payload)}"
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


class CheckClaimsTests(SynchronousTestCase):
    """
    L{check_claims} on its own.
    """

    def test_finiteNumbers(self) -> None:
        """
        Finite integers and floats are judged by their value.
        """
        self.assertEqual(check_claims({"exp": 200, "nbf": 50.5}, ["exp", "nbf"], 100), {})
        self.assertEqual(check_claims({"exp": 10 ** 400}, ["exp"], 100), {})
        self.assertEqual(check_claims({"exp": 100.0}, ["exp"], 100), {"exp": "token expired"})

    def test_notFinite(self) -> None:
        """
        NaN and the infinities are not numbers for a time claim.
        """
        for value in (float("nan"), float("inf"), float("-inf")):
            self.assertEqual(check_claims({"exp": value, "nbf": value}, ["exp", "nbf"], 100),
                             {"exp": "must be a number", "nbf": "must be a number"}, value)


class JWTTimeClaimsTests(AuthTestCase):
    """
    A jwt-protected route, a consumer with an HS256 secret, and tokens
    whose time claims are not finite numbers: 401 with Kong's message for
    the claim, never the upstream.
    """

    async def setUp(self) -> None:
        await super().setUp()
        await self.consumer("alice")
        self.secret = await self.admin_ok("POST", "/consumers/alice/jwt", 201, data={})

    async def send(self, payload: bytes) -> tuple[int | None, Any, bytes]:
        """
        Send C{GET /mock/request} with C{Authorization: Bearer} and a
        token of claims C{payload} (C{{key}} stands for the credential's
        key) on a raw socket: the status, the JSON body, the head.
        """
        claims = payload.replace(b"{key}", self.secret["key"].encode("ascii"))
        bearer = hs256_token(claims, self.secret["secret"])
        client = await connect(self.gw.proxy_port)
        self.addCleanup(lambda: client.transport.abortConnection())
        client.send(b"GET /mock/request HTTP/1.1\r\nHost: mockbin.org\r\n"
                    b"Authorization: Bearer " + bearer.encode("ascii") + b"\r\nConnection: close\r\n\r\n")
        data = await client.response()
        head, _, body = data.partition(b"\r\n\r\n")
        return status_of(data), json.loads(body) if body else None, head

    async def assertRefusedExp(self, payload: bytes, body: Any = NOT_A_NUMBER) -> None:
        """
        The token of claims C{payload} is refused: 401, C{body}, the
        invalid_token challenge.
        """
        status, answer, head = await self.send(payload)
        self.assertEqual((status, answer), (401, body), head)
        self.assertIn(f"\r\nWWW-Authenticate: {INVALID}".encode().lower(), head.lower())

    async def test_expNaN(self) -> None:
        """
        C{"exp": NaN} is refused when exp is checked.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": NaN}')

    async def test_expInfinity(self) -> None:
        """
        C{"exp": Infinity}, a token that never expires, is refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": Infinity}')

    async def test_expOverflowingFloat(self) -> None:
        """
        C{"exp": 1e400}, which JSON readers turn into infinity, is refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": 1e400}')

    async def test_expNegativeInfinity(self) -> None:
        """
        C{"exp": -Infinity} is not a number either.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": -Infinity}')

    async def test_expString(self) -> None:
        """
        C{"exp": "9999999999"}, a number in a string, is refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": "9999999999"}')

    async def test_expBoolean(self) -> None:
        """
        C{"exp": true} is refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": true}')

    async def test_expNullAndObject(self) -> None:
        """
        C{"exp": null} and C{"exp": {}} are refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": null}')
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": {"$gt": 0}}')

    async def test_nbfNaN(self) -> None:
        """
        C{"nbf": NaN} is refused when nbf is checked.
        """
        await self.plugin("jwt", {"claims_to_verify": ["nbf"]})
        await self.assertRefusedExp(b'{"iss": "{key}", "nbf": NaN}', {"nbf": "must be a number"})

    async def test_maximumExpirationNaN(self) -> None:
        """
        With maximum_expiration, C{"exp": NaN} is refused (it is neither
        past nor too far).
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"], "maximum_expiration": 3600})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": NaN}')

    async def test_maximumExpirationInfinity(self) -> None:
        """
        With maximum_expiration, C{"exp": Infinity} is refused as not a
        number.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"], "maximum_expiration": 3600})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": Infinity}')

    async def test_maximumExpirationHugeInteger(self) -> None:
        """
        With maximum_expiration, an integer too large for a float is
        refused as exceeding it, not a server error.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"], "maximum_expiration": 3600})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": 1' + b"0" * 400 + b"}",
                                    {"exp": "exceeds maximum allowed expiration"})

    async def test_maximumExpirationString(self) -> None:
        """
        With maximum_expiration, C{"exp": "9999999999"} is refused.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"], "maximum_expiration": 3600})
        await self.assertRefusedExp(b'{"iss": "{key}", "exp": "9999999999"}')

    async def test_finiteExpAccepted(self) -> None:
        """
        A finite exp within maximum_expiration, written the same way, is
        accepted: the refusals above are about the values.
        """
        await self.plugin("jwt", {"claims_to_verify": ["exp"], "maximum_expiration": 3600})
        exp = int(reactor.seconds())
        status, answer, head = await self.send(b'{"iss": "{key}", "exp": %d}' % (exp + 600,))
        self.assertEqual(status, 200, head)
