"""
Tests for L{echogate.entities.certificates} and the TLS fields of
services and routes: Kong 3's shapes, defaults and messages, through
L{echogate.entities.writes} (no database).
"""
from __future__ import annotations

import datetime
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from echogate.entities import writes
from echogate.entities.certificates import ca_digest, wildcard_host_problem
from echogate.errors import SchemaViolation
from tests.certs import make_ca, make_leaf, make_self_signed

NOW = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
ID = "00000000-0000-4000-8000-000000000001"
CERT_ID = "00000000-0000-4000-8000-0000000000c1"
CONDITIONAL = "failed conditional validation given value of field 'protocol'"

CA = make_ca()
RSA = make_leaf(CA, ["example.com"])
EC = make_leaf(CA, ["example.com"], kind="ec")
OTHER_RSA = make_self_signed(["other.test"])


def insert(entity: str, body: dict[str, Any], now: int = NOW) -> dict[str, Any]:
    return writes.prepare_insert(entity, body, plugins={}, now=now, new_id=ID)


def violation(entity: str, body: dict[str, Any], now: int = NOW) -> Any:
    try:
        insert(entity, body, now)
    except SchemaViolation as e:
        return e.fields
    raise AssertionError(f"{body!r} was accepted")


class CertificateTests(SynchronousTestCase):
    """
    The certificate entity.
    """

    def test_defaults(self) -> None:
        """
        A certificate and its key: every Kong field, the alternative pair
        and tags null, the key kept as given.
        """
        self.assertEqual(insert("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem}), {
            "id": ID, "created_at": NOW, "updated_at": NOW, "cert": RSA.cert_pem,
            "key": RSA.key_pem, "cert_alt": None, "key_alt": None, "tags": None, "snis": None,
        })

    def test_required(self) -> None:
        """
        C{cert} and C{key} are required.
        """
        self.assertEqual(violation("certificates", {}), {
            "cert": "required field missing", "key": "required field missing"})

    def test_chain(self) -> None:
        """
        A chain (the leaf, then its CA) is accepted; the key matches the first.
        """
        record = insert("certificates", {"cert": RSA.chain_pem, "key": RSA.key_pem})
        self.assertEqual(record["cert"], RSA.chain_pem)
        self.assertEqual(RSA.chain_pem.count("BEGIN CERTIFICATE"), 2)

    def test_invalid(self) -> None:
        """
        Text that is not a PEM certificate or key: Kong's C{invalid
        certificate: ...} and C{invalid key: ...}.
        """
        fields = violation("certificates", {"cert": "nope", "key": "nope"})
        self.assertTrue(fields["cert"].startswith("invalid certificate: "), fields)
        self.assertTrue(fields["key"].startswith("invalid key: "), fields)

    def test_certificateAsKey(self) -> None:
        """
        A certificate given as the key is not a key.
        """
        fields = violation("certificates", {"cert": RSA.cert_pem, "key": RSA.cert_pem})
        self.assertEqual(list(fields), ["key"])
        self.assertTrue(fields["key"].startswith("invalid key: "), fields)

    def test_encryptedKey(self) -> None:
        """
        A key encrypted with a passphrase cannot be read: invalid.
        """
        encrypted = RSA.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")).decode("ascii")
        fields = violation("certificates", {"cert": RSA.cert_pem, "key": encrypted})
        self.assertTrue(fields["key"].startswith("invalid key: "), fields)

    def test_keyMismatch(self) -> None:
        """
        A key that is not the certificate's: Kong's message.
        """
        self.assertEqual(violation("certificates", {"cert": RSA.cert_pem, "key": OTHER_RSA.key_pem}),
                         {"@entity": ["certificate does not match key"]})

    def test_alternativePair(self) -> None:
        """
        An EC pair beside an RSA one is accepted.
        """
        record = insert("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem,
                                         "cert_alt": EC.cert_pem, "key_alt": EC.key_pem})
        self.assertEqual((record["cert_alt"], record["key_alt"]), (EC.cert_pem, EC.key_pem))

    def test_alternativeBothOrNeither(self) -> None:
        """
        C{cert_alt} without C{key_alt} (or the reverse): Kong's mutually_required message.
        """
        message = {"@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]}
        self.assertEqual(violation("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem,
                                                    "cert_alt": EC.cert_pem}), message)
        self.assertEqual(violation("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem,
                                                    "key_alt": EC.key_pem}), message)

    def test_alternativeMismatch(self) -> None:
        """
        An alternative key that is not the alternative certificate's.
        """
        other_ec = make_self_signed(["x.test"], kind="ec")
        self.assertEqual(violation("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem,
                                                    "cert_alt": EC.cert_pem, "key_alt": other_ec.key_pem}),
                         {"@entity": ["alternative certificate does not match key"]})

    def test_alternativeSameType(self) -> None:
        """
        Two RSA pairs: the alternative must be of another key type.
        """
        self.assertEqual(violation("certificates", {"cert": RSA.cert_pem, "key": RSA.key_pem,
                                                    "cert_alt": OTHER_RSA.cert_pem,
                                                    "key_alt": OTHER_RSA.key_pem}),
                         {"@entity": ["certificate and alternative certificate need to have different"
                                      " type (e.g. RSA and ECDSA), the provided certificates were both"
                                      " of the same type"]})

    def test_snisShorthand(self) -> None:
        """
        C{snis} is checked as a list of wildcard host names without duplicates.
        """
        base = {"cert": RSA.cert_pem, "key": RSA.key_pem}
        self.assertEqual(insert("certificates", {**base, "snis": ["a.test", "*.b.test"]})["snis"],
                         ["a.test", "*.b.test"])
        self.assertEqual(violation("certificates", {**base, "snis": ["a.test", "a.test"]}),
                         {"snis": "a.test is duplicated"})
        self.assertEqual(violation("certificates", {**base, "snis": ["a.test", "a.*.test"]}),
                         {"snis": {"2": "wildcard must be leftmost or rightmost character"}})


