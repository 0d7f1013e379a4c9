"""
HTTPS on the proxy: the TLS side of an C{ssl} proxy listener.

Every handshake on such a listener starts on one OpenSSL context holding
the node's default certificate; its server name callback looks the name
the client sent (SNI) up in the I{current} configuration snapshot
(C{snapshot.certificates}, C{snapshot.snis}: Kong's entities) and moves
the connection to that certificate's context: the exact name first, then
a leading wildcard (C{*.example.com}), then a trailing one
(C{example.*}), then an SNI named C{*}, and the default certificate when
none matches (or no name was sent). A configuration change is seen by
the next handshake; nothing restarts.

The per-certificate contexts are built once and kept while their
certificate is in the current snapshot, so a handshake does not parse
PEM.
"""
from __future__ import annotations

import datetime
import os
import re
from typing import Any, Callable, Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IAddress, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

_log = Logger(namespace="echogate.tls")

#: C{ssl_protocols} names to OpenSSL's versions, oldest first.
_VERSIONS: dict[str, int] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

#: The option that leaves out each version (for a gap between the oldest
#: and the newest accepted).
_WITHOUT: dict[int, int] = {
    SSL.TLS1_VERSION: SSL.OP_NO_TLSv1,
    SSL.TLS1_1_VERSION: SSL.OP_NO_TLSv1_1,
    SSL.TLS1_2_VERSION: SSL.OP_NO_TLSv1_2,
    SSL.TLS1_3_VERSION: SSL.OP_NO_TLSv1_3,
}

#: Every server context's session id context: a session made on one
#: certificate's context is resumed on the same listener.
_SESSION_ID = b"echogate"


@attrs.frozen
class TLSPolicy:
    """
    How the proxy's TLS contexts are set up (the C{ssl_*} settings).

    @ivar protocols: the TLS versions accepted (C{"TLSv1.2"}, C{"TLSv1.3"}, ...).
    @ivar ciphers: the OpenSSL cipher list for TLS 1.2 and older; empty:
        TLS 1.3 only (whose suites are OpenSSL's own).
    @ivar session_tickets: whether sessions may be resumed with tickets.
    @ivar session_timeout: seconds a session may be resumed for.
    @ivar http2: whether C{h2} is offered by ALPN (the listener's C{http2}
        flag), before C{http/1.1}.
    """

    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str = ""
    session_tickets: bool = True
    session_timeout: int = 86400
    http2: bool = False

    def configure(self, context: SSL.Context) -> None:
        """
        Set C{context}'s versions, ciphers and session resumption.

        @raise ValueError: no version is left (TLS 1.3 only, and not in
            C{protocols}).
        """
        versions = sorted(_VERSIONS[name] for name in self.protocols)
        if not self.ciphers:
            versions = [v for v in versions if v >= SSL.TLS1_3_VERSION]
        if not versions:
            raise ValueError("no TLS version is left to accept")
        context.set_min_proto_version(versions[0])
        context.set_max_proto_version(versions[-1])
        options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
        for version in _VERSIONS.values():
            if versions[0] < version < versions[-1] and version not in versions:
                options |= _WITHOUT[version]
        if not self.session_tickets:
            options |= SSL.OP_NO_TICKET
        context.set_options(options)
        if self.ciphers:
            context.set_cipher_list(self.ciphers.encode("ascii"))
        context.set_session_id(_SESSION_ID)
        context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        context.set_timeout(self.session_timeout)
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.set_alpn_select_callback(_choose_h2 if self.http2 else _choose_http11)


