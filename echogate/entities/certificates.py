"""
TLS entities, with Kong 3's fields, checks and messages
(C{kong/db/schema/entities/certificates.lua}, C{snis.lua},
C{ca_certificates.lua}, and the certificate and key checks of
C{typedefs.lua}):

  - certificates: a PEM certificate (or chain: the first certificate is
    the one the key belongs to) and its private key, and optionally a
    second pair of another key type (C{cert_alt}/C{key_alt}: both or
    neither, e.g. ECDSA beside RSA). C{snis} is a shorthand of writes
    (the names of the certificate's SNI rows, created or replaced with
    it); it is not stored in the certificate's record.
  - snis: a server name (a host name with at most one wildcard, leftmost
    C{*.} or rightmost C{.*}) naming the certificate to present.
  - ca_certificates: one CA certificate (the C{CA} basic constraint set,
    not expired), whose C{cert_digest} (sha256 of the DER, in hex) is
    computed on write (L{ca_digest}) and unique.

Parsing uses C{cryptography}. Where echogate differs from Kong: the
reason after C{"invalid certificate: "} or C{"invalid key: "} is
C{cryptography}'s, not OpenSSL's; an invalid wildcard name is reported
with the name as given (Kong shows it with C{*} replaced by
C{wildcard}).
"""
from __future__ import annotations

import datetime
import hashlib
from typing import Any, Callable, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from echogate.entities.limits import INDEXED_MAX
from echogate.entities.upstreams import sni_problem
from echogate.schema import ENTITY, Record
from echogate.schema.containers import Array
from echogate.schema.fields import Field, Foreign, String

__all__ = [
    "CERTIFICATE_FIELDS",
    "certificate_schema",
    "sni_schema",
    "ca_certificate_schema",
    "wildcard_host_problem",
    "ca_digest",
    "sni_names_problem",
]

#: The certificate fields that hold PEM text.
CERTIFICATE_FIELDS = ("cert", "key", "cert_alt", "key_alt")

_CERT_TAG = "-----BEGIN CERTIFICATE-----"

Check = Callable[[dict[str, Any]], "Mapping[str, Any] | str | None"]


# ---------------------------------------------------------------------------
# Parsing


def _reason(error: Exception) -> str:
    """
    The first part of C{cryptography}'s message, without its FAQ link or
    parser internals.
    """
    text = str(error).split(". See ")[0].split(": ParseError")[0].strip()
    return text or error.__class__.__name__


def _certificates(pem: str) -> list[x509.Certificate]:
    """
    Every certificate of a PEM chain, in order.

    @raise ValueError: C{pem} holds no certificate or a bad one.
    """
    return x509.load_pem_x509_certificates(pem.encode("utf-8"))


def _private_key(pem: str) -> PrivateKeyTypes:
    """
    @raise ValueError: C{pem} is not an unencrypted PEM private key.
    @raise TypeError: it is encrypted.
    """
    return serialization.load_pem_private_key(pem.encode("utf-8"), password=None)


def _certificate_problem(value: str) -> str | None:
    try:
        _certificates(value)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as e:
        return f"invalid certificate: {_reason(e)}"
    return None


def _key_problem(value: str) -> str | None:
    try:
        _private_key(value)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as e:
        return f"invalid key: {_reason(e)}"
    return None


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(cert_pem: str, key_pem: str) -> bool:
    leaf = _certificates(cert_pem)[0]
    return _public_der(leaf.public_key()) == _public_der(_private_key(key_pem).public_key())


_KEY_KINDS: tuple[type, ...] = (
    rsa.RSAPublicKey, ec.EllipticCurvePublicKey, dsa.DSAPublicKey,
    ed25519.Ed25519PublicKey, ed448.Ed448PublicKey,
)


def _key_kind(cert_pem: str) -> type | None:
    """
    The kind of the first certificate's public key (RSA, EC, DSA, Ed25519
    or Ed448; C{None} for another).
    """
    key = _certificates(cert_pem)[0].public_key()
    return next((kind for kind in _KEY_KINDS if isinstance(key, kind)), None)


def ca_digest(cert_pem: str) -> str:
    """
    A CA certificate's C{cert_digest}: the sha256 of its DER, in lower-case hex.

    @raise ValueError: C{cert_pem} is not a PEM certificate.
    """
    der = _certificates(cert_pem)[0].public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------
# Names


def wildcard_host_problem(value: str) -> str | None:
    """
    Kong's C{wildcard_host} check: a host name, without port and not an IP
    address, with at most one C{*}, as its first or last character.

    @return: Kong's message, or C{None} when C{value} is fine.
    """
    host = value
    if "*" in value:
        at = value.index("*")
        if at not in (0, len(value) - 1):
            return "wildcard must be leftmost or rightmost character"
        if value.count("*") > 1:
            return "only one wildcard must be specified"
        host = value.replace("*", "wildcard")
    return sni_problem(value, host)


