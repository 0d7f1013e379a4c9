"""
TLS to services through the upstream clients' C{send}, against real TLS
servers on 127.0.0.1 with certificates made here: verification (CA set,
system trust, host name, depth), the switches that turn it off (the
service's C{tls_verify}, the C{upstream_tls_verify} default), SNI, mutual
TLS, and the connection pool kept apart per TLS policy.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from echogate.errors import ProxyError
from echogate.upstream.agent import UpstreamClient
from echogate.upstream.failures import describe
from echogate.upstream.lean import LeanUpstreamClient
from echogate.upstream.tls import TLS_POLICY, ClientCertificate, TLSPolicy
from tests.certs import KeyPair, make_ca, make_leaf
from tests.upstream.tlsservers import TLSUpstream, make_intermediate, send

CA = make_ca("upstream CA")
LEAF = make_leaf(CA, ["upstream.test", "127.0.0.1"])
CA_PEM = CA.cert_pem.encode()
CLIENT_CA = make_ca("client CA")
CLIENT = make_leaf(CLIENT_CA, ["gateway.test"])
#: The upstream's CA trusted by name: the policy of most tests.
TRUSTED = TLSPolicy(ca_certificates=(CA_PEM,), server_name="upstream.test")


class _TLSTestCase(TestCase):
    def upstream(self, pair: KeyPair = LEAF, **options: Any) -> TLSUpstream:
        server = TLSUpstream(pair, **options)
        self.addCleanup(lambda: Deferred.fromCoroutine(server.stop()))
        return server

    def client(self, **options: Any) -> UpstreamClient:
        client = UpstreamClient(reactor, **options)
        self.addCleanup(client.close)
        return client

    async def refused(self, client: Any, service: dict[str, Any], host: bytes | None = None) -> str:
        """
        Send, expect a 502, and return the reason the error log gives.
        """
        try:
            result = await send(client, service, host)
        except ProxyError as error:
            self.assertEqual(error.status, 502)
            return describe(error.__cause__)
        self.fail(f"answered {result!r}")


class VerificationTests(_TLSTestCase):
    """
    A service's certificate is verified unless told otherwise.
    """

    async def test_trusted_ca(self) -> None:
        """
        A certificate issued by one of the policy's CA certificates, for
        its server name, is accepted; the server name is sent as SNI.
        """
        server = self.upstream()
        code, seen = await send(self.client(), server.service(**{TLS_POLICY: TRUSTED}))
        self.assertEqual((code, seen["sni"]), (200, "upstream.test"))

    async def test_untrusted(self) -> None:
        """
        By default (no CA certificates: the system's bundle) a certificate
        of an unknown CA is refused: 502, and OpenSSL's reason in the log.
        """
        server = self.upstream(chain=False)
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: TLSPolicy()}), b"upstream.test")
        self.assertEqual(reason, "certificate verify failed: unable to get local issuer certificate"
                                 " (server name upstream.test)")

    async def test_not_in_ca_set(self) -> None:
        """
        With CA certificates, only they are trusted (here the server's CA
        comes with its chain: OpenSSL's reason says so).
        """
        server = self.upstream()
        policy = TLSPolicy(ca_certificates=(CLIENT_CA.cert_pem.encode(),), server_name="upstream.test")
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: policy}))
        self.assertIn("certificate verify failed: self-signed certificate in certificate chain", reason)

    async def test_hostname_mismatch(self) -> None:
        """
        A trusted certificate for another name is refused.
        """
        server = self.upstream()
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: TRUSTED.named("other.test")}))
        self.assertEqual(reason, "hostname mismatch (server name other.test)")

    async def test_host_header_names_server(self) -> None:
        """
        Without a server name in the policy, the Host header's host (port
        left out) is sent and verified.
        """
        server = self.upstream()
        code, seen = await send(self.client(), server.service(**{TLS_POLICY: TRUSTED.named(None)}),
                                b"upstream.test:8443")
        self.assertEqual((code, seen["sni"]), (200, "upstream.test"))

    async def test_host_header_mismatch(self) -> None:
        """
        A Host header the certificate is not for is refused.
        """
        server = self.upstream()
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: TRUSTED.named(None)}),
                                    b"elsewhere.test")
        self.assertIn("hostname mismatch", reason)

    async def test_ip_address(self) -> None:
        """
        Without a server name or Host header, the service's IP address is
        verified against the certificate's addresses, and no SNI is sent.
        """
        server = self.upstream()
        code, seen = await send(self.client(), server.service(**{TLS_POLICY: TRUSTED.named(None)}))
        self.assertEqual((code, seen["sni"]), (200, None))

    async def test_depth(self) -> None:
        """
        C{verify_depth} bounds the chain: a leaf under an intermediate
        passes with depth 1 and is refused with depth 0.
        """
        intermediate = make_intermediate(CA)
        server = self.upstream(make_leaf(intermediate, ["upstream.test"]))
        client = self.client()
        code, _ = await send(client, server.service(**{TLS_POLICY: TLSPolicy(
            ca_certificates=(CA_PEM,), server_name="upstream.test", verify_depth=1)}))
        self.assertEqual(code, 200)
        reason = await self.refused(client, server.service(**{TLS_POLICY: TLSPolicy(
            ca_certificates=(CA_PEM,), server_name="upstream.test", verify_depth=0)}))
        self.assertIn("certificate verify failed: certificate chain too long", reason)


class VerifyOffTests(_TLSTestCase):
    """
    Verification is off for a service whose C{tls_verify} is false, or
    whose C{tls_verify} is null with C{upstream_tls_verify} off.
    """

    async def test_service_off(self) -> None:
        """
        C{verify=False}: an untrusted certificate for another name is
        accepted, and the server name still sent as SNI.
        """
        server = self.upstream()
        policy = TLSPolicy(verify=False, server_name="other.test")
        code, seen = await send(self.client(), server.service(**{TLS_POLICY: policy}))
        self.assertEqual((code, seen["sni"]), (200, "other.test"))

    async def test_setting_off(self) -> None:
        """
        A client made with C{tls_verify=False} does not verify for a
        policy that leaves it open, but does for one that asks.
        """
        server = self.upstream()
        client = self.client(tls_verify=False)
        code, _ = await send(client, server.service(**{TLS_POLICY: TLSPolicy(server_name="upstream.test")}))
        self.assertEqual(code, 200)
        await self.refused(client, server.service(**{TLS_POLICY: TLSPolicy(verify=True, server_name="upstream.test")}))

    async def test_record_without_policy(self) -> None:
        """
        Without a policy, the record's own C{tls_verify} decides: false
        accepts an untrusted certificate, null verifies (the default).
        """
        server = self.upstream()
        client = self.client()
        code, _ = await send(client, server.service(tls_verify=False))
        self.assertEqual(code, 200)
        reason = await self.refused(client, server.service(tls_verify=None), b"upstream.test")
        self.assertIn("certificate verify failed", reason)

    async def test_unresolved_ids(self) -> None:
        """
        A record naming CA certificates by id without a policy is refused
        rather than sent unverified.
        """
        server = self.upstream()
        reason = await self.refused(self.client(), server.service(ca_certificates=["c1"], tls_verify=True))
        self.assertIn("not resolved", reason)
        self.assertEqual(server.site.connections, 0)

    async def test_lean_client(self) -> None:
        """
        The lean client's https requests follow its C{tls_verify}.
        """
        server = self.upstream()
        off = LeanUpstreamClient(reactor, tls_verify=False)
        self.addCleanup(off.close)
        on = LeanUpstreamClient(reactor)
        self.addCleanup(on.close)
        policy = TLSPolicy(server_name="upstream.test")
        code, _ = await send(off, server.service(**{TLS_POLICY: policy}))
        self.assertEqual(code, 200)
        await self.refused(on, server.service(**{TLS_POLICY: policy}))


class MutualTLSTests(_TLSTestCase):
    """
    A service that requires a client certificate gets the policy's.
    """

    async def test_with_certificate(self) -> None:
        """
        The client certificate is presented and accepted.
        """
        server = self.upstream(client_ca=CLIENT_CA)
        policy = TLSPolicy(ca_certificates=(CA_PEM,), server_name="upstream.test",
                           client_certificate=ClientCertificate(cert=CLIENT.chain_pem.encode(),
                                                                key=CLIENT.key_pem.encode()))
        code, seen = await send(self.client(), server.service(**{TLS_POLICY: policy}))
        self.assertEqual((code, seen["client"]), (200, "gateway.test"))

    async def test_without_certificate(self) -> None:
        """
        Without one, the service refuses the connection: 502.
        """
        server = self.upstream(client_ca=CLIENT_CA)
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: TRUSTED}))
        self.assertIn("TLS failed", reason)

    async def test_key_not_matching(self) -> None:
        """
        A client certificate whose key is another's fails the request
        before any connection, saying why.
        """
        server = self.upstream(client_ca=CLIENT_CA)
        policy = TLSPolicy(ca_certificates=(CA_PEM,), server_name="upstream.test",
                           client_certificate=ClientCertificate(cert=CLIENT.cert_pem.encode(),
                                                                key=LEAF.key_pem.encode()))
        reason = await self.refused(self.client(), server.service(**{TLS_POLICY: policy}))
        self.assertIn("TLS setup failed: client certificate", reason)
        self.assertEqual(server.site.connections, 0)


class PoolTests(_TLSTestCase):
    """
    Pooled TLS connections are reused only for the same TLS policy.
    """

    async def test_reused(self) -> None:
        """
        Two requests one after the other with one policy share one
        connection.
        """
        server = self.upstream()
        client = self.client()
        for _ in range(2):
            code, _ = await send(client, server.service(**{TLS_POLICY: TRUSTED}))
            self.assertEqual(code, 200)
        self.assertEqual(server.site.connections, 1)

    async def test_unverified_connection_not_shared(self) -> None:
        """
        A connection made without verification is not reused by a service
        to the same address that verifies: that one is refused.
        """
        server = self.upstream()
        client = self.client()
        code, _ = await send(client, server.service(**{TLS_POLICY: TLSPolicy(verify=False,
                                                                            server_name="upstream.test")}))
        self.assertEqual(code, 200)
        await self.refused(client, server.service(**{TLS_POLICY: TLSPolicy(server_name="upstream.test")}))
        self.assertEqual(server.site.connections, 2)

    async def test_server_names_apart(self) -> None:
        """
        Two policies differing only in the server name each get their own
        connection (and SNI).
        """
        server = self.upstream()
        client = self.client()
        seen = [(await send(client, server.service(**{TLS_POLICY: TRUSTED.named(name)})))[1]["sni"]
                for name in ("upstream.test", "127.0.0.1", "upstream.test")]
        self.assertEqual(seen, ["upstream.test", None, "upstream.test"])
        self.assertEqual(server.site.connections, 2)