def _choose_h2(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """
    ALPN on an C{http2} listener: C{h2} when the client offers it, else
    C{http/1.1}; with neither offered, no protocol is named (the handshake
    goes on, as nginx's, and the connection speaks HTTP/1.1).
    """
    if b"h2" in offered:
        return b"h2"
    return _choose_http11(connection, offered)


def _choose_http11(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """
    ALPN on a listener without the C{http2} flag: C{http/1.1}, or no
    protocol named when the client does not offer it.
    """
    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def certificate_context(pairs: Sequence[tuple[bytes, bytes]], policy: TLSPolicy) -> SSL.Context:
    """
    A server context for C{pairs} of PEM certificate (chain) and key: a
    certificate's C{cert}/C{key} and, when it has them, C{cert_alt}/C{key_alt}
    (a key of another type, which OpenSSL offers to clients that prefer
    it). Intermediates are sent from the first pair's chain.

    @raise ValueError: a PEM does not parse.
    @raise OpenSSL.SSL.Error: a key is not its certificate's.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    policy.configure(context)
    for number, (cert_pem, key_pem) in enumerate(pairs):
        chain = x509.load_pem_x509_certificates(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        context.use_certificate(chain[0])
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
        if number == 0:
            for intermediate in chain[1:]:
                context.add_extra_chain_cert(intermediate)
    return context


def _pem(value: Any) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def record_pairs(record: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """
    The PEM pairs of a certificate record: C{cert}/C{key}, then
    C{cert_alt}/C{key_alt} when set.
    """
    pairs = [(_pem(record["cert"]), _pem(record["key"]))]
    if record.get("cert_alt") and record.get("key_alt"):
        pairs.append((_pem(record["cert_alt"]), _pem(record["key_alt"])))
    return pairs


def _cache_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """
    What a certificate's built context is kept under: its id, C{updated_at}
    and PEM texts (C{updated_at} has a resolution of a second; the texts,
    whose hashes Python keeps on the strings, catch two changes in one
    second).
    """
    return (record.get("id"), record.get("updated_at"), record.get("cert"), record.get("key"),
            record.get("cert_alt"), record.get("key_alt"))


@attrs.frozen
class SNIIndex:
    """
    The SNI names of one configuration snapshot, each to its certificate
    record.
    """

    names: Mapping[str, Mapping[str, Any]]

    @classmethod
    def build(cls, certificates: Sequence[Mapping[str, Any]], snis: Sequence[Mapping[str, Any]]) -> "SNIIndex":
        """
        Index C{snis} (Kong's records: C{name}, C{certificate: {id}}) over
        C{certificates}; an SNI whose certificate is absent is left out.
        """
        by_id = {record["id"]: record for record in certificates}
        names: dict[str, Mapping[str, Any]] = {}
        for sni in snis:
            reference = sni.get("certificate") or {}
            record = by_id.get(reference.get("id"))
            if record is not None:
                names[str(sni["name"]).lower()] = record
        return cls(names)

    def find(self, server_name: str | None) -> Mapping[str, Any] | None:
        """
        The certificate for C{server_name}: exact name, then C{*.} and the
        name without its first label, then the name without its last label
        and C{.*}, then the SNI C{*}; C{None} when none matches.
        """
        names = self.names
        if server_name:
            name = server_name.lower().rstrip(".")
            found = names.get(name)
            if found is None and "." in name:
                found = (names.get("*." + name.split(".", 1)[1])
                         or names.get(name.rsplit(".", 1)[0] + ".*"))
            if found is not None:
                return found
        return names.get("*")


@implementer(IOpenSSLServerConnectionCreator)
class SNICertificates:
    """
    The TLS connections of the proxy's C{ssl} listeners, with the
    certificate chosen by SNI from the current snapshot at each handshake
    (see the module's docstring).

    @param snapshot: returns the current configuration snapshot (C{None}
        before the first one): its C{certificates} and C{snis} are read.
    @param default: the PEM certificate (chain) and key served when no SNI
        matches.
    @param policy: versions, ciphers and session resumption.
    """

    def __init__(self, snapshot: Callable[[], Any], default: tuple[bytes, bytes], policy: TLSPolicy):
        self._snapshot = snapshot
        self._policy = policy
        self._default = certificate_context([default], policy)
        self._default.set_tlsext_servername_callback(self._server_name)
        self._indexed: Any = None
        self._index = SNIIndex({})
        self._contexts: dict[tuple[Any, ...], SSL.Context] = {}
        self._broken: set[tuple[Any, ...]] = set()

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        A connection on the default certificate's context, which the
        server name callback may move to another.
        """
        return SSL.Connection(self._default, None)

    def _server_name(self, connection: SSL.Connection) -> None:
        try:
            raw = connection.get_servername()
            context = self.context_for(raw.decode("ascii", "replace") if raw else None)
            if context is not self._default:
                connection.set_context(context)
        except Exception:
            _log.failure("choosing a certificate by SNI failed; the default certificate is served")

    def context_for(self, server_name: str | None) -> SSL.Context:
        """
        The context whose certificate C{server_name} gets now.
        """
        snapshot = self._snapshot()
        if snapshot is not self._indexed:
            self._reindex(snapshot)
        record = self._index.find(server_name)
        if record is None:
            return self._default
        key = _cache_key(record)
        context = self._contexts.get(key)
        if context is not None:
            return context
        if key in self._broken:
            return self._default
        try:
            context = certificate_context(record_pairs(record), self._policy)
        except (ValueError, TypeError, KeyError, SSL.Error) as e:
            self._broken.add(key)
            _log.error("certificate {id} cannot be served ({why}); the default certificate is served instead",
                       id=record.get("id"), why=str(e) or type(e).__name__)
            return self._default
        self._contexts[key] = context
        return context

    def _reindex(self, snapshot: Any) -> None:
        """
        Index C{snapshot}'s SNIs, and forget the contexts of certificates
        it no longer has.
        """
        certificates = tuple(getattr(snapshot, "certificates", ()) or ())
        self._index = SNIIndex.build(certificates, tuple(getattr(snapshot, "snis", ()) or ()))
        kept = {_cache_key(record) for record in certificates}
        self._contexts = {key: context for key, context in self._contexts.items() if key in kept}
        self._broken &= kept
        self._indexed = snapshot


class TLSListenerFactory(TLSMemoryBIOFactory):
    """
    TLS over the connections of the proxy's site, which may refuse one
    (a connection limit, a drain): then no protocol, and Twisted closes
    the connection, as on a plain listener.
    """

    def buildProtocol(self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:  # type: ignore[override]
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


#: The default certificate's file in the data directory: its key, then
#: the certificate, PEM.
DEFAULT_CERTIFICATE = os.path.join("tls", "default.pem")

_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


def self_signed(name: str = "localhost", days: int = 3650) -> tuple[bytes, bytes]:
    """
    A new RSA 2048 key and a self-signed certificate for C{name} (as its
    common name and subjectAltName), both PEM: (certificate, key).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def default_certificate(data_dir: str) -> tuple[bytes, bytes]:
    """
    The node's self-signed default certificate and key (PEM) for
    C{localhost}, kept in C{data_dir}/L{DEFAULT_CERTIFICATE}: made on the
    first call, read on later ones (and by the workers, and after a
    restart). Made without ever overwriting a file another process made
    meanwhile.

    @raise OSError: the file cannot be read or made.
    @raise ValueError: the file holds no certificate and key.
    """
    path = os.path.join(data_dir, DEFAULT_CERTIFICATE)
    try:
        with open(path, "rb") as f:
            return _split_pem(path, f.read())
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    cert_pem, key_pem = self_signed("localhost")
    partial = f"{path}.{os.getpid()}.new"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(key_pem + cert_pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            with open(path, "rb") as f:
                return _split_pem(path, f.read())
    finally:
        os.remove(partial)
    return cert_pem, key_pem


def _split_pem(path: str, data: bytes) -> tuple[bytes, bytes]:
    """
    C{data}'s certificates and its private key: (certificates, key).
    """
    certificates = b"".join(m.group(0) for m in _BLOCK.finditer(data) if m.group(1) == b"CERTIFICATE")
    keys = [m.group(0) for m in _BLOCK.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")]
    if not certificates or len(keys) != 1:
        raise ValueError(f"{path} does not hold a PEM certificate and its key")
    return certificates, keys[0]
