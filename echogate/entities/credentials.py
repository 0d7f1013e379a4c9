"""
Consumers' credentials: the credential entities (key-auth keys, basic-auth
usernames and passwords, jwt secrets, acl groups), what happens to them on
write (generated keys, hashed passwords). The in-memory index that the
data path looks them up in is L{echogate.pdk.credentials}.

The entities, by their stored (Kong DAO) names, with their Admin API
names:

  - C{keyauth_credentials} (C{/key-auths}, C{/consumers/{c}/key-auth}):
    C{key}, unique, generated when not given.
  - C{basicauth_credentials} (C{/basic-auths}, C{/consumers/{c}/basic-auth}):
    C{username}, unique, and C{password}, stored only as a salted scrypt
    hash (see L{hash_password}).
  - C{jwt_secrets} (C{/jwts}, C{/consumers/{c}/jwt}): C{key}, unique and
    generated, C{secret} (generated), C{algorithm} and, for the asymmetric
    algorithms, C{rsa_public_key} (any PEM public key of the algorithm's
    family, whatever the field's Kong name says).
  - C{acls} (C{/acls}, C{/consumers/{c}/acls}): C{group}, unique per
    consumer.

Each belongs to a consumer (C{consumer}, required) and is deleted with it.

The data path never reads the database: every consumer and credential is
in the configuration snapshot (L{echogate.pdk.credentials.CredentialIndex}),
indexed by id, key and username, so that a lookup is one dict lookup
however many there are.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import types
from typing import Any, Callable, Iterable, Mapping

import attrs

from echogate.entities.limits import INDEXED_MAX
from echogate.pdk.credentials import ACLS, BASICAUTH, JWT, KEYAUTH
from echogate.pdk.entities import PluginEntity
from echogate.schema import ENTITY, Record
from echogate.schema.fields import REQUIRED, Field, String

__all__ = [
    "KEYAUTH",
    "BASICAUTH",
    "JWT",
    "ACLS",
    "Collection",
    "COLLECTIONS",
    "JWT_ALGORITHMS",
    "GENERATED",
    "DECLARED",
    "KEYAUTH_ENTITY",
    "BASICAUTH_ENTITY",
    "JWT_ENTITY",
    "ACLS_ENTITY",
    "load_public_key",
    "random_token",
    "fill_generated",
    "on_write",
    "hash_password",
    "verify_password",
    "dummy_hash",
]

# The entities' stored names are the PDK's (the index is keyed by them).


@attrs.frozen
class Collection:
    """
    How one credential entity appears in the Admin API.

    @ivar entity: the stored entity's name, e.g. C{"keyauth_credentials"}.
    @ivar nested: the path under a consumer, e.g. C{"key-auth"}.
    @ivar top: the top-level path, e.g. C{"key-auths"}.
    @ivar endpoint_key: the field that addresses a credential besides its
        id (for acls, only under its consumer).
    """

    entity: str
    nested: str
    top: str
    endpoint_key: str


#: The algorithms a jwt secret may name (Kong's list).
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
                  "ES512", "PS256", "PS384", "PS512", "EdDSA")


def _public_key_kind(algorithm: str) -> str:
    return {"RS": "rsa", "PS": "rsa", "ES": "ec", "Ed": "ed"}[algorithm[:2]]


def load_public_key(pem: str, algorithm: str) -> Any:
    """
    The public key in C{pem}, checked to suit C{algorithm}.

    @raise ValueError: it is not a PEM public key of the algorithm's family.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise ValueError("invalid key") from e
    kinds = {"rsa": (rsa.RSAPublicKey,), "ec": (ec.EllipticCurvePublicKey,),
             "ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)}
    if not isinstance(key, kinds[_public_key_kind(algorithm)]):
        raise ValueError("invalid key")
    return key


def _jwt_key_check(record: dict[str, Any]) -> Mapping[str, Any] | None:
    algorithm = record.get("algorithm") or "HS256"
    if algorithm.startswith("HS"):
        return None
    key = record.get("rsa_public_key")
    condition = "failed conditional validation given value of field 'algorithm'"
    if key is None:
        return {ENTITY: condition, "rsa_public_key": REQUIRED}
    try:
        load_public_key(key, algorithm)
    except ValueError:
        return {ENTITY: condition, "rsa_public_key": "invalid key"}
    return None


def _declared(name: str, endpoint: str, nested: str, fields: Mapping[str, Field], *,
              key: str, checks: tuple[Any, ...] = (), unique: bool = True,
              generated: tuple[str, ...] = ()) -> PluginEntity:
    return PluginEntity(
        name=name, schema=Record(fields, checks=checks), endpoint=endpoint, nested_endpoint=nested,
        parent="consumers", unique=(key,) if unique else (), unique_per_parent=() if unique else (key,),
        endpoint_key=key, generated=generated, table=name)


#: The credential entities, declared as plugin entities
#: (L{echogate.pdk.entities.PluginEntity}) that the bundled plugins own
#: (their C{entities}) with the tables of their own, in the order Kong
#: documents them.
KEYAUTH_ENTITY = _declared(KEYAUTH, "key-auths", "key-auth", {
    "key": String(required=True, len_max=INDEXED_MAX, description="The API key (generated when not given)."),
}, key="key", generated=("key",))
BASICAUTH_ENTITY = _declared(BASICAUTH, "basic-auths", "basic-auth", {
    "username": String(required=True, len_max=INDEXED_MAX, description="The username, unique."),
    "password": String(required=True, description=(
        "The password; stored and returned only as a salted scrypt hash.")),
}, key="username")
JWT_ENTITY = _declared(JWT, "jwts", "jwt", {
    "key": String(required=True, len_max=INDEXED_MAX, description=(
        "The value of the token's key claim (iss by default); generated when not given.")),
    "secret": String(required=True, description=(
        "The HMAC secret for HS algorithms (generated when not given).")),
    "rsa_public_key": String(description=(
        "The PEM public key for the RS, PS, ES and EdDSA algorithms.")),
    "algorithm": String(required=True, one_of=JWT_ALGORITHMS, default="HS256",
                        description="The algorithm tokens must be signed with."),
}, key="key", checks=(_jwt_key_check,), generated=("key", "secret"))
ACLS_ENTITY = _declared(ACLS, "acls", "acls", {
    "group": String(required=True, len_max=INDEXED_MAX, description="The group's name."),
}, key="group", unique=False)

DECLARED: tuple[PluginEntity, ...] = (KEYAUTH_ENTITY, BASICAUTH_ENTITY, JWT_ENTITY, ACLS_ENTITY)

#: How each credential entity appears in the Admin API.
COLLECTIONS: tuple[Collection, ...] = tuple(
    Collection(d.name, d.nested, d.endpoint, d.endpoint_key or "") for d in DECLARED)


#: Fields filled with a random value when a new credential does not give them.
GENERATED: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {d.name: d.generated for d in DECLARED if d.generated})


