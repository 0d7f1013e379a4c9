"""
TLS to services: what a service's TLS settings resolve to (L{TLSPolicy}),
the OpenSSL connection creator of one policy and server name
(L{PolicyConnector}), and the client's cache of them (L{TLSConnectors}).

The contract with the data path: the service record handed to an upstream
client's C{send} may carry a L{TLSPolicy} under the key L{TLS_POLICY}
(C{"tls_policy"}), made from the service's C{tls_verify},
C{tls_verify_depth}, C{ca_certificates} and C{client_certificate} by
L{tls_policy}, with the PEMs of the certificates those ids name
(L{TLSPolicies}: one per configuration, C{with_policy(service)} gives the
record to send). Without it, the client reads C{tls_verify} and
C{tls_verify_depth} from the record itself and refuses (502) a service
that names C{ca_certificates} or a C{client_certificate} it cannot
resolve. The server name, sent as SNI and verified, is the policy's, else
the host of the request's Host header (Kong's C{upstream_host}: the
service's host, an upstream's C{host_header}, or the client's with
C{preserve_host}), else the service's host.

One OpenSSL context is made per distinct policy (server name aside), and
one cheap L{PolicyConnector} on it per (policy, server name); both are
kept, and the pooled connections of different connectors are never
shared.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable, Mapping

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, CertificateOptions, platformTrust, trustRootFromCertificates
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

#: The key of a service record under which the data path passes the
#: service's resolved L{TLSPolicy} to the upstream client.
TLS_POLICY = "tls_policy"

#: The chain depth verified when a service's C{tls_verify_depth} is null
#: (Twisted's default; nginx's, and so Kong's, is 1).
DEFAULT_VERIFY_DEPTH = 9

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


@attrs.frozen
class ClientCertificate:
    """
    The certificate presented to a service that asks for one (mutual TLS):
    a C{certificates} entity's C{cert} and C{key}.

    @ivar cert: the PEM certificate, maybe followed by its chain.
    @ivar key: the PEM private key of the first certificate.
    """

    cert: bytes
    key: bytes


@attrs.frozen(cache_hash=True)
class TLSPolicy:
    """
    How to talk TLS to a service: immutable and hashable, so that equal
    policies share one OpenSSL context and one set of pooled connections.

    @ivar verify: whether the service's certificate is verified; C{None}
        leaves it to the client's default (the C{upstream_tls_verify}
        setting).
    @ivar server_name: the name sent as SNI and that the certificate must
        be valid for; C{None}: the host of the request's Host header, else
        the service's host. (An IP address is verified against the
        certificate's IP addresses and not sent as SNI.)
    @ivar ca_certificates: the PEMs of the only CA certificates trusted;
        C{None}: the system's CA bundle (L{platformTrust}).
    @ivar verify_depth: the longest certificate chain accepted (OpenSSL's
        verify depth: intermediates between the certificate and a trusted
        CA); C{None}: L{DEFAULT_VERIFY_DEPTH}.
    @ivar client_certificate: presented when the service asks for one.
    """

    verify: bool | None = None
    server_name: str | None = None
    ca_certificates: tuple[bytes, ...] | None = None
    verify_depth: int | None = None
    client_certificate: ClientCertificate | None = None

    def named(self, server_name: str | None) -> TLSPolicy:
        """
        This policy with C{server_name} (e.g. the Host header's host when
        the route preserves it).
        """
        return attrs.evolve(self, server_name=server_name)


class UnknownCertificate(LookupError):
    """
    A service names a C{ca_certificates} or C{client_certificate} id that
    the configuration does not have.
    """


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


def _pem(value: Any) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def tls_policy(service: Mapping[str, Any], ca_certificates: Mapping[str, Mapping[str, Any]],
               certificates: Mapping[str, Mapping[str, Any]], server_name: str | None = None) -> TLSPolicy:
    """
    The L{TLSPolicy} of C{service} (a service record): its C{tls_verify},
    C{tls_verify_depth}, and the PEMs of its C{ca_certificates} and
    C{client_certificate}, looked up by id.

    @param ca_certificates: the configuration's C{ca_certificates}
        entities by id (their C{cert} is read).
    @param certificates: the configuration's C{certificates} entities by id
        (their C{cert} and C{key} are read).
    @param server_name: the policy's server name (see L{TLSPolicy}).
    @raise UnknownCertificate: when an id is not in the mappings.
    """
    ca_ids = service.get("ca_certificates") or ()
    try:
        cas = tuple(_pem(ca_certificates[ca_id]["cert"]) for ca_id in ca_ids) or None
    except KeyError as missing:
        raise UnknownCertificate(f"ca_certificate {missing} not found") from None
    client = None
    reference = service.get("client_certificate")
    if reference:
        certificate_id = reference["id"] if isinstance(reference, Mapping) else reference
        entity = certificates.get(certificate_id)
        if entity is None:
            raise UnknownCertificate(f"certificate {certificate_id!r} not found")
        client = ClientCertificate(cert=_pem(entity["cert"]), key=_pem(entity["key"]))
    return TLSPolicy(verify=service.get("tls_verify"), server_name=server_name, ca_certificates=cas,
                     verify_depth=service.get("tls_verify_depth"), client_certificate=client)


class TLSPolicies:
    """
    The L{TLSPolicy} of each service of one configuration: made with the
    configuration's C{ca_certificates} and C{certificates} records (a
    snapshot's), each service's policy resolved once (by service id) and
    kept for the configuration's life.
    """

    def __init__(self, ca_certificates: Iterable[Mapping[str, Any]], certificates: Iterable[Mapping[str, Any]]):
        self._cas = {record["id"]: record for record in ca_certificates}
        self._certificates = {record["id"]: record for record in certificates}
        self._made: dict[Any, TLSPolicy | None] = {}

    def of(self, service: Mapping[str, Any]) -> TLSPolicy | None:
        """
        C{service}'s policy (server name left to the request's Host
        header), or C{None} when it names a certificate the configuration
        does not have (the client then refuses it: 502).
        """
        key = service.get("id")
        if key is not None and key in self._made:
            return self._made[key]
        try:
            policy: TLSPolicy | None = tls_policy(service, self._cas, self._certificates)
        except UnknownCertificate:
            policy = None
        if key is not None:
            self._made[key] = policy
        return policy

    def with_policy(self, service: dict[str, Any]) -> dict[str, Any]:
        """
        C{service} as the upstream client's C{send} takes it: for an https
        service, a copy with its policy under L{TLS_POLICY}; any other is
        returned as it is.
        """
        if service.get("protocol") != "https":
            return service
        policy = self.of(service)
        return {**service, TLS_POLICY: policy} if policy is not None else service


def host_of(headers: Headers | list[tuple[bytes, bytes]]) -> str | None:
    """
    The host of a request's Host header (without its port, IPv6 brackets
    removed), or C{None} when there is none.
    """
    if isinstance(headers, Headers):
        values = headers.getRawHeaders(b"host")
        value = values[0] if values else None
    else:
        value = next((v for name, v in headers if len(name) == 4 and name.lower() == b"host"), None)
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else None
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text or None


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
