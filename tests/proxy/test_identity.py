"""
Identity the client cannot forge (issue 28), on the wire against a real
node: the identity headers the gateway sets, header names with
underscores, IPv4-mapped client addresses.
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.proxy.test_edge import KEY, EdgeCase
from tests.rawclient import status_of

FORGED = (b"X-Consumer-ID: 6f1c0c56-0000-4000-8000-000000000001\r\nX-Consumer-Custom-ID: admin\r\n"
          b"X-Consumer-Username: admin\r\nX-Consumer-Groups: admins\r\nX-Credential-Identifier: stolen\r\n"
          b"X-Anonymous-Consumer: false\r\nX-Anonymous-Groups: admins\r\nX-Authenticated-Groups: admins\r\n")

IDENTITY = {"x-consumer-id", "x-consumer-custom-id", "x-consumer-username", "x-consumer-groups",
            "x-credential-identifier", "x-anonymous-consumer", "x-anonymous-groups", "x-authenticated-groups"}


class ForgedIdentityTests(EdgeCase):
    """
    A client's own identity headers never reach the service.
    """

    async def test_openRoute(self) -> None:
        """
        On a route without an auth plugin, every forged identity header is
        removed.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n" + FORGED + b"\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(IDENTITY & set(self.upstream.seen[0]["headers"]), set())

    async def test_besideGenuine(self) -> None:
        """
        On the key-auth route, the service sees the genuine consumer and no
        forged group (there is no acl plugin to set one).
        """
        data, _ = await self.send(b"GET /admin/x HTTP/1.1\r\nHost: h.test\r\napikey: " + KEY.encode() + b"\r\n"
                                  + FORGED + b"\r\n")
        self.assertEqual(status_of(data), 200, data)
        headers = self.upstream.seen[0]["headers"]
        self.assertEqual(headers["x-consumer-username"], ["alice"])
        self.assertNotIn("x-consumer-groups", headers)
        self.assertNotIn("x-authenticated-groups", headers)
        self.assertNotEqual(headers["x-credential-identifier"], ["stolen"])

    async def test_preflightNotAuthenticated(self) -> None:
        """
        An OPTIONS preflight that key-auth lets through unauthenticated
        (run_on_preflight false) carries no forged identity.
        """
        plugins = await self.gw.admin("GET", "/routes/admin/plugins")
        plugin_id = plugins.json()["data"][0]["id"]
        answer = await self.gw.admin("PATCH", f"/plugins/{plugin_id}", json={"config": {"run_on_preflight": False}})
        self.assertEqual(answer.code, 200, answer)
        await deferLater(reactor, 0.2, lambda: None)
        data, _ = await self.send(b"OPTIONS /admin/x HTTP/1.1\r\nHost: h.test\r\nOrigin: http://a.test\r\n"
                                  b"Access-Control-Request-Method: POST\r\n" + FORGED + b"\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(IDENTITY & set(self.upstream.seen[0]["headers"]), set())


class UnderscoreTests(EdgeCase):
    """
    headers_with_underscores = drop (the default): CGI and WSGI services
    merge X_Consumer_Username with X-Consumer-Username, so such names never
    reach them.
    """

    async def test_dropped(self) -> None:
        """
        Underscore spellings of identity and forwarding headers are
        dropped; other headers pass.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nX_Consumer_Username: admin\r\n"
                                  b"X_Credential_Identifier: stolen\r\nX_Forwarded_For: 10.0.0.1\r\n"
                                  b"X-Fine: yes\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        headers = self.upstream.seen[0]["headers"]
        self.assertEqual([name for name in headers if "_" in name], [])
        self.assertEqual(headers["x-fine"], ["yes"])


class UnderscoreRejectTests(EdgeCase):
    """
    headers_with_underscores = reject: 400 before routing.
    """

    settings = {"headers_with_underscores": "reject"}

    async def test_rejected(self) -> None:
        """
        A header name with an underscore gets 400 and nothing reaches the
        service.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nX_Consumer_Username: admin\r\n\r\n")
        self.assertRefused(data, 400, "Bad request")
        self.assertEqual(self.paths_seen(), [])

    async def test_othersServed(self) -> None:
        """
        Requests without such names are served.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nX-Fine: yes\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)


class UnderscoreAllowTests(EdgeCase):
    """
    headers_with_underscores = allow passes them on (but never the identity
    headers' dashed names).
    """

    settings = {"headers_with_underscores": "allow"}

    async def test_allowed(self) -> None:
        """
        The underscore header reaches the service.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\nX_Custom: 1\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(self.upstream.seen[0]["headers"]["x_custom"], ["1"])


class MappedAddressTests(EdgeCase):
    """
    On a dual-stack listener IPv4 clients arrive as ::ffff:a.b.c.d; the
    gateway names them in their IPv4 form, and ip-restriction matches both
    spellings of its lists.
    """

    settings = {"proxy_listen": r"tcp6:0:interface=\:\:"}

    async def test_ipv4Form(self) -> None:
        """
        The service's X-Real-IP is the IPv4 form.
        """
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(self.upstream.seen[0]["headers"]["x-real-ip"], ["127.0.0.1"])

    async def test_mappedDeny(self) -> None:
        """
        A deny of ::ffff:127.0.0.1 refuses the IPv4 client.
        """
        answer = await self.gw.admin("POST", "/routes/open/plugins",
                                     json={"name": "ip-restriction", "config": {"deny": ["::ffff:127.0.0.1"]}})
        self.assertEqual(answer.code, 201, answer)
        await deferLater(reactor, 0.2, lambda: None)
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 403, data)
        self.assertIn(b"127.0.0.1", data)
        self.assertNotIn(b"::ffff:", data)

    async def test_mappedRange(self) -> None:
        """
        A mapped range (::ffff:127.0.0.0/104) is the IPv4 range.
        """
        answer = await self.gw.admin("POST", "/routes/open/plugins",
                                     json={"name": "ip-restriction", "config": {"deny": ["::ffff:127.0.0.0/104"]}})
        self.assertEqual(answer.code, 201, answer)
        await deferLater(reactor, 0.2, lambda: None)
        data, _ = await self.send(b"GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
        self.assertEqual(status_of(data), 403, data)