def random_token() -> str:
    """
    A random 32-character hex string, as Kong generates keys and secrets.
    """
    return secrets.token_hex(16)


def fill_generated(entity: str, fields: dict[str, Any],
                   token: Callable[[], str] = random_token,
                   generated: Iterable[str] | None = None) -> dict[str, Any]:
    """
    Give a new credential the generated fields it does not set (C{key} and
    C{secret}); an explicit null stays null, for validation to refuse.

    @param generated: the fields to fill (a plugin entity's
        C{generated}); by default, the credential entity's.
    """
    for name in GENERATED.get(entity, ()) if generated is None else generated:
        if name not in fields:
            fields[name] = token()
    return fields


def on_write(entity: str, record: dict[str, Any], given: Iterable[str]) -> dict[str, Any]:
    """
    What to store for a validated C{record}: a basic-auth password given in
    this write (C{given} names the fields the body set) is replaced by its
    hash; a password not given is the stored hash, kept.
    """
    if entity == BASICAUTH and "password" in given and record.get("password") is not None:
        record = dict(record)
        record["password"] = hash_password(record["password"])
    return record


# ---------------------------------------------------------------------------
# Passwords

_SCRYPT_LOG_N = 14
_SCRYPT_R = 8
_SCRYPT_P = 1
_HASH = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})"
                   r"\$([A-Za-z0-9+/]+={0,2})$")


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=1 << log_n, r=r, p=p, dklen=length,
                          maxmem=256 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, log_n: int = _SCRYPT_LOG_N, salt: bytes | None = None) -> str:
    """
    A salted scrypt hash of C{password}, in the PHC string format
    (C{$scrypt$ln=14,r=8,p=1$<salt>$<hash>}, base64): what basic-auth
    stores instead of the password. Slow on purpose (about 40 ms).
    """
    salt = os.urandom(16) if salt is None else salt
    digest = _scrypt(password.encode("utf-8"), salt, log_n, _SCRYPT_R, _SCRYPT_P, 32)
    return f"$scrypt$ln={log_n},r={_SCRYPT_R},p={_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def dummy_hash() -> str:
    """
    A stored hash that no password matches, with the cost parameters of
    the hashes L{hash_password} makes (a random salt and a random 32-byte
    hash, so none is computed here): checking a password against it with
    L{verify_password} takes the same work as against a real one. For an
    unknown username, so that it is answered no sooner than a wrong
    password.
    """
    return (f"$scrypt$ln={_SCRYPT_LOG_N},r={_SCRYPT_R},p={_SCRYPT_P}"
            f"${_b64(os.urandom(16))}${_b64(os.urandom(32))}")


def verify_password(stored: str, password: str) -> bool:
    """
    Whether C{password} hashes to C{stored} (made by L{hash_password}),
    compared in constant time. A malformed C{stored} (or one whose hash
    is not 32 bytes, or whose cost parameters are out of bounds) never
    matches.
    """
    match = _HASH.match(stored or "")
    if match is None:
        return False
    log_n, r, p = (int(g) for g in match.group(1, 2, 3))
    if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    try:
        salt = base64.b64decode(match.group(4), validate=True)
        expected = base64.b64decode(match.group(5), validate=True)
    except ValueError:
        return False
    if len(expected) != 32 or len(salt) < 8:
        return False
    digest = _scrypt(password.encode("utf-8"), salt, log_n, r, p, len(expected))
    return hmac.compare_digest(digest, expected)
