"""
Real TLS upstreams on 127.0.0.1 for the upstream clients' TLS tests: a
twisted.web site behind L{TLSMemoryBIOFactory} that answers every request
with what it saw of the TLS connection (the SNI, the client certificate's
common name) and counts the connections made to it.
"""
from __future__ import annotations

import datetime
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509, PKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.client import readBody
from twisted.web.resource import Resource

from tests.certs import KeyPair, rsa_key

__all__ = ["TLSUpstream", "Recorder", "make_intermediate", "send"]


def make_intermediate(root: KeyPair, name: str = "echogate test intermediate") -> KeyPair:
    """
    A CA certificate signed by C{root} (with C{root} as its chain).
    """
    key = rsa_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(root.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(root.key, hashes.SHA256()))
    return KeyPair(cert, key, (root.cert,))


class _Seen(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        tls = request.channel.transport.getHandle()
        name = tls.get_servername()
        peer = tls.get_peer_certificate()
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "sni": name.decode("ascii") if name else None,
            "client": peer.get_subject().CN if peer is not None else None,
        }).encode()


class _CountingSite(server.Site):
    noisy = False

    def __init__(self) -> None:
        super().__init__(_Seen())
        self.connections = 0
        self.channels: list[tuple[Any, Deferred[None]]] = []

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        channel = super().buildProtocol(addr)
        lost: Deferred[None] = Deferred()
        original = channel.connectionLost

        def connectionLost(reason: Failure) -> None:
            original(reason)
            lost.callback(None)

        channel.connectionLost = connectionLost
        self.channels.append((channel, lost))
        return channel

    def log(self, request: Any) -> None:
        pass


class TLSUpstream:
    """
    A TLS web server on 127.0.0.1 presenting C{pair} (and its chain), and,
    with C{client_ca}, requiring a client certificate it issued.

    @ivar port: the port it listens on.
    @ivar site: the site (C{connections} counts the connections).
    """

    def __init__(self, pair: KeyPair, client_ca: KeyPair | None = None, chain: bool = True):
        options: dict[str, Any] = dict(
            privateKey=PKey.from_cryptography_key(pair.key),
            certificate=X509.from_cryptography(pair.cert),
            extraCertChain=[X509.from_cryptography(c) for c in pair.chain] if chain else [])
        if client_ca is not None:
            options.update(verify=True, requireCertificate=True,
                           caCerts=[X509.from_cryptography(client_ca.cert)])
        self.site = _CountingSite()
        factory = TLSMemoryBIOFactory(CertificateOptions(**options), False, self.site)
        factory.noisy = False
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port: int = self.listening.getHost().port

    def service(self, **fields: Any) -> dict[str, Any]:
        """
        A service record for this server (C{fields} added).
        """
        return {"protocol": "https", "host": "127.0.0.1", "port": self.port, "retries": 0,
                "connect_timeout": 5000, "read_timeout": 5000, "write_timeout": 5000, **fields}

    async def stop(self) -> None:
        """
        Stop listening; drop the connections left and wait until they are
        gone.
        """
        await self.listening.stopListening()
        for channel, lost in self.site.channels:
            if not lost.called:
                # (Site's protocol wraps the HTTPChannel, which has the transport)
                getattr(channel, "_channel", channel).transport.abortConnection()
        await DeferredList([lost for _, lost in self.site.channels])


class Recorder:
    """
    The callbacks of one C{send}: C{done} fires with the response, or
    fails with the L{ProxyError}.
    """

    def __init__(self) -> None:
        self.done: Deferred[Any] = Deferred()

    def response(self, response: Any) -> None:
        self.done.callback(response)

    def failure(self, failure: Failure) -> None:
        self.done.errback(failure)


async def send(client: Any, service: dict[str, Any], host: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """
    C{GET /} to C{service} through C{client}'s C{send}; the status and the
    JSON the server answered (its body read to the end, so that the
    connection may be kept).
    """
    recorder = Recorder()
    headers = [(b"Host", host)] if host is not None else []
    client.send(service, b"GET", b"/", headers, None, recorder.response, recorder.failure)
    response = await recorder.done
    body = await readBody(response.response)
    return response.code, json.loads(body)

