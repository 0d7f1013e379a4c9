"""
Tests for L{echogate.admin.guard}: the Admin API refuses requests from
other web pages (C{Origin}), for other host names (C{Host}: DNS
rebinding) and, with a token set, without it. Each test sends the
attacker's raw request to the Admin API's site over a L{StringTransport}.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from echogate.admin import AdminAPI
from echogate.settings import exposure_warnings
from tests.admin.test_admin import NODE, NOW, PLUGINS, ids
from tests.storefake import MemoryStore


class RawAnswer:
    """
    A response as raw bytes, split into status, headers and JSON body.
    """

    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {name.strip().lower(): value.strip()
                        for name, _, value in (line.partition(b":") for line in lines[1:])}

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def send_raw(site: Site, raw: bytes) -> RawAnswer:
    """
    Send one raw request to C{site} on a new connection to 127.0.0.1:8001.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8001),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    answer = RawAnswer(transport.value())
    protocol.connectionLost(None)
    return answer


class GuardTestCase(SynchronousTestCase):
    """
    An Admin API listening on 127.0.0.1:8001 (in memory).
    """

    token = ""
    server_names: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.store = MemoryStore()
        clock = Clock()
        clock.advance(NOW)
        self.api = AdminAPI(store=self.store, plugins=PLUGINS, clock=clock, node=NODE, new_id=ids(),
                            token=self.token, server_names=self.server_names)
        self.site = Site(self.api.resource())

    def send(self, raw: bytes) -> RawAnswer:
        """
        Send one raw request on a new connection to 127.0.0.1:8001.
        """
        return send_raw(self.site, raw)

    def services(self) -> int:
        return len(self.store.tables["services"])


FORM = b"name=evil&host=evil.example"
JSON = b'{"name":"evil","host":"evil.example"}'


def post(host: bytes, body: bytes, content_type: bytes, *extra: bytes, path: bytes = b"/services",
         method: bytes = b"POST") -> bytes:
    headers = [b"Host: " + host, b"Content-Type: " + content_type,
               b"Content-Length: " + str(len(body)).encode(), *extra, b"Connection: close"]
    return method + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


class CrossOriginTests(GuardTestCase):
    """
    State-changing requests whose C{Origin} is another site's are refused.
    """

    def test_crossOriginForm(self) -> None:
        """
        A form another page posts (the browser adds its Origin) is 403, and nothing is stored.
        """
        answer = self.send(post(b"127.0.0.1:8001", FORM, b"application/x-www-form-urlencoded",
                                b"Origin: http://evil.example"))
        self.assertEqual(answer.status, 403)
        self.assertEqual(answer.json, {"message": "Cross-origin requests that change the configuration are refused"})
        self.assertEqual(self.services(), 0)

    def test_crossOriginMultipart(self) -> None:
        """
        A multipart form from another page is 403.
        """
        body = (b"--b\r\nContent-Disposition: form-data; name=\"host\"\r\n\r\nevil.example\r\n--b--\r\n")
        answer = self.send(post(b"localhost:8001", body, b"multipart/form-data; boundary=b",
                                b"Origin: https://evil.example"))
        self.assertEqual(answer.status, 403)
        self.assertEqual(self.services(), 0)

    def test_nullOrigin(self) -> None:
        """
        C{Origin: null} (a sandboxed frame, a file) is 403.
        """
        answer = self.send(post(b"127.0.0.1:8001", JSON, b"application/json", b"Origin: null"))
        self.assertEqual(answer.status, 403)

    def test_otherPortOrigin(self) -> None:
        """
        A page on the same host but another port is another origin: 403.
        """
        answer = self.send(post(b"127.0.0.1:8001", JSON, b"application/json", b"Origin: http://127.0.0.1:8000"))
        self.assertEqual(answer.status, 403)

    def test_crossOriginDelete(self) -> None:
        """
        DELETE from another page is 403 and deletes nothing.
        """
        self.send(post(b"127.0.0.1:8001", JSON, b"application/json"))
        answer = self.send(post(b"127.0.0.1:8001", b"", b"application/json", b"Origin: http://evil.example",
                                path=b"/services/evil", method=b"DELETE"))
        self.assertEqual(answer.status, 403)
        self.assertEqual(self.services(), 1)

    def test_sameOrigin(self) -> None:
        """
        The Admin API's own origin (a UI served from it) may write.
        """
        answer = self.send(post(b"127.0.0.1:8001", JSON, b"application/json", b"Origin: http://127.0.0.1:8001"))
        self.assertEqual(answer.status, 201)

    def test_noOrigin(self) -> None:
        """
        Clients that are not browsers send no Origin, and keep working.
        """
        answer = self.send(post(b"127.0.0.1:8001", FORM, b"application/x-www-form-urlencoded"))
        self.assertEqual(answer.status, 201)

    def test_crossOriginRead(self) -> None:
        """
        A GET with a foreign Origin is answered (the browser keeps the page from reading it: no CORS headers).
        """
        answer = self.send(b"GET /services HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nOrigin: http://evil.example\r\n"
                           b"Connection: close\r\n\r\n")
        self.assertEqual(answer.status, 200)
        self.assertNotIn(b"access-control-allow-origin", answer.headers)