class WildcardHostTests(SynchronousTestCase):
    """
    L{wildcard_host_problem}: Kong's C{wildcard_host} check.
    """

    def test_accepted(self) -> None:
        """
        Plain names, a leading C{*.} and a trailing C{.*}.
        """
        for name in ("example.com", "*.example.com", "example.*", "localhost"):
            self.assertIsNone(wildcard_host_problem(name), name)

    def test_refused(self) -> None:
        """
        Each refusal with Kong's message.
        """
        for name, message in [
            ("a.*.com", "wildcard must be leftmost or rightmost character"),
            ("*.example.*", "only one wildcard must be specified"),
            ("10.0.0.1", "must not be an IP"),
            ("example.com:443", "must not have a port"),
            ("example.com:99999", "must not have a port"),
            ("exa mple.com", "invalid value: exa mple.com"),
            ("*.exa mple.com", "invalid value: *.exa mple.com"),
        ]:
            self.assertEqual(wildcard_host_problem(name), message, name)


class SniTests(SynchronousTestCase):
    """
    The SNI entity.
    """

    def test_defaults(self) -> None:
        """
        A name and a certificate; tags null.
        """
        self.assertEqual(insert("snis", {"name": "*.example.com", "certificate": {"id": CERT_ID}}), {
            "id": ID, "name": "*.example.com", "created_at": NOW, "updated_at": NOW, "tags": None,
            "certificate": {"id": CERT_ID}})

    def test_required(self) -> None:
        """
        C{name} and C{certificate} are required.
        """
        self.assertEqual(violation("snis", {}), {
            "name": "required field missing", "certificate": "required field missing"})

    def test_badName(self) -> None:
        """
        A name is a wildcard host: Kong's messages.
        """
        self.assertEqual(violation("snis", {"name": "1.2.3.4", "certificate": {"id": CERT_ID}}),
                         {"name": "must not be an IP"})


class CaCertificateTests(SynchronousTestCase):
    """
    The CA certificate entity.
    """

    def test_digest(self) -> None:
        """
        C{cert_digest} is the sha256 of the DER, in hex, whatever was given.
        """
        der = CA.cert.public_bytes(serialization.Encoding.DER)
        record = insert("ca_certificates", {"cert": CA.cert_pem, "cert_digest": "made up"})
        self.assertEqual(record, {"id": ID, "created_at": NOW, "updated_at": NOW, "cert": CA.cert_pem,
                                  "cert_digest": hashlib.sha256(der).hexdigest(), "tags": None})
        self.assertEqual(ca_digest(CA.cert_pem), record["cert_digest"])

    def test_digestOnPatch(self) -> None:
        """
        A PATCH that changes C{cert} recomputes the digest.
        """
        record = insert("ca_certificates", {"cert": CA.cert_pem})
        other = make_ca("another CA")
        patched = writes.prepare_update("ca_certificates", record, {"cert": other.cert_pem},
                                        plugins={}, now=NOW)
        self.assertEqual(patched["cert_digest"], ca_digest(other.cert_pem))

    def test_notCa(self) -> None:
        """
        A certificate without the CA basic constraint: Kong's message.
        """
        message = {"@entity": ['certificate does not appear to be a CA because it is missing'
                               ' the "CA" basic constraint']}
        self.assertEqual(violation("ca_certificates", {"cert": RSA.cert_pem}), message)
        self.assertEqual(violation("ca_certificates", {"cert": make_ca(is_ca=False).cert_pem}), message)

    def test_onlyOne(self) -> None:
        """
        Two certificates at once are refused.
        """
        self.assertEqual(violation("ca_certificates", {"cert": CA.cert_pem + make_ca("b").cert_pem}),
                         {"@entity": ["please submit only one certificate at a time"]})

    def test_expired(self) -> None:
        """
        A CA certificate that expired before the write's time is refused.
        """
        old = make_ca(not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc), days=1)
        self.assertEqual(violation("ca_certificates", {"cert": old.cert_pem}),
                         {"@entity": ['certificate expired, "Not After" time is in the past']})
        written_then = int(datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc).timestamp())
        self.assertEqual(insert("ca_certificates", {"cert": old.cert_pem}, now=written_then)["cert"],
                         old.cert_pem)

    def test_invalid(self) -> None:
        """
        Not PEM: Kong's C{invalid certificate: ...}.
        """
        fields = violation("ca_certificates", {"cert": "nope"})
        self.assertTrue(fields["cert"].startswith("invalid certificate: "), fields)


