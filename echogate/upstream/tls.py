"""
TLS to services: the OpenSSL connection creator of one policy and server
name (L{PolicyConnector}), the client's cache of them (L{TLSConnectors}),
and the log's words for a TLS failure (L{describe_tls}). What a service's
TLS settings resolve to (L{TLSPolicy}, L{TLSPolicies}) is in
L{echogate.upstream.tlspolicy}; its names are importable from here too.

One OpenSSL context is made per distinct policy (server name aside), and
one cheap L{PolicyConnector} on it per (policy, server name); both are
kept, and the pooled connections of different connectors are never
shared.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, CertificateOptions, platformTrust, trustRootFromCertificates
from twisted.python.failure import Failure
from zope.interface import implementer

from echogate.upstream.tlspolicy import (
    DEFAULT_VERIFY_DEPTH,
    TLS_POLICY,
    ClientCertificate,
    TLSPolicies,
    TLSPolicy,
    UnknownCertificate,
    host_of,
    tls_policy,
)

#: OpenSSL's words for the verification errors a service's certificate
#: most often meets (C{X509_verify_cert_error_string}), by error number.
_X509_ERRORS: dict[int, str] = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsupported certificate purpose",
    28: "certificate rejected",
}


class TLSSetupError(Exception):
    """
    A service's TLS policy cannot be used: a certificate or key that does
    not load, a key that does not match its certificate, certificate ids
    nobody resolved. The request is answered 502; the message says why.
    """


class TLSVerificationError(Exception):
    """
    The service's certificate did not verify: C{str()} is the log's
    reason, C{"certificate verify failed: <OpenSSL's reason>"} or
    C{"hostname mismatch"}, with the server name.

    @ivar reason: the reason, without the server name.
    @ivar server_name: the name the certificate was checked for.
    """

    def __init__(self, reason: str, server_name: str):
        super().__init__(f"{reason} (server name {server_name})")
        self.reason = reason
        self.server_name = server_name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _verifier(tls_protocol: Any, server_name: str, is_ip: bool) -> Callable[[SSL.Connection, X509, int, int, int],
                                                                             bool]:
    """
    The verify callback of one connection: OpenSSL's verdict on each
    certificate of the chain, then the leaf's name; the first failure is
    given to the TLS protocol (L{TLSVerificationError}), whose connection
    then ends with it.
    """
    protocol: Any = tls_protocol

    def verify(connection: SSL.Connection, certificate: X509, error: int, depth: int, ok: int) -> bool:
        nonlocal protocol
        if protocol is None:
            return False  # failed already
        if not ok:
            reason = _X509_ERRORS.get(error, f"X509 verify error {error}")
            failure = TLSVerificationError(f"certificate verify failed: {reason}", server_name)
        elif depth != 0:
            return True
        else:
            try:
                leaf = certificate.to_cryptography()
                if is_ip:
                    verify_certificate_ip_address(leaf, server_name)
                else:
                    verify_certificate_hostname(leaf, server_name)
                return True
            except (VerificationError, CertificateError):
                failure = TLSVerificationError("hostname mismatch", server_name)
        failing, protocol = protocol, None
        failing.failVerification(Failure(failure))
        return False

    return verify


def _certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise TLSSetupError(f"{what}: {e}") from None
    return found


def _server_name_bytes(name: str) -> bytes:
    """
    C{name} as SNI sends it (IDNA for a non-ASCII name).

    @raise TLSSetupError: it is no host name.
    """
    try:
        return name.encode("ascii") if name.isascii() else name.encode("idna")
    except UnicodeError:
        raise TLSSetupError(f"server name {name!r} is not a host name") from None


def policy_context(policy: TLSPolicy, default_verify: bool) -> tuple[bool, CertificateOptions]:
    """
    Whether C{policy} verifies, and the L{CertificateOptions} holding its
    OpenSSL context (trust, depth, client certificate, and Twisted's
    protocol and cipher defaults), made now; its server name plays no
    part.

    @raise TLSSetupError: a PEM does not load, or a key is not its
        certificate's.
    """
    verify = default_verify if policy.verify is None else policy.verify
    options: dict[str, Any] = {}
    client = policy.client_certificate
    if client is not None:
        chain = _certificates(client.cert, "client certificate")
        if not chain:
            raise TLSSetupError("client certificate: no certificate in its PEM")
        try:
            key = load_pem_private_key(client.key, None)
        except (ValueError, TypeError) as e:
            raise TLSSetupError(f"client certificate key: {e}") from None
        options.update(certificate=X509.from_cryptography(chain[0]),
                       privateKey=PKey.from_cryptography_key(key),  # type: ignore[arg-type]
                       extraCertChain=[X509.from_cryptography(c) for c in chain[1:]])
    if verify:
        if policy.ca_certificates is None:
            options["trustRoot"] = platformTrust()
        else:
            cas = [Certificate(X509.from_cryptography(c))
                   for pem in policy.ca_certificates for c in _certificates(pem, "CA certificate")]
            options["trustRoot"] = trustRootFromCertificates(cas)
        options["verifyDepth"] = DEFAULT_VERIFY_DEPTH if policy.verify_depth is None else policy.verify_depth
    made = CertificateOptions(**options)
    try:
        # The context, made now, once (and checked: a key that is not the
        # certificate's fails here, not per connection).
        made.getContext()
    except SSL.Error as e:
        raise TLSSetupError(f"client certificate: {_ssl_reason(e)}") from None
    return verify, made


@implementer(IOpenSSLClientConnectionCreator)
class PolicyConnector:
    """
    Makes the OpenSSL connections of one L{TLSPolicy} to one server name,
    on the policy's shared context (L{policy_context}): each connection
    gets the server name as SNI and, when verifying, a verify callback
    that checks the chain and the name.

    @ivar verify: whether certificates are verified.
    @ivar server_name: the name sent and verified.
    """

    def __init__(self, verify: bool, options: CertificateOptions, server_name: str):
        self.verify = verify
        self.server_name = server_name
        self._options = options
        self._is_ip = _is_ip(server_name)
        self._sni = _server_name_bytes(server_name) if not self._is_ip and server_name else None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A connection on the policy's context, with SNI and verification.
        """
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        if self.verify:
            connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                                  _verifier(tlsProtocol, self.server_name, self._is_ip))
        return connection