def sni_names_problem(names: list[str]) -> str | None:
    """
    The certificates DAO's check of a C{snis} shorthand: no name twice.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f"{name} is duplicated"
        seen.add(name)
    return None


# ---------------------------------------------------------------------------
# Entity checks


def _mutually_required(*names: str) -> Check:
    """
    Kong's C{mutually_required}: all of C{names} set, or none.
    """
    def check(record: dict[str, Any]) -> Mapping[str, Any] | None:
        given = [name for name in names if record.get(name) is not None]
        if given and len(given) != len(names):
            return {ENTITY: "all or none of these fields must be set: "
                    + ", ".join(f"'{name}'" for name in names)}
        return None

    return check


def _pair_matches(cert: str, key: str, message: str) -> Check:
    def check(record: dict[str, Any]) -> str | None:
        if record.get(cert) is None or record.get(key) is None:
            return None
        return None if _matches(record[cert], record[key]) else message

    return check


def _different_kinds(record: dict[str, Any]) -> str | None:
    if record.get("cert") is None or record.get("cert_alt") is None:
        return None
    kind = _key_kind(record["cert"])
    if kind is not None and kind is _key_kind(record["cert_alt"]):
        return ("certificate and alternative certificate need to have different type"
                " (e.g. RSA and ECDSA), the provided certificates were both of the same type")
    return None


def _one_ca(record: dict[str, Any]) -> str | None:
    """
    Kong's check of a CA certificate: one certificate, not expired, with
    the C{CA} basic constraint. "Now" is the record's C{updated_at} (the
    time of the write).
    """
    pem = record["cert"]
    if pem.count(_CERT_TAG) > 1:
        return "please submit only one certificate at a time"
    cert = _certificates(pem)[0]
    now = datetime.datetime.fromtimestamp(record.get("updated_at") or 0, datetime.timezone.utc)
    if cert.not_valid_after_utc < now:
        return 'certificate expired, "Not After" time is in the past'
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        return ('certificate does not appear to be a CA because it is missing'
                ' the "CA" basic constraint')
    return None


# ---------------------------------------------------------------------------
# Schemas


def _certificate_field(required: bool, description: str) -> String:
    return String(required=required, check=_certificate_problem, description=description)


def _key_field(required: bool, description: str) -> String:
    return String(required=required, check=_key_problem, description=description)


def certificate_schema(common: Mapping[str, Field], tags: Field) -> Record:
    """
    The certificate entity's schema, C{snis} (the shorthand) included.

    @param common: the C{id}, C{created_at} and C{updated_at} fields every
        entity has.
    @param tags: the C{tags} field.
    """
    return Record({
        "id": common["id"],
        "created_at": common["created_at"],
        "updated_at": common["updated_at"],
        "cert": _certificate_field(True, "PEM-encoded public certificate chain of the SSL key pair."),
        "key": _key_field(True, "PEM-encoded private key of the SSL key pair."),
        "cert_alt": _certificate_field(False, "PEM-encoded public certificate chain of the"
                                              " alternate SSL key pair (another key type)."),
        "key_alt": _key_field(False, "PEM-encoded private key of the alternate SSL key pair."),
        "tags": tags,
        "snis": Array(String(check=wildcard_host_problem), check=_snis_check, description=(
            "The SNI names of this certificate: a shorthand of writes, read back as the"
            " names of its snis.")),
    }, checks=(
        _mutually_required("cert_alt", "key_alt"),
        _pair_matches("cert", "key", "certificate does not match key"),
        _pair_matches("cert_alt", "key_alt", "alternative certificate does not match key"),
        _different_kinds,
    ))


def _snis_check(names: list[str]) -> str | None:
    return sni_names_problem(names)


def sni_schema(common: Mapping[str, Field], tags: Field) -> Record:
    """
    The SNI entity's schema.
    """
    return Record({
        "id": common["id"],
        "name": String(required=True, check=wildcard_host_problem, len_max=INDEXED_MAX,
                       description="The SNI name to associate with the given certificate."),
        "created_at": common["created_at"],
        "updated_at": common["updated_at"],
        "tags": tags,
        "certificate": Foreign("certificates", required=True, description=(
            "The id (a UUID) of the certificate with which to associate the SNI hostname.")),
    })


def ca_certificate_schema(common: Mapping[str, Field], tags: Field) -> Record:
    """
    The CA certificate entity's schema. C{cert_digest} is replaced on
    every write by L{ca_digest} of C{cert}.
    """
    return Record({
        "id": common["id"],
        "created_at": common["created_at"],
        "updated_at": common["updated_at"],
        "cert": _certificate_field(True, "PEM-encoded public certificate of the CA."),
        "cert_digest": String(description="SHA256 hex digest of the public certificate (computed)."),
        "tags": tags,
    }, checks=(_one_ca,))