class ServiceTlsTests(SynchronousTestCase):
    """
    A service's TLS fields.
    """

    def https(self, **fields: Any) -> dict[str, Any]:
        return {"host": "example.com", "protocol": "https", **fields}

    def test_defaults(self) -> None:
        """
        Every TLS field is null by default.
        """
        record = insert("services", self.https())
        self.assertEqual({k: record[k] for k in ("client_certificate", "tls_verify", "tls_verify_depth",
                                                  "ca_certificates")},
                         {"client_certificate": None, "tls_verify": None, "tls_verify_depth": None,
                          "ca_certificates": None})

    def test_set(self) -> None:
        """
        An https service takes all of them.
        """
        record = insert("services", self.https(
            client_certificate={"id": CERT_ID}, tls_verify=True, tls_verify_depth=3,
            ca_certificates=[CERT_ID]))
        self.assertEqual((record["client_certificate"], record["tls_verify"], record["tls_verify_depth"],
                          record["ca_certificates"]), ({"id": CERT_ID}, True, 3, [CERT_ID]))

    def test_badValues(self) -> None:
        """
        Kong's messages for bad values.
        """
        self.assertEqual(violation("services", self.https(
            tls_verify="yes", tls_verify_depth=65, ca_certificates=["nope"], client_certificate="x")), {
            "tls_verify": "expected a boolean",
            "tls_verify_depth": "value should be between 0 and 64",
            "ca_certificates": {"1": "expected a valid UUID"},
            "client_certificate": "expected a record",
        })

    def test_httpOnly(self) -> None:
        """
        An http service cannot set them: Kong's conditional messages.
        """
        self.assertEqual(violation("services", {"host": "example.com", "tls_verify": False,
                                                "ca_certificates": [CERT_ID]}), {
            "tls_verify": "value must be null", "ca_certificates": "value must be null",
            "@entity": [CONDITIONAL]})


class RouteSnisTests(SynchronousTestCase):
    """
    A route's C{snis}.
    """

    def test_https(self) -> None:
        """
        With https among the protocols, C{snis} is enough of a matcher.
        """
        record = insert("routes", {"protocols": ["https"], "snis": ["*.example.com", "example.*"]})
        self.assertEqual(record["snis"], ["*.example.com", "example.*"])

    def test_httpOnly(self) -> None:
        """
        With only http: Kong's message.
        """
        self.assertEqual(violation("routes", {"protocols": ["http"], "paths": ["/"], "snis": ["a.test"]}), {
            "snis": "length must be 0",
            "@entity": ["'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls'"
                        " or 'tls_passthrough'"]})

    def test_badName(self) -> None:
        """
        Each name is a wildcard host.
        """
        self.assertEqual(violation("routes", {"protocols": ["https"], "snis": ["a.*.test"]}),
                         {"snis": {"1": "wildcard must be leftmost or rightmost character"}})

    def test_redirectStatus(self) -> None:
        """
        C{https_redirect_status_code} is 426 by default, one of Kong's five.
        """
        self.assertEqual(insert("routes", {"paths": ["/"]})["https_redirect_status_code"], 426)
        self.assertEqual(insert("routes", {"paths": ["/"], "https_redirect_status_code": 308})
                         ["https_redirect_status_code"], 308)
        self.assertEqual(violation("routes", {"paths": ["/"], "https_redirect_status_code": 303}),
                         {"https_redirect_status_code": "expected one of: 426, 301, 302, 307, 308"})
