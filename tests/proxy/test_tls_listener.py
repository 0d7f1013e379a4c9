"""
The proxy's C{ssl} listeners over real TLS sockets on 127.0.0.1: the
certificate chosen by SNI from the current snapshot at each handshake,
the node's self-signed default certificate, the C{ssl_*} settings, and
HTTPS through a whole node (and its workers).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import treq
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
from echogate.settings import CIPHER_SUITES
from tests.certs import KeyPair, make_self_signed, write_pair
from tests.gateway import start_gateway
from tests.postgres import fresh_database
from tests.test_startup import StartupTestCase, _env, _free_port
from tests.upstream_server import start_upstream
from tests.waiting import until


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

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.seen is not None:
            self.done.callback(self.seen)
        else:
            self.done.errback(reason or Failure(Exception("lost")))


async def handshake(port: int, server_name: str | None, **client: Any) -> Handshake:
    """
    Handshake with the TLS listener on 127.0.0.1:C{port}, sending
    C{server_name}.
    """
    protocol = _Handshaker()
    endpoint = wrapClientTLS(_Client(server_name, **client), TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    return await protocol.done


INTERMEDIATE = TLSPolicy(ciphers=CIPHER_SUITES["intermediate"])


class TLSListenerCase(unittest.TestCase):
    """
    A TLS listener on 127.0.0.1 over a small site, whose certificates come
    from L{live}.
    """

    def setUp(self) -> None:
        self.live = _Live()

    def listen(self, policy: TLSPolicy = INTERMEDIATE, default: KeyPair = DEFAULT) -> int:
        """
        Listen with C{policy} and C{default}; the port.
        """
        root = Resource()
        root.putChild(b"", Data(b"hello", "text/plain"))
        certificates = SNICertificates(lambda: self.live.current,
                                       (default.chain_pem.encode(), default.key_pem.encode()), policy)
        factory: Any = TLSListenerFactory(certificates, False, Site(root))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        return int(address.port)

    def configure(self, certificates: list[dict[str, Any]], snis: list[dict[str, Any]]) -> None:
        self.live.current = _Snapshot(tuple(certificates), tuple(snis))


class SNISelectionTests(TLSListenerCase):
    """
    The certificate is chosen by the name the client sends: exact, leading
    wildcard, trailing wildcard, C{*}, then the default.
    """

    def setUp(self) -> None:
        super().setUp()
        self.configure([_record(A, "a"), _record(WILD, "w"), _record(TRAIL, "t")],
                       [_sni("a.example.com", "a"), _sni("*.example.com", "w"), _sni("www.example.*", "t"),
                        _sni("shop.example.*", "t")])
        self.port = self.listen()

    async def served(self, name: str | None) -> str:
        return _name((await handshake(self.port, name)).certificate)

    async def test_exact(self) -> None:
        """
        An SNI of exactly the name wins over a wildcard that matches it too
        (names compared without case).
        """
        self.assertEqual(await self.served("a.example.com"), "a.example.com")
        self.assertEqual(await self.served("A.Example.COM"), "a.example.com")

    async def test_leadingWildcard(self) -> None:
        """
        C{*.example.com} serves one label before example.com, and wins over
        a trailing wildcard that matches too.
        """
        self.assertEqual(await self.served("b.example.com"), "wild-leading")
        self.assertEqual(await self.served("www.example.com"), "wild-leading")

    async def test_leadingWildcardIsOneLabel(self) -> None:
        """
        C{*.example.com} does not serve two labels before example.com (as
        Kong): the default certificate does.
        """
        self.assertEqual(await self.served("x.y.example.com"), "node-default")

    async def test_trailingWildcard(self) -> None:
        """
        C{www.example.*} serves www.example.org.
        """
        self.assertEqual(await self.served("www.example.org"), "wild-trailing")
        self.assertEqual(await self.served("shop.example.net"), "wild-trailing")

    async def test_default(self) -> None:
        """
        A name no SNI matches, and a client that sends no name, get the
        default certificate.
        """
        self.assertEqual(await self.served("other.test"), "node-default")
        self.assertEqual(await self.served(None), "node-default")

    async def test_starSni(self) -> None:
        """
        An SNI named C{*} serves every name nothing else matches, before
        the node's default.
        """
        self.configure([_record(A, "a"), _record(STAR, "s")], [_sni("a.example.com", "a"), _sni("*", "s")])
        self.assertEqual(await self.served("other.test"), "star")
        self.assertEqual(await self.served(None), "star")
        self.assertEqual(await self.served("a.example.com"), "a.example.com")


class ChangeTests(TLSListenerCase):
    """
    A configuration change is seen by the next handshake; nothing
    restarts.
    """

    async def test_swapWithoutRestart(self) -> None:
        """
        An SNI added, its certificate replaced (same id), then removed: each
        next handshake serves what the current snapshot says.
        """
        port = self.listen()
        self.assertEqual(_name((await handshake(port, "a.example.com")).certificate), "node-default")
        self.configure([_record(A, "c1")], [_sni("a.example.com", "c1")])
        self.assertEqual(_name((await handshake(port, "a.example.com")).certificate), "a.example.com")
        self.configure([_record(STAR, "c1", updated_at=2)], [_sni("a.example.com", "c1")])
        self.assertEqual(_name((await handshake(port, "a.example.com")).certificate), "star")
        self.configure([], [])
        self.assertEqual(_name((await handshake(port, "a.example.com")).certificate), "node-default")

    async def test_contextsBuiltOnce(self) -> None:
        """
        A certificate's context is built once, not per handshake, and built
        again when the certificate changes.
        """
        built: list[int] = []
        real = tls.certificate_context

        def counting(*args: Any, **kwargs: Any) -> SSL.Context:
            built.append(1)
            return real(*args, **kwargs)

        self.patch(tls, "certificate_context", counting)
        port = self.listen()
        self.configure([_record(A, "c1")], [_sni("a.example.com", "c1")])
        for _ in range(3):
            await handshake(port, "a.example.com")
        self.assertEqual(len(built), 2)  # the default's and c1's
        self.configure([_record(A, "c1")], [_sni("a.example.com", "c1"), _sni("b.example.com", "c1")])
        await handshake(port, "b.example.com")
        self.assertEqual(len(built), 2)  # a new snapshot, the same certificate
        self.configure([_record(STAR, "c1", updated_at=2)], [_sni("a.example.com", "c1")])
        await handshake(port, "a.example.com")
        self.assertEqual(len(built), 3)

    async def test_brokenCertificateServesDefault(self) -> None:
        """
        A certificate that cannot be loaded (a key that is not its own)
        gets the default certificate served, and an error logged.
        """
        broken = dict(_record(A, "c1"), key=STAR.key_pem)
        self.configure([broken], [_sni("a.example.com", "c1")])
        port = self.listen()
        self.assertEqual(_name((await handshake(port, "a.example.com")).certificate), "node-default")

    async def test_alternateCertificate(self) -> None:
        """
        A certificate's C{cert_alt} (an EC key beside an RSA one) is served to
        a client that accepts only ECDSA.
        """
        ec = _pair("a-ec.example.com", kind="ec")
        self.configure([_record(A, "c1", alt=ec)], [_sni("a.example.com", "c1")])
        port = self.listen()
        rsa_only = await handshake(port, "a.example.com", max_version=SSL.TLS1_2_VERSION,
                                   ciphers=b"ECDHE-RSA-AES128-GCM-SHA256")
        ec_only = await handshake(port, "a.example.com", max_version=SSL.TLS1_2_VERSION,
                                  ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual((_name(rsa_only.certificate), _name(ec_only.certificate)),
                         ("a.example.com", "a-ec.example.com"))


#: Ciphers that let OpenSSL speak TLS 1.1 at all (its default security
#: level refuses it), so that only ssl_protocols decides.
_ANYTHING = b"DEFAULT:@SECLEVEL=0"


class PolicyTests(TLSListenerCase):
    """
    C{ssl_protocols} and the ciphers, as a client sees them.
    """

    async def test_tls13ByDefault(self) -> None:
        """
        A client that can speak TLS 1.3 does.
        """
        self.assertEqual((await handshake(self.listen(), "x")).version, "TLSv1.3")

    async def test_tls11RefusedByDefault(self) -> None:
        """
        A TLS 1.1 client is refused with the default C{ssl_protocols}, even
        with ciphers that would allow it; with TLSv1.1 in C{ssl_protocols} it
        is served.
        """
        port = self.listen(TLSPolicy(ciphers=_ANYTHING.decode()))
        refused = handshake(port, "x", max_version=SSL.TLS1_1_VERSION, ciphers=_ANYTHING)
        await self.assertFailure(Deferred.fromCoroutine(refused), SSL.Error)
        port = self.listen(TLSPolicy(protocols=("TLSv1.1", "TLSv1.2", "TLSv1.3"), ciphers=_ANYTHING.decode()))
        served = await handshake(port, "x", max_version=SSL.TLS1_1_VERSION, ciphers=_ANYTHING)
        self.assertEqual(served.version, "TLSv1.1")

    async def test_modernIsTls13Only(self) -> None:
        """
        No TLS 1.2 cipher list (C{ssl_cipher_suite = modern}): a TLS 1.2
        client is refused.
        """
        port = self.listen(TLSPolicy(ciphers=""))
        refused = handshake(port, "x", max_version=SSL.TLS1_2_VERSION)
        await self.assertFailure(Deferred.fromCoroutine(refused), SSL.Error)
        self.assertEqual((await handshake(port, "x")).version, "TLSv1.3")

    async def test_connectionRefusedBySite(self) -> None:
        """
        A connection the proxy's site refuses (its connection limit) is
        closed, as on a plain listener, instead of failing in the TLS layer.
        """
        root = Resource()
        site = GatewaySite(root, reactor=reactor, max_connections=1)
        site._channels[object()] = None  # type: ignore[index]  # one connection already open
        certificates = SNICertificates(lambda: None, (DEFAULT.cert_pem.encode(), DEFAULT.key_pem.encode()),
                                       INTERMEDIATE)
        factory: Any = TLSListenerFactory(certificates, False, site)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        await self.assertFailure(Deferred.fromCoroutine(handshake(address.port, "x")), Exception)
        self.assertEqual(site.connections_refused, 1)
        self.assertEqual(self.flushLoggedErrors(), [])


class DefaultCertificateTests(unittest.TestCase):
    """
    The node's self-signed default certificate.
    """

    def test_madeOnceAndKept(self) -> None:
        """
        The first call makes a certificate for localhost in the data
        directory (readable by the node alone); later calls read it back.
        """
        data_dir = self.mktemp()
        first = default_certificate(data_dir)
        path = Path(data_dir, "tls", "default.pem")
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        self.assertEqual(default_certificate(data_dir), first)
        certificate = x509.load_pem_x509_certificate(first[0])
        self.assertEqual(_name(certificate), "localhost")
        self.assertEqual(os.listdir(path.parent), ["default.pem"])

    def test_unreadableRefused(self) -> None:
        """
        A file that holds no certificate and key is an error, not replaced.
        """
        data_dir = self.mktemp()
        Path(data_dir, "tls").mkdir(parents=True)
        Path(data_dir, "tls", "default.pem").write_bytes(b"junk")
        self.assertRaises(ValueError, default_certificate, data_dir)
        self.assertEqual(Path(data_dir, "tls", "default.pem").read_bytes(), b"junk")


async def curl(url: str, *extra: str) -> tuple[int, bytes]:
    """
    C{curl -k URL}: the status and the body.
    """
    out, err, code = await getProcessOutputAndValue(
        "curl", ("-k", "-s", "-S", "--max-time", "20", "-w", "\n%{http_code}", *extra, url), env=dict(os.environ))
    if code != 0:
        raise AssertionError(f"curl failed ({code}): {err.decode()}")
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def _ssl_port(service: Any) -> int:
    return next(int(address.port) for description, address in service.listening("proxy")
                if description.endswith(" ssl"))


class NodeTests(unittest.TestCase):
    """
    HTTPS through a whole node: its C{ssl} listener, the Admin API's
    certificates, the default certificate in its data directory.
    """

    timeout = 60

    async def test_curl(self) -> None:
        """
        C{curl -k https://127.0.0.1:PORT/} is answered by the gateway (404:
        no route), beside a plain listener.
        """
        gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl"})
        status, body = await curl(f"https://127.0.0.1:{_ssl_port(gw.service)}/")
        self.assertEqual(status, 404)
        self.assertIn(b"no Route matched", body)
        self.assertEqual([d.endswith(" ssl") for d, _ in gw.service.listening("proxy")], [False, True])

    async def test_certificateFromAdminAPI(self) -> None:
        """
        A certificate created through the Admin API with an SNI is served
        for that name, with no restart; HTTPS requests are routed as https.
        """
        gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 ssl"})
        port = _ssl_port(gw.service)
        pair = make_self_signed(["api.example.com"])
        created = await gw.admin("POST", "/certificates",
                                 json={"cert": pair.chain_pem, "key": pair.key_pem, "snis": ["api.example.com"]})
        self.assertEqual(created.code, 201, created)

        async def served() -> bool:
            return _name((await handshake(port, "api.example.com")).certificate) == "api.example.com"

        await until(served, timeout=20, message="the new certificate is served")
        self.assertEqual(_name((await handshake(port, "other.example.com")).certificate), "localhost")
        status, body = await curl(f"https://api.example.com:{port}/", "--resolve", f"api.example.com:{port}:127.0.0.1")
        self.assertEqual(status, 404)

    async def test_defaultCertificateKept(self) -> None:
        """
        With no certificate configured, the node makes a self-signed one for
        localhost in its data directory; a node started later on that
        directory serves the same one.
        """
        data_dir = self.mktemp()
        first = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 ssl", "data_dir": data_dir})
        served = (await handshake(_ssl_port(first.service), None)).certificate
        self.assertEqual(_name(served), "localhost")
        self.assertTrue(Path(data_dir, "tls", "default.pem").exists())
        second = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 ssl", "data_dir": data_dir})
        self.assertEqual((await handshake(_ssl_port(second.service), "localhost")).certificate, served)

    async def test_configuredDefaultCertificate(self) -> None:
        """
        C{ssl_cert} and C{ssl_cert_key} replace the self-signed default.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        cert_path, key_path = write_pair(_pair("configured.test"), directory)
        gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 ssl", "ssl_cert": str(cert_path),
                                                 "ssl_cert_key": str(key_path)})
        self.assertEqual(_name((await handshake(_ssl_port(gw.service), None)).certificate), "configured.test")