def _ssl_reason(error: SSL.Error) -> str:
    """
    OpenSSL's words in an L{SSL.Error} (the last part of each queued
    error), e.g. C{"tlsv13 alert certificate required"}.
    """
    parts = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(entry, tuple) and entry:
            parts.append(str(entry[-1]))
    return "; ".join(p for p in parts if p) or str(error) or "TLS error"


def describe_tls(value: BaseException) -> str | None:
    """
    The log's reason for a TLS failure (L{TLSVerificationError},
    L{TLSSetupError}, or OpenSSL's L{SSL.Error} during the exchange), or
    C{None} when C{value} is not one.
    """
    if isinstance(value, TLSVerificationError):
        return str(value)
    if isinstance(value, TLSSetupError):
        return f"TLS setup failed: {value}"
    if isinstance(value, SSL.Error):
        return f"TLS failed: {_ssl_reason(value)}"
    return None


#: How many contexts, and (policy, server name) connectors, a client keeps
#: before it starts over (policies change with the configuration).
MAX_CONNECTORS = 4096


class TLSConnectors:
    """
    One client's TLS: one OpenSSL context per distinct policy (its server
    name aside), made on first use and kept, and one cheap
    L{PolicyConnector} on it per server name (a policy that cannot be used
    is kept as its reason, so it is not tried again per request).

    @ivar default_verify: whether a policy whose C{verify} is C{None}
        verifies (the C{upstream_tls_verify} setting).
    """

    def __init__(self, default_verify: bool = True):
        self.default_verify = default_verify
        self._contexts: dict[tuple[Any, ...], tuple[bool, CertificateOptions] | str] = {}
        self._made: dict[tuple[TLSPolicy, str], PolicyConnector | str] = {}
        self._unresolved: dict[tuple[Any, Any], TLSPolicy] = {}

    def policy_of(self, service: Mapping[str, Any]) -> TLSPolicy:
        """
        The L{TLSPolicy} the data path passed with C{service}, or the one
        its own C{tls_verify} and C{tls_verify_depth} make.

        @raise TLSSetupError: when the record names certificates by id and
            no policy came with it.
        """
        policy = service.get(TLS_POLICY)
        if policy is not None:
            return policy  # type: ignore[no-any-return]
        if service.get("ca_certificates") or service.get("client_certificate"):
            raise TLSSetupError("the service's ca_certificates/client_certificate were not resolved")
        key = (service.get("tls_verify"), service.get("tls_verify_depth"))
        made = self._unresolved.get(key)
        if made is None:
            made = self._unresolved[key] = TLSPolicy(verify=key[0], verify_depth=key[1])
        return made

    def _context(self, policy: TLSPolicy) -> tuple[bool, CertificateOptions]:
        key = (policy.verify, policy.ca_certificates, policy.verify_depth, policy.client_certificate)
        made = self._contexts.get(key)
        if made is None:
            if len(self._contexts) >= MAX_CONNECTORS:
                self._contexts.clear()
            try:
                made = policy_context(policy, self.default_verify)
            except TLSSetupError as e:
                made = str(e)
            self._contexts[key] = made
        if isinstance(made, str):
            raise TLSSetupError(made)
        return made

    def connector(self, policy: TLSPolicy, server_name: str) -> tuple[tuple[TLSPolicy, str], PolicyConnector]:
        """
        The connector of C{policy} to C{server_name}, and the key its
        pooled connections are kept under.

        @raise TLSSetupError: when the policy cannot be used.
        """
        key = (policy, server_name)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= MAX_CONNECTORS:
                self._made.clear()
            try:
                made = PolicyConnector(*self._context(policy), server_name)
            except TLSSetupError as e:
                made = str(e)
            self._made[key] = made
        if isinstance(made, str):
            raise TLSSetupError(made)
        return key, made


__all__ = ["TLS_POLICY", "TLSPolicy", "TLSPolicies", "ClientCertificate", "tls_policy", "host_of",
           "PolicyConnector", "policy_context", "TLSConnectors", "TLSSetupError", "TLSVerificationError",
           "UnknownCertificate", "describe_tls", "DEFAULT_VERIFY_DEPTH"]
