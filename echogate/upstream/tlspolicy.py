"""
What a service's TLS settings resolve to (L{TLSPolicy}), made once per
configuration (L{TLSPolicies}).

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
the host of the request's Host header (L{host_of}; Kong's
C{upstream_host}: the service's host, an upstream's C{host_header}, or
the client's with C{preserve_host}), else the service's host.
L{echogate.upstream.tls} makes the connections of a policy.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs
from twisted.web.http_headers import Headers

#: The key of a service record under which the data path passes the
#: service's resolved L{TLSPolicy} to the upstream client.
TLS_POLICY = "tls_policy"

#: The chain depth verified when a service's C{tls_verify_depth} is null
#: (Twisted's default; nginx's, and so Kong's, is 1).
DEFAULT_VERIFY_DEPTH = 9


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
        C{None}: the system's CA bundle
        (L{twisted.internet.ssl.platformTrust}).
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

    def with_policy(self, service: dict[str, Any], server_name: str | None = None) -> dict[str, Any]:
        """
        C{service} as the upstream client's C{send} takes it: for an https
        service, a copy with its policy under L{TLS_POLICY}; any other is
        returned as it is.

        @param server_name: the name to send as SNI and to verify the
            certificate against, instead of the Host header's (the
            gateway passes the service's own name when the route
            preserves the client's Host, so that no client chooses it).
        """
        if service.get("protocol") not in ("https", "grpcs"):
            return service
        policy = self.of(service)
        if policy is None:
            return service
        if server_name is not None:
            policy = policy.named(server_name)
        return {**service, TLS_POLICY: policy}


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
