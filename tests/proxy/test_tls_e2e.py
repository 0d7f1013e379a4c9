"""
TLS end to end through a whole node, configured only through the Admin
API as Kong's docs show: https services verified against CA certificates
posted to C{/ca_certificates} (or the system's trust), with a client
certificate posted to C{/certificates} for mutual TLS, against real TLS
servers on 127.0.0.1; and certificates with C{snis} served by the node's
HTTPS listener, replaced by a PATCH without a restart.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import DeferredList
from twisted.logger import formatEvent
from twisted.trial import unittest

from tests.certs import make_ca, make_leaf, make_self_signed
from tests.gateway import Answer, RunningGateway, start_gateway
from tests.proxy.test_plugin_contract import capture_log
from tests.proxy.test_tls_listener import curl, handshake
from tests.upstream.tlsservers import TLSUpstream
from tests.waiting import until

#: Certificates made once for the module (RSA keys take a while).
UPSTREAM_CA = make_ca("e2e upstream CA")
UPSTREAM = make_leaf(UPSTREAM_CA, ["127.0.0.1"])
ELSEWHERE = make_leaf(UPSTREAM_CA, ["elsewhere.example"])
CLIENT_CA = make_ca("e2e client CA")
CLIENT = make_leaf(CLIENT_CA, ["echogate-client"])
SERVED = make_self_signed(["e2e.example.com"])
REPLACEMENT = make_self_signed(["e2e.example.com"])


async def _stop(server: TLSUpstream) -> None:
    """
    Stop C{server}: stop listening, cut the connections the node keeps to
    it, and wait until they are gone. (L{TLSUpstream.stop} reads
    C{transport} from the site's protocols, which twisted.web wraps.)
    """
    stopped = server.listening.stopListening()
    if stopped is not None:
        await stopped
    for protocol, lost in server.site.channels:
        transport = getattr(protocol, "_channel", protocol).transport
        if not lost.called and transport is not None:
            transport.abortConnection()
    await DeferredList([lost for _, lost in server.site.channels])


class UpstreamTLSTests(unittest.TestCase):
    """
    https services called over verified TLS, as the Admin API configures
    them.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.gw: RunningGateway = await start_gateway(self)
        self.events = capture_log(self)

    def upstream(self, **kwargs: Any) -> TLSUpstream:
        """
        A real TLS server on 127.0.0.1 (stopped at the test's end).
        """
        server = TLSUpstream(**kwargs)
        self.addCleanup(_stop, server)
        return server

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """
        C{POST} C{body} to the Admin API; the entity created.
        """
        answer = await self.gw.admin("POST", path, json=body)
        self.assertEqual(answer.code, 201, answer)
        created: dict[str, Any] = answer.json()
        return created

    async def proxied(self, server: TLSUpstream, name: str, **service: Any) -> Answer:
        """
        A service C{name} to C{https://127.0.0.1:PORT} of C{server} with
        the fields C{service}, a route C{/name} to it; the first answer to
        C{GET /name} once the node routes it.
        """
        await self.post("/services", {"name": name, "url": f"https://127.0.0.1:{server.port}", **service})
        await self.post(f"/services/{name}/routes", {"paths": [f"/{name}"]})
        answers: list[Answer] = []

        async def routed() -> bool:
            answers.append(await self.gw.proxy("GET", f"/{name}"))
            return answers[-1].code != 404

        await until(routed, timeout=20, message=f"the node routes /{name}")
        return answers[-1]

    async def ca(self) -> str:
        """
        Post the upstream's CA to C{/ca_certificates}; its id.
        """
        return str((await self.post("/ca_certificates", {"cert": UPSTREAM_CA.cert_pem}))["id"])

    def logged(self, text: str) -> list[str]:
        """
        The error lines logged so far that contain C{text}.
        """
        lines = [formatEvent(event) for event in self.events if "while proxying" in event.get("log_format", "")]
        return [line for line in lines if text in line]

    async def test_caCertificate(self) -> None:
        """
        A service whose certificate is signed by a CA listed in its
        C{ca_certificates} is called: 200, the body its server answered.
        """
        server = self.upstream(pair=UPSTREAM)
        answer = await self.proxied(server, "trusted", ca_certificates=[await self.ca()])
        self.assertEqual(answer.code, 200, answer)
        self.assertEqual(answer.json(), {"sni": None, "client": None})

    async def test_systemTrust(self) -> None:
        """
        Without C{ca_certificates} the system's CAs are trusted, none of
        which signed the certificate: 502, and one error line says why
        (the server sends its chain up to its own CA).
        """
        server = self.upstream(pair=UPSTREAM)
        answer = await self.proxied(server, "untrusted")
        self.assertEqual(answer.code, 502, answer)
        self.assertEqual(answer.json(), {"message": "An invalid response was received from the upstream server"})
        lines = self.logged("certificate verify failed: self-signed certificate in certificate chain")
        self.assertEqual(len(lines), 1, [formatEvent(e) for e in self.events])
        self.assertIn(f"upstream 127.0.0.1:{server.port} ", lines[0])
        self.assertIn("(service untrusted, route ", lines[0])
        self.assertTrue(lines[0].endswith("; answered 502"), lines[0])

    async def test_verifyOff(self) -> None:
        """
        C{tls_verify: false}: a certificate nobody trusts is accepted.
        """
        server = self.upstream(pair=UPSTREAM)
        answer = await self.proxied(server, "unverified", tls_verify=False)
        self.assertEqual(answer.code, 200, answer)

    async def test_wrongHostName(self) -> None:
        """
        A certificate signed by a listed CA for another name: 502, and the
        error line says the host name does not match.
        """
        server = self.upstream(pair=ELSEWHERE)
        answer = await self.proxied(server, "misnamed", ca_certificates=[await self.ca()])
        self.assertEqual(answer.code, 502, answer)
        lines = self.logged("hostname mismatch (server name 127.0.0.1)")
        self.assertEqual(len(lines), 1, [formatEvent(e) for e in self.events])

    async def test_preservedHostNotVerified(self) -> None:
        """
        With C{preserve_host}, the client's Host does not name the host the
        service's certificate is checked against: a client naming
        C{elsewhere.example} (a certificate a man in the middle could hold)
        gets 502 from a service at 127.0.0.1 serving that certificate, and
        a service serving its own name's certificate answers whatever Host
        the client sends.
        """
        cas = [await self.ca()]
        elsewhere = self.upstream(pair=ELSEWHERE)
        await self.post("/services", {"name": "fronted", "url": f"https://127.0.0.1:{elsewhere.port}",
                                      "ca_certificates": cas})
        await self.post("/services/fronted/routes", {"paths": ["/fronted"], "preserve_host": True})
        own = self.upstream(pair=UPSTREAM)
        await self.post("/services", {"name": "own", "url": f"https://127.0.0.1:{own.port}", "ca_certificates": cas})
        await self.post("/services/own/routes", {"paths": ["/own"], "preserve_host": True})

        async def answered(path: str) -> Answer:
            answers: list[Answer] = []

            async def routed() -> bool:
                answers.append(await self.gw.proxy("GET", path, headers={"Host": "elsewhere.example"}))
                return answers[-1].code != 404

            await until(routed, timeout=20, message=f"the node routes {path}")
            return answers[-1]

        self.assertEqual((await answered("/fronted")).code, 502)
        self.assertEqual((await answered("/own")).code, 200)

    async def test_clientCertificate(self) -> None:
        """
        A service whose server requires a client certificate is called with
        the C{client_certificate} posted to C{/certificates}: 200, and the
        server saw that certificate.
        """
        server = self.upstream(pair=UPSTREAM, client_ca=CLIENT_CA)
        certificate = await self.post("/certificates", {"cert": CLIENT.chain_pem, "key": CLIENT.key_pem})
        answer = await self.proxied(server, "mutual", ca_certificates=[await self.ca()],
                                    client_certificate={"id": certificate["id"]})
        self.assertEqual(answer.code, 200, answer)
        self.assertEqual(answer.json()["client"], "echogate-client")

    async def test_clientCertificateMissing(self) -> None:
        """
        The same service without C{client_certificate}: the server ends
        the handshake, 502, and the error line says TLS failed.
        """
        server = self.upstream(pair=UPSTREAM, client_ca=CLIENT_CA)
        answer = await self.proxied(server, "anonymous", ca_certificates=[await self.ca()])
        self.assertEqual(answer.code, 502, answer)
        lines = self.logged("TLS failed")
        self.assertEqual(len(lines), 1, [formatEvent(e) for e in self.events])


class ListenerCertificateTests(unittest.TestCase):
    """
    A certificate posted with C{snis} is served by the node's HTTPS
    listener for those names, and a PATCH replaces it without a restart.
    """

    timeout = 60

    async def test_postThenPatch(self) -> None:
        """
        A handshake naming the SNI gets the posted certificate; after a
        PATCH with another certificate, a later handshake gets that one.
        """
        gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl"})
        port = next(int(address.port) for description, address in gw.service.listening("proxy")
                    if description.endswith(" ssl"))
        created = await gw.admin("POST", "/certificates", json={
            "cert": SERVED.chain_pem, "key": SERVED.key_pem, "snis": ["e2e.example.com"]})
        self.assertEqual(created.code, 201, created)

        async def serves(expected: Any) -> bool:
            return bool((await handshake(port, "e2e.example.com")).certificate == expected)

        await until(lambda: serves(SERVED.cert), timeout=20, message="the posted certificate is served")
        self.assertNotEqual((await handshake(port, "other.example.com")).certificate, SERVED.cert)
        patched = await gw.admin("PATCH", f"/certificates/{created.json()['id']}", json={
            "cert": REPLACEMENT.chain_pem, "key": REPLACEMENT.key_pem})
        self.assertEqual(patched.code, 200, patched)
        await until(lambda: serves(REPLACEMENT.cert), timeout=20, message="the patched certificate is served")
        status, _ = await curl(f"https://e2e.example.com:{port}/", "--resolve", f"e2e.example.com:{port}:127.0.0.1")
        self.assertEqual(status, 404)