class HostTests(GuardTestCase):
    """
    Requests for a host name the Admin API does not answer to are 421.
    """

    server_names = ("admin.internal", "ops.example:9001")

    def test_rebinding(self) -> None:
        """
        A DNS-rebinding page's request (its own name in Host, no Origin: same-origin) is 421.
        """
        answer = self.send(post(b"attacker.example:8001", JSON, b"application/json"))
        self.assertEqual(answer.status, 421)
        self.assertEqual(answer.json, {"message": "This Admin API does not answer for that host name"})
        self.assertEqual(self.services(), 0)

    def test_rebindingRead(self) -> None:
        """
        A rebinding page cannot read either: GET with its Host is 421.
        """
        answer = self.send(b"GET / HTTP/1.1\r\nHost: attacker.example:8001\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 421)

    def test_accepted(self) -> None:
        """
        Address literals, localhost and the configured names (with or without port) are answered.
        """
        for host in [b"127.0.0.1:8001", b"127.0.0.1", b"10.1.2.3:8001", b"[::1]:8001", b"localhost",
                     b"LOCALHOST:8001", b"admin.internal", b"admin.internal:1234", b"ops.example:9001"]:
            answer = self.send(b"GET /services HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            self.assertEqual((host, answer.status), (host, 200))

    def test_wrongPort(self) -> None:
        """
        A name configured with a port is refused on another port.
        """
        answer = self.send(b"GET / HTTP/1.1\r\nHost: ops.example:8001\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 421)

    def test_suffix(self) -> None:
        """
        A name that merely ends like a configured one is refused.
        """
        answer = self.send(b"GET / HTTP/1.1\r\nHost: evil-admin.internal\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 421)

    def test_twoHosts(self) -> None:
        """
        Two Host headers are refused.
        """
        answer = self.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\n"
                           b"Connection: close\r\n\r\n")
        self.assertEqual(answer.status, 421)

    def test_noHost(self) -> None:
        """
        An HTTP/1.0 request without Host (not a browser) is answered.
        """
        answer = self.send(b"GET /services HTTP/1.0\r\n\r\n")
        self.assertEqual(answer.status, 200)


class TokenTests(GuardTestCase):
    """
    With C{admin_token} set, every request carries it.
    """

    token = "s3cret-token"

    def test_missing(self) -> None:
        """
        A request without Authorization is 401 with WWW-Authenticate: Bearer, and nothing is stored.
        """
        answer = self.send(post(b"127.0.0.1:8001", JSON, b"application/json"))
        self.assertEqual(answer.status, 401)
        self.assertEqual(answer.json, {"message": "Unauthorized"})
        self.assertEqual(answer.headers[b"www-authenticate"], b"Bearer")
        self.assertEqual(self.services(), 0)

    def test_wrong(self) -> None:
        """
        A wrong token is 401, for reads too.
        """
        answer = self.send(b"GET /services HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
                           b"Authorization: Bearer s3cret-tokeN\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 401)

    def test_basic(self) -> None:
        """
        The token sent as Basic credentials is not accepted.
        """
        answer = self.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
                           b"Authorization: Basic czNjcmV0LXRva2Vu\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 401)

    def test_right(self) -> None:
        """
        The right bearer token is answered.
        """
        answer = self.send(post(b"127.0.0.1:8001", JSON, b"application/json",
                                b"Authorization: Bearer s3cret-token"))
        self.assertEqual(answer.status, 201)

    def test_status(self) -> None:
        """
        Every endpoint needs it, GET /status too.
        """
        answer = self.send(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer.status, 401)


class PathTests(GuardTestCase):
    """
    A path that is not UTF-8 is a clean 400.
    """

    def test_surrogatePath(self) -> None:
        """
        PUT /consumers/%ED%A0%80 (a lone surrogate, UTF-8-encoded) is 400 JSON, and nothing is stored.
        """
        answer = self.send(post(b"127.0.0.1:8001", b"{}", b"application/json", path=b"/consumers/%ED%A0%80",
                                method=b"PUT"))
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.json, {"message": "The request path is not valid UTF-8"})
        self.assertEqual(len(self.store.tables["consumers"]), 0)


class ExposureWarningTests(SynchronousTestCase):
    """
    Tests for L{exposure_warnings}: the start-up warning for an Admin API
    reachable from other hosts without a token.
    """

    def test_allInterfaces(self) -> None:
        """
        A TCP endpoint without interface (every interface) is warned about.
        """
        [warning] = exposure_warnings(["tcp:8001"], "")
        self.assertIn("'tcp:8001'", warning)
        self.assertIn("admin_token", warning)

    def test_publicInterface(self) -> None:
        """
        A TCP or TLS endpoint on a non-loopback address is warned about.
        """
        self.assertEqual(len(exposure_warnings(["tcp:8001:interface=0.0.0.0",
                                                "ssl:8444:interface=10.0.0.5:privateKey=k.pem",
                                                r"tcp6:8001:interface=\:\:"], "")), 3)

    def test_loopback(self) -> None:
        """
        Loopback endpoints and UNIX sockets are not.
        """
        self.assertEqual(exposure_warnings(["tcp:8001:interface=127.0.0.1", r"tcp6:8001:interface=\:\:1",
                                            "tcp:8001:interface=localhost", "unix:/run/echogate.sock"], ""), [])

    def test_token(self) -> None:
        """
        With a token set, nothing is warned about.
        """
        self.assertEqual(exposure_warnings(["tcp:8001"], "t"), [])
