"""
jwt: authenticate requests by a signed JSON Web Token, as Kong's jwt
plugin does.

The token is taken from the query string (C{uri_param_names}), cookies
(C{cookie_names}) and C{Bearer} headers (C{header_names}); exactly one
distinct token must be found. Its C{key_claim_name} claim (or header
field) names a consumer's C{jwt_secrets} credential, whose C{algorithm}
the token must be signed with, by its C{secret} (HS256/384/512) or its
PEM public key (RS, PS, ES, EdDSA). Signatures are checked with PyJWT's
algorithms; the token's own format and claims are judged here, so that
the answers are Kong's: 401 with C{{"message": ...}} (C{"Unauthorized"},
C{"Multiple tokens provided"}, C{"Bad token; invalid JSON"}, C{"No
mandatory 'iss' in claims"}, C{"No credentials found for given 'iss'"},
C{"Invalid algorithm"}, C{"Invalid signature"}, ...) or, for claims, a body
naming them (C{{"exp": "token expired"}}).

Time (C{exp}, C{nbf}, C{maximum_expiration}) is the request's arrival on
the gateway's clock (C{ctx.started}). A checked time claim must be a finite
number (L{is_time}): C{NaN}, C{Infinity}, strings, booleans, null and
objects get C{{"exp": "must be a number"}}.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from typing import Any, Mapping, TypeGuard

from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

from echogate.bundled.consumers import UNAUTHORIZED, Authenticated, AuthPlugin, Refused, refused
from echogate.entities import credentials
from echogate.entities.credentials import JWT_ALGORITHMS
from echogate.schema import ENTITY, Boolean, Number, Record, Set, String

_ALGORITHMS = {name: algorithm for name, algorithm in get_default_algorithms().items()
               if name in JWT_ALGORITHMS}

_BEARER = re.compile(r"\s*[Bb]earer\s+(.+)")

#: The C{shared} key under which the token is left for later plugins.
TOKEN_KEY = "authenticated_jwt_token"


class BadToken(ValueError):
    """
    A token that cannot be decoded; the message is Kong's reason.
    """


def b64decode(text: str) -> bytes:
    """
    Decode base64url (or plain base64), padding optional.

    @raise BadToken: it is not base64.
    """
    text = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadToken("invalid JSON") from None


class Token:
    """
    A decoded, not yet verified, JWT.

    @ivar header: the JOSE header (a dict).
    @ivar claims: the claims (a dict).
    @ivar signing_input: C{header.claims} as sent, the bytes that were
        signed.
    @ivar signature: the decoded signature.
    """

    __slots__ = ("header", "claims", "signing_input", "signature")

    def __init__(self, token: str):
        parts = token.split(".", 2)
        if len(parts) != 3:
            raise BadToken("invalid JSON")
        try:
            header = json.loads(b64decode(parts[0]))
            claims = json.loads(b64decode(parts[1]))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadToken("invalid JSON") from None
        signature = b64decode(parts[2])
        if not isinstance(header, dict) or not isinstance(header.get("alg"), str) \
                or header["alg"] not in _ALGORITHMS:
            raise BadToken("invalid alg")
        if not isinstance(claims, dict):
            raise BadToken("invalid claims")
        self.header = header
        self.claims = claims
        self.signing_input = f"{parts[0]}.{parts[1]}".encode("latin-1", "replace")
        self.signature = signature

    def verify(self, key: str | bytes) -> bool:
        """
        Whether the signature is the header's algorithm's, by C{key}.
        """
        algorithm = self.header["alg"]
        try:
            prepared = _prepared_key(algorithm, key)
        except (InvalidKeyError, ValueError, TypeError):
            return False
        try:
            return bool(_ALGORITHMS[algorithm].verify(self.signing_input, prepared, self.signature))
        except (ValueError, TypeError, InvalidKeyError):
            return False


@functools.lru_cache(maxsize=1024)
def _prepared_key(algorithm: str, key: str | bytes) -> Any:
    return _ALGORITHMS[algorithm].prepare_key(key)


def is_time(value: Any) -> TypeGuard[float]:
    """
    Whether C{value}, a decoded claim, is a time: a finite number of
    seconds. Booleans, strings, C{None}, objects, and the C{NaN} and
    infinities that Python's json module reads (C{NaN}, C{Infinity},
    C{1e400}) are not: compared with the clock they would never expire.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def check_claims(claims: Mapping[str, Any], names: Any, now: float) -> dict[str, str]:
    """
    Kong's checks of the registered claims C{names} (C{exp}, C{nbf}) at
    time C{now}: claim name to what is wrong, empty when all is well.
    A claim that is not a time (L{is_time}) gets C{"must be a number"}, Kong's
    message, whatever the value.
    """
    errors: dict[str, str] = {}
    for name in names or ():
        value = claims.get(name)
        if not is_time(value):
            errors[name] = "must be a number"
        elif name == "nbf" and value > now:
            errors[name] = "token not valid yet"
        elif name == "exp" and value <= now:
            errors[name] = "token expired"
    return errors


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, equals, value = part.strip().partition("=")
        if equals and key == name:
            return value
    return None


