"""
The TLS policy of a service (L{echogate.upstream.tls}): resolving a
service record's certificate ids, the server name from the Host header,
the connectors made once per policy, the log's reasons, and the
C{upstream_tls_verify} setting.
"""
from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from echogate.settings import ConfigError, resolve
from echogate.upstream.failures import describe
from echogate.upstream.tls import (
    TLS_POLICY,
    ClientCertificate,
    TLSConnectors,
    TLSPolicies,
    TLSPolicy,
    TLSSetupError,
    UnknownCertificate,
    host_of,
    tls_policy,
)
from tests.certs import make_ca, make_leaf

CA = make_ca()
LEAF = make_leaf(CA, ["upstream.test"])
CAS = {"ca1": {"id": "ca1", "cert": CA.cert_pem, "cert_digest": "d"}}
CERTS = {"c1": {"id": "c1", "cert": LEAF.chain_pem, "key": LEAF.key_pem}}


class ResolveTests(SynchronousTestCase):
    """
    L{tls_policy} turns a service record into a L{TLSPolicy}.
    """

    def test_plain(self) -> None:
        """
        A service with nothing set leaves everything to the defaults.
        """
        self.assertEqual(tls_policy({"host": "a"}, CAS, CERTS), TLSPolicy())

    def test_fields(self) -> None:
        """
        C{tls_verify}, C{tls_verify_depth}, the CA certificates' PEMs, the
        client certificate's PEMs and the server name are taken.
        """
        service = {"tls_verify": True, "tls_verify_depth": 2, "ca_certificates": ["ca1"],
                   "client_certificate": {"id": "c1"}}
        self.assertEqual(tls_policy(service, CAS, CERTS, server_name="upstream.test"), TLSPolicy(
            verify=True, server_name="upstream.test", ca_certificates=(CA.cert_pem.encode(),), verify_depth=2,
            client_certificate=ClientCertificate(cert=LEAF.chain_pem.encode(), key=LEAF.key_pem.encode())))

    def test_unknown_ca(self) -> None:
        """
        An unknown CA certificate id raises L{UnknownCertificate}.
        """
        self.assertRaises(UnknownCertificate, tls_policy, {"ca_certificates": ["nope"]}, CAS, CERTS)

    def test_unknown_certificate(self) -> None:
        """
        An unknown client certificate id raises L{UnknownCertificate}.
        """
        self.assertRaises(UnknownCertificate, tls_policy, {"client_certificate": {"id": "nope"}}, CAS, CERTS)

    def test_equal_policies_hash_alike(self) -> None:
        """
        Two resolutions of one service are equal and hash alike (one
        context and one pool for both).
        """
        service = {"ca_certificates": ["ca1"]}
        a, b = tls_policy(service, CAS, CERTS), tls_policy(service, CAS, CERTS)
        self.assertEqual({a: 1}[b], 1)

    def test_named(self) -> None:
        """
        C{named} gives the policy with another server name.
        """
        self.assertEqual(TLSPolicy(verify=False).named("x.test"), TLSPolicy(verify=False, server_name="x.test"))


class PoliciesTests(SynchronousTestCase):
    """
    L{TLSPolicies} resolves the services of one configuration.
    """

    def setUp(self) -> None:
        self.policies = TLSPolicies(CAS.values(), CERTS.values())

    def test_with_policy(self) -> None:
        """
        An https service is given (in a copy) its resolved policy.
        """
        service = {"id": "s1", "protocol": "https", "ca_certificates": ["ca1"]}
        sent = self.policies.with_policy(service)
        self.assertEqual(sent[TLS_POLICY], TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)))
        self.assertNotIn(TLS_POLICY, service)

    def test_once_per_service(self) -> None:
        """
        A service's policy is resolved once (the same object again).
        """
        service = {"id": "s1", "protocol": "https", "ca_certificates": ["ca1"]}
        self.assertIs(self.policies.of(service), self.policies.of(dict(service)))

    def test_http_untouched(self) -> None:
        """
        An http service is passed on as it is.
        """
        service = {"id": "s1", "protocol": "http"}
        self.assertIs(self.policies.with_policy(service), service)

    def test_unknown_left_unresolved(self) -> None:
        """
        A service naming an unknown certificate gets no policy (the
        client refuses it).
        """
        service = {"id": "s1", "protocol": "https", "client_certificate": {"id": "nope"}}
        self.assertIs(self.policies.with_policy(service), service)
        self.assertRaises(TLSSetupError, TLSConnectors().policy_of, service)


class HostOfTests(SynchronousTestCase):
    """
    L{host_of} reads the host of a Host header.
    """

    def test_pairs(self) -> None:
        """
        From header pairs, the port left out.
        """
        self.assertEqual(host_of([(b"Accept", b"*/*"), (b"host", b"api.test:8443")]), "api.test")

    def test_headers(self) -> None:
        """
        From a L{Headers}.
        """
        self.assertEqual(host_of(Headers({b"Host": [b"api.test"]})), "api.test")

    def test_ipv6(self) -> None:
        """
        An IPv6 literal loses its brackets and port.
        """
        self.assertEqual(host_of([(b"Host", b"[::1]:8443")]), "::1")

    def test_none(self) -> None:
        """
        No Host header: C{None}.
        """
        self.assertIsNone(host_of([(b"Accept", b"*/*")]))


