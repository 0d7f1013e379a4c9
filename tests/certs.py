"""
Certificates for tests, made with C{cryptography}: a CA (L{make_ca}), a
leaf signed by it for some names (L{make_leaf}), a self-signed
certificate (L{make_self_signed}), RSA and EC keys (L{rsa_key},
L{ec_key}), everything as PEM text (L{KeyPair.cert_pem},
L{KeyPair.key_pem}), and L{write_pair} to put a pair into files.

Keys are small (RSA 2048, EC P-256) and made fresh each call; a test
module that needs many certificates may make them once at import.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Iterable, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

__all__ = [
    "KeyPair",
    "rsa_key",
    "ec_key",
    "make_ca",
    "make_leaf",
    "make_self_signed",
    "write_pair",
]

KeyKind = Literal["rsa", "ec"]

_DAY = datetime.timedelta(days=1)


@attrs.frozen
class KeyPair:
    """
    A certificate and its private key.

    @ivar cert: the certificate.
    @ivar key: its private key.
    @ivar chain: the certificates above it, issuer first (empty for a CA
        or a self-signed certificate).
    """

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> str:
        """
        The certificate as PEM text.
        """
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def chain_pem(self) -> str:
        """
        The certificate followed by its chain, as PEM text.
        """
        return self.cert_pem + "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in self.chain)

    @property
    def key_pem(self) -> str:
        """
        The private key as unencrypted PKCS#8 PEM text.
        """
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode("ascii")


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """
    A new RSA private key.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    """
    A new EC (P-256) private key.
    """
    return ec.generate_private_key(ec.SECP256R1())


def _key(kind: KeyKind) -> CertificateIssuerPrivateKeyTypes:
    return rsa_key() if kind == "rsa" else ec_key()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object,
             days: float, not_before: datetime.datetime | None) -> x509.CertificateBuilder:
    start = not_before or datetime.datetime.now(datetime.timezone.utc) - _DAY
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _DAY + datetime.timedelta(days=days)))


def make_ca(name: str = "echogate test CA", *, kind: KeyKind = "rsa", days: float = 30,
            not_before: datetime.datetime | None = None, is_ca: bool = True) -> KeyPair:
    """
    A self-signed CA certificate (C{BasicConstraints} CA=true, key usage
    to sign certificates).

    @param kind: C{"rsa"} or C{"ec"}.
    @param days: how long it is valid from now (from C{not_before}).
    @param is_ca: C{False} gives the same certificate without the CA
        basic constraint (to test that it is refused as a CA).
    """
    key = _key(kind)
    subject = _name(name)
    builder = _builder(subject, subject, key.public_key(), days, not_before)
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    return KeyPair(builder.sign(key, hashes.SHA256()), key)


def make_leaf(ca: KeyPair, names: Iterable[str], *, kind: KeyKind = "rsa",
              days: float = 30, not_before: datetime.datetime | None = None) -> KeyPair:
    """
    A server certificate for C{names} (host names or IP addresses, in the
    subject alternative names; the first is also the common name),
    signed by C{ca}, with C{ca} as its chain.
    """
    names = list(names)
    key = _key(kind)
    builder = _builder(_name(names[0] if names else "leaf"), ca.cert.subject,
                       key.public_key(), days, not_before)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if names:
        builder = builder.add_extension(_alt_names(names), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key, (ca.cert,))


def make_self_signed(names: Iterable[str], *, kind: KeyKind = "rsa", days: float = 30) -> KeyPair:
    """
    A self-signed server certificate for C{names} (not a CA).
    """
    names = list(names)
    key = _key(kind)
    subject = _name(names[0] if names else "self-signed")
    builder = _builder(subject, subject, key.public_key(), days, None)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if names:
        builder = builder.add_extension(_alt_names(names), critical=False)
    return KeyPair(builder.sign(key, hashes.SHA256()), key)


def write_pair(pair: KeyPair, directory: str | Path, stem: str = "server", *,
               chain: bool = True) -> tuple[Path, Path]:
    """
    Write C{pair} into C{directory} as C{<stem>.crt} (with its chain
    unless C{chain} is false) and C{<stem>.key}.

    @return: the certificate's path and the key's.
    """
    directory = Path(directory)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_text(pair.chain_pem if chain else pair.cert_pem)
    key_path.write_text(pair.key_pem)
    return cert_path, key_path