def find_tokens(ctx: Any, config: Mapping[str, Any]) -> list[str]:
    """
    The distinct tokens of the request, in the order Kong looks: query
    arguments, cookies, then C{Bearer} headers.
    """
    found: dict[str, None] = {}
    request = ctx.request
    for name in config.get("uri_param_names") or ():
        for value in request.query_args.get(name, ()):
            if value:
                found[value] = None
    cookies = request.get_header("cookie")
    for name in config.get("cookie_names") or ():
        value = _cookie(cookies, name)
        if value:
            found[value] = None
    for name in config.get("header_names") or ():
        header = request.get_header(name)
        if header is None:
            continue
        match = _BEARER.search(header)
        if match and match.group(1):
            found[match.group(1)] = None
    return list(found)


def _conditional(config: dict[str, Any]) -> Mapping[str, str] | None:
    if (config.get("maximum_expiration") or 0) > 0 and "exp" not in (config.get("claims_to_verify") or ()):
        return {ENTITY: "failed conditional validation given value of field 'maximum_expiration'",
                "claims_to_verify": "expected to contain: exp"}
    return None


class JWTAuth(AuthPlugin):
    """
    Kong's jwt plugin (name C{jwt}, priority 1450).
    """

    name = "jwt"
    version = "1.0.0"
    priority = 1450
    #: Its credentials, an entity it owns (stored in a table of their own).
    entities = (credentials.JWT_ENTITY,)
    config_schema = Record({
        "uri_param_names": Set(String(), default=["jwt"],
                               description="Query string arguments the token is looked for in."),
        "cookie_names": Set(String(), default=[], description="Cookies the token is looked for in."),
        "key_claim_name": String(required=True, default="iss", description=(
            "The claim (or header field) naming the consumer's jwt credential by its key.")),
        "secret_is_base64": Boolean(required=True, default=False,
                                    description="The credentials' HS secrets are base64-encoded."),
        "claims_to_verify": Set(String(one_of=("exp", "nbf")),
                                description="Registered claims to check: exp, nbf."),
        "anonymous": String(description="A consumer (id or username) for requests that fail to authenticate."),
        "run_on_preflight": Boolean(required=True, default=True,
                                    description="Authenticate OPTIONS requests too."),
        "maximum_expiration": Number(default=0, between=(0, 31536000), description=(
            "The longest a token may still be valid, in seconds (0: no limit); needs exp in claims_to_verify.")),
        "header_names": Set(String(), default=["authorization"],
                            description="Headers the token is looked for in, as Bearer <token>."),
        "realm": String(description="The realm of the WWW-Authenticate challenge."),
    }, checks=(_conditional,))

    def authenticate_request(self, ctx: Any, config: Mapping[str, Any]) -> Authenticated | Refused:
        realm = config.get("realm")
        challenge = f'Bearer realm="{realm}"' if realm else "Bearer"
        invalid = f'{challenge}, error="invalid_token"' if realm else 'Bearer error="invalid_token"'
        tokens = find_tokens(ctx, config)
        if not tokens:
            return refused(UNAUTHORIZED, challenge)
        if len(tokens) > 1:
            return refused("Multiple tokens provided", invalid)
        try:
            token = Token(tokens[0])
        except BadToken as e:
            return refused(f"Bad token; {e}", invalid)
        claim = config["key_claim_name"]
        key = token.claims.get(claim)
        if key is None:
            key = token.header.get(claim)
        if key is None:
            return refused(f"No mandatory '{claim}' in claims", invalid)
        if key == "":
            return refused(f"Invalid '{claim}' in claims", invalid)
        secret = ctx.credentials.find("jwt", key)
        if secret is None:
            return refused(f"No credentials found for given '{claim}'", invalid)
        algorithm = secret.get("algorithm") or "HS256"
        if token.header["alg"] != algorithm:
            return refused("Invalid algorithm", invalid)
        material: str | bytes | None
        if algorithm.startswith("HS"):
            material = secret.get("secret")
            if isinstance(material, str) and config["secret_is_base64"]:
                try:
                    material = b64decode(material)
                except BadToken:
                    material = None
        else:
            material = secret.get("rsa_public_key")
        if not material:
            return refused("Invalid key/secret", invalid)
        if not token.verify(material):
            return refused("Invalid signature", invalid)
        now = ctx.started
        errors = check_claims(token.claims, config.get("claims_to_verify"), now)
        if errors:
            return Refused(401, errors, {"WWW-Authenticate": invalid})
        maximum = config.get("maximum_expiration") or 0
        if maximum > 0:
            expires = token.claims.get("exp")
            # Compared, not subtracted: an integer too large for a float
            # is merely too far in the future.
            if not is_time(expires) or expires > now + maximum:
                return Refused(401, {"exp": "exceeds maximum allowed expiration"}, {"WWW-Authenticate": invalid})
        consumer = self.owner(ctx, secret)
        if consumer is None:
            return refused(f"Could not find consumer for '{claim}={key}'")
        ctx.shared[TOKEN_KEY] = tokens[0]
        return Authenticated(consumer, secret, secret["key"])