class WorkersTests(StartupTestCase):
    """
    C{--workers} with an HTTPS listener.
    """

    async def test_workersServeHttps(self) -> None:
        """
        --workers 2 with an ssl listener: the worker listens on the same
        port, makes its own TLS contexts (the main process's default
        certificate, from the data directory) and serves HTTPS requests.
        """
        import psutil

        upstream, upstream_port = start_upstream(self)
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port = _free_port(), _free_port()
        cwd = self.mktemp_dir()
        args = ["--database", dsn, "--workers", "2", "--proxy-listen", f"127.0.0.1:{proxy_port} ssl",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        gateway = await self.start(args, _env(), cwd, admin_port)
        transport: Any = gateway.transport
        main = psutil.Process(transport.pid)

        def listening_worker() -> list[psutil.Process]:
            children = main.children()
            if children and any(c.laddr.port == proxy_port for c in children[0].net_connections("tcp")
                                if c.status == psutil.CONN_LISTEN):
                return children
            return []

        worker = (await until(listening_worker, timeout=30, interval=0.1,
                              message="a worker listens on the proxy port"))[0]
        admin = f"http://127.0.0.1:{admin_port}"
        await treq.post(f"{admin}/services", data={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"},
                        pool=self.pool)
        await treq.post(f"{admin}/services/s/routes", data={"paths[]": "/w"}, pool=self.pool)

        def upstream_connections(process: psutil.Process) -> int:
            return sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr.port == upstream_port)

        async def both_served() -> bool:
            await curl(f"https://127.0.0.1:{proxy_port}/w")
            return bool(upstream_connections(worker) and upstream_connections(main))

        await until(both_served, timeout=30, interval=0.01, message="both processes proxy /w over HTTPS")
        self.assertEqual(Path(cwd, "echogate-data", "tls").is_dir(), True)
        status, body = await curl(f"https://127.0.0.1:{proxy_port}/w")
        self.assertEqual(status, 200)