class ConnectorsTests(SynchronousTestCase):
    """
    L{TLSConnectors} makes one L{PolicyConnector} per (policy, name).
    """

    def test_interface(self) -> None:
        """
        A connector is an L{IOpenSSLClientConnectionCreator}.
        """
        _, connector = TLSConnectors().connector(TLSPolicy(), "a.test")
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, connector))

    def test_cached(self) -> None:
        """
        An equal policy (not the same object) gets the same connector; a
        different server name another.
        """
        connectors = TLSConnectors()
        key, first = connectors.connector(TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "a.test")
        again = connectors.connector(TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "a.test")[1]
        other = connectors.connector(TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "b.test")[1]
        self.assertIs(first, again)
        self.assertIsNot(first, other)
        self.assertEqual(key, (TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "a.test"))

    def test_one_context_per_policy(self) -> None:
        """
        Connectors to different server names share their policy's
        OpenSSL context.
        """
        connectors = TLSConnectors()
        a = connectors.connector(TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "a.test")[1]
        b = connectors.connector(TLSPolicy(ca_certificates=(CA.cert_pem.encode(),)), "b.test")[1]
        self.assertIs(a._options.getContext(), b._options.getContext())

    def test_bad_server_name(self) -> None:
        """
        A server name that is no host name (a client's Host header with
        C{preserve_host}) is a L{TLSSetupError}, not a crash.
        """
        self.assertRaises(TLSSetupError, TLSConnectors().connector, TLSPolicy(), "b\u00e4d..name")

    def test_default_verify(self) -> None:
        """
        A policy whose C{verify} is C{None} takes the client's default.
        """
        self.assertTrue(TLSConnectors().connector(TLSPolicy(), "a.test")[1].verify)
        self.assertFalse(TLSConnectors(default_verify=False).connector(TLSPolicy(), "a.test")[1].verify)
        self.assertTrue(TLSConnectors(default_verify=False).connector(TLSPolicy(verify=True), "a.test")[1].verify)

    def test_bad_pem(self) -> None:
        """
        A CA certificate that does not parse is a L{TLSSetupError}, every
        time it is asked for.
        """
        connectors = TLSConnectors()
        for _ in range(2):
            self.assertRaises(TLSSetupError, connectors.connector, TLSPolicy(ca_certificates=(b"junk",)), "a.test")

    def test_policy_from_record(self) -> None:
        """
        Without a policy, the record's C{tls_verify} and
        C{tls_verify_depth} make one (made once); with one, it is used.
        """
        connectors = TLSConnectors()
        made = connectors.policy_of({"tls_verify": False, "tls_verify_depth": 3})
        self.assertEqual(made, TLSPolicy(verify=False, verify_depth=3))
        self.assertIs(connectors.policy_of({"tls_verify": False, "tls_verify_depth": 3}), made)
        given = TLSPolicy(server_name="x.test")
        self.assertIs(connectors.policy_of({"tls_verify": False, TLS_POLICY: given}), given)

    def test_unresolved(self) -> None:
        """
        Without a policy, certificate ids cannot be honoured: a
        L{TLSSetupError}.
        """
        connectors = TLSConnectors()
        self.assertRaises(TLSSetupError, connectors.policy_of, {"ca_certificates": ["ca1"]})
        self.assertRaises(TLSSetupError, connectors.policy_of, {"client_certificate": {"id": "c1"}})


class DescribeTests(SynchronousTestCase):
    """
    The error log's reason for TLS failures.
    """

    def test_openssl_error(self) -> None:
        """
        OpenSSL's error during the exchange is given in its words.
        """
        error = SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")])
        self.assertEqual(describe(error), "TLS failed: tlsv13 alert certificate required")

    def test_setup_error(self) -> None:
        """
        A policy that cannot be used says why.
        """
        self.assertEqual(describe(TLSSetupError("client certificate: bad")),
                         "TLS setup failed: client certificate: bad")


class SettingTests(SynchronousTestCase):
    """
    The C{upstream_tls_verify} setting.
    """

    def test_default_on(self) -> None:
        """
        Verification is on by default.
        """
        self.assertTrue(resolve({}, environ={}, config_file=None).upstream_tls_verify)

    def test_off(self) -> None:
        """
        C{off} turns it off; it shows in the public settings.
        """
        settings = resolve({"upstream_tls_verify": "Off"}, environ={}, config_file=None)
        self.assertFalse(settings.upstream_tls_verify)
        self.assertIs(settings.public()["upstream_tls_verify"], False)

    def test_environment(self) -> None:
        """
        C{ECHOGATE_UPSTREAM_TLS_VERIFY} sets it.
        """
        settings = resolve({}, environ={"ECHOGATE_UPSTREAM_TLS_VERIFY": "off"}, config_file=None)
        self.assertFalse(settings.upstream_tls_verify)

    def test_invalid(self) -> None:
        """
        Anything but on or off is refused.
        """
        error = self.assertRaises(ConfigError, resolve, {"upstream_tls_verify": "yes"}, environ={}, config_file=None)
        self.assertIn("upstream_tls_verify", str(error))
