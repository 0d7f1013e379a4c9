"""
The proxy's C{ssl} listeners over real TLS sockets on 127.0.0.1: the
certificate chosen by SNI from the current snapshot at each handshake,
the node's self-signed default certificate, the C{ssl_*} settings, and
HTTPS through a whole node (and its workers).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import attrs
from cryptography import x509
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface import implementer

from echogate.proxy import tls
from echogate.proxy.site import GatewaySite
from echogate.proxy.tls import SNICertificates, TLSListenerFactory, TLSPolicy, default_certificate
from tests.certs import KeyPair, make_self_signed


def _pair(*names: str, kind: str = "rsa") -> KeyPair:
    return make_self_signed(names, kind=kind)  # type: ignore[arg-type]


#: Certificates made once for the module (RSA keys take a while).
A = _pair("a.example.com")
WILD = _pair("wild-leading")
TRAIL = _pair("wild-trailing")
STAR = _pair("star")
DEFAULT = _pair("node-default")


def _name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def _record(pair: KeyPair, id: str, updated_at: int = 1, alt: KeyPair | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": id, "cert": pair.chain_pem, "key": pair.key_pem, "cert_alt": None,
                              "key_alt": None, "tags": None, "created_at": 1, "updated_at": updated_at}
    if alt is not None:
        record.update(cert_alt=alt.cert_pem, key_alt=alt.key_pem)
    return record


def _sni(name: str, certificate_id: str) -> dict[str, Any]:
    return {"id": f"sni-{name}", "name": name, "certificate": {"id": certificate_id}}


@attrs.frozen
class _Snapshot:
    """
    The part of a configuration snapshot the TLS listener reads.
    """

    certificates: tuple[dict[str, Any], ...] = ()
    snis: tuple[dict[str, Any], ...] = ()


@attrs.define
class _Live:
    """
    Holds the current snapshot, as the node's live configuration does.
    """

    current: _Snapshot = _Snapshot()


@attrs.frozen
class Handshake:
    """
    What a client saw of a finished handshake.
    """

    certificate: x509.Certificate
    version: str


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class _Client:
    """
    A TLS client that trusts anything (the test reads the certificate
    it was given), sends C{server_name} by SNI, and offers only the
    versions and ciphers asked for.
    """

    server_name: str | None
    max_version: int | None = None
    ciphers: bytes | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_VERSION)
        if self.max_version is not None:
            context.set_max_proto_version(self.max_version)
        if self.ciphers is not None:
            context.set_cipher_list(self.ciphers)
        connection = SSL.Connection(context, None)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name.encode("ascii"))
        connection.set_connect_state()
        return connection


@implementer(IHandshakeListener)
class _Handshaker(Protocol):
    """
    Completes a handshake, then closes; C{done} fires once the connection
    is closed, with the L{Handshake} or the failure that ended it.
    """

    def __init__(self) -> None:
        self.done: Deferred[Handshake] = Deferred()
        self.seen: Handshake | None = None

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        self.seen = Handshake(transport.getPeerCertificate().to_cryptography(),
                              transport.getHandle().get_protocol_version_name())
        transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        if self.seen is not None:
            self.done.callback(self.seen)
        else:
            self.done.errback(reason)


async def handshake(port: int, server_name: str | None, **client: Any) -> Handshake:
    """
    Handshake with the TLS listener on 127.0.0.1:C{port}, sending
    C{server_name}.
    """
    protocol = _Handshaker()
    endpoint = wrapClientTLS(_Client(server_name, **client), TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    return await protocol.done


class TLSListenerCase(unittest.TestCase):
    """
    A TLS listener on 127.0.0.1 over a small site, whose certificates come
    from L{live}.
    """

    def listen(self, policy: TLSPolicy = TLSPolicy(ciphers=tls_ciphers()) if False else None,  # type: ignore
               site: Any = None) -> int:
        raise NotImplementedError
