"""
Tests for C{hide_credentials} of key-auth (L{echogate.bundled.key_auth})
and basic-auth (L{echogate.bundled.basic_auth}): a running node, the
attacker's exact bytes on a real socket, and a real upstream that records
what it received, which must hold no copy of a credential.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import TestCase

from tests.gateway import RunningGateway, start_gateway
from tests.rawclient import connect, status_of
from tests.upstream_server import UpstreamResource, start_upstream

KEY = "k3y-0f-alice"
OTHER = "k3y-0f-bob"


class _NodeTestCase(TestCase):
    """
    A node with service C{svc} (the recording upstream) and route C{/h}.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.upstream: UpstreamResource
        self.upstream, port = start_upstream(self)
        self.gw: RunningGateway = await start_gateway(self)
        await self.admin("POST", "/services", 201, json={"name": "svc", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/svc/routes", 201, json={"name": "r", "paths": ["/h"]})

    async def admin(self, method: str, path: str, code: int, **kw: Any) -> Any:
        """
        Call the Admin API and check the status.
        """
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer.body)
        return answer.json() if answer.body else None

    async def raw(self, request: bytes) -> bytes:
        """
        Send C{request} as is to the proxy; the whole response.
        """
        client = await connect(self.gw.proxy_port)
        self.addCleanup(client.transport.abortConnection)
        client.send(request)
        return await client.response()

    def seen(self) -> dict[str, Any]:
        """
        The one request the upstream received.
        """
        self.assertEqual(len(self.upstream.seen), 1)
        return self.upstream.seen[0]

    def assertNoSecret(self, seen: dict[str, Any], *secrets: str) -> None:
        """
        None of C{secrets} is in the URI, the headers or the body the
        upstream saw.
        """
        whole = json.dumps([seen["uri"], seen["headers"], seen["body"]])
        for secret in secrets:
            self.assertNotIn(secret, whole)


class KeyAuthHideCredentialsTests(_NodeTestCase):
    """
    key-auth with C{hide_credentials} sends the service no copy of a key.
    """

    async def setUp(self) -> None:
        await super().setUp()
        await self.admin("POST", "/consumers", 201, json={"username": "alice"})
        await self.admin("POST", "/consumers", 201, json={"username": "guest"})
        await self.admin("POST", "/consumers/alice/key-auth", 201, json={"key": KEY})

    async def key_auth(self, **config: Any) -> None:
        await self.admin("POST", "/routes/r/plugins", 201, json={
            "name": "key-auth", "config": {"hide_credentials": True, **config}})

    async def test_repeatedQueryArgument(self) -> None:
        """
        C{?apikey=a&apikey=b} (a duplicate, let through as the anonymous
        consumer) reaches the service with neither value.
        """
        await self.key_auth(anonymous="guest")
        data = await self.raw(b"GET /h/x?apikey=" + KEY.encode() + b"&keep=1&apikey=" + OTHER.encode()
                              + b" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual((seen["uri"], seen["headers"]["x-anonymous-consumer"]), ("/x?keep=1", ["true"]))
        self.assertNoSecret(seen, KEY, OTHER)

    async def test_encodedQueryName(self) -> None:
        """
        A query argument whose name is percent-encoded (C{api%6Bey}) is the
        key's name too, and is removed.
        """
        await self.key_auth()
        data = await self.raw(b"GET /h/x?api%6Bey=" + KEY.encode() + b"&keep=1"
                              b" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual(seen["uri"], "/x?keep=1")
        self.assertNoSecret(seen, KEY)

    async def test_repeatedHeaderLines(self) -> None:
        """
        Two C{apikey} header lines, in different case (a duplicate, let
        through as the anonymous consumer), reach the service as neither.
        """
        await self.key_auth(anonymous="guest")
        data = await self.raw(b"GET /h/x HTTP/1.1\r\nHost: gw.test\r\napikey: " + KEY.encode()
                              + b"\r\nAPIKEY: " + OTHER.encode() + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual(seen["headers"]["x-anonymous-consumer"], ["true"])
        self.assertNoSecret(seen, KEY, OTHER)

    async def test_headerAndQuery(self) -> None:
        """
        A key in a header in another case and in the query string: both are
        removed.
        """
        await self.key_auth()
        data = await self.raw(b"GET /h/x?apikey=" + OTHER.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
                              b"ApiKey: " + KEY.encode() + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual((seen["uri"], seen["headers"]["x-consumer-username"]), ("/x", ["alice"]))
        self.assertNoSecret(seen, KEY, OTHER)

    async def test_everyKeyName(self) -> None:
        """
        A request authenticated under one key name reaches the service
        without the values of the other key names (headers, query, body).
        """
        await self.key_auth(key_names=["apikey", "x-token"], key_in_body=True)
        body = b"x-token=" + OTHER.encode() + b"&apikey=" + OTHER.encode() + b"&a=1"
        data = await self.raw(b"POST /h/x?x-token=" + OTHER.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
                              b"apikey: " + KEY.encode() + b"\r\nX-Token: " + OTHER.encode()
                              + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                              b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                              + body)
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual((seen["uri"], seen["body"], seen["headers"]["content-length"]), ("/x", "a=1", ["3"]))
        self.assertNoSecret(seen, KEY, OTHER)

    async def test_jsonBody(self) -> None:
        """
        A key in a JSON body is removed from it as well as from the header
        that authenticated.
        """
        await self.key_auth(key_in_body=True)
        body = json.dumps({"apikey": OTHER, "a": 1}).encode()
        data = await self.raw(b"POST /h/x HTTP/1.1\r\nHost: gw.test\r\napikey: " + KEY.encode()
                              + b"\r\nContent-Type: application/json\r\nContent-Length: "
                              + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual(json.loads(seen["body"]), {"a": 1})
        self.assertNoSecret(seen, KEY, OTHER)

    async def test_preflightNotAuthenticated(self) -> None:
        """
        With C{run_on_preflight} false, an C{OPTIONS} request passes
        unauthenticated but still without its key.
        """
        await self.key_auth(run_on_preflight=False)
        data = await self.raw(b"OPTIONS /h/x?apikey=" + KEY.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
                              b"apikey: " + KEY.encode() + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertNoSecret(self.seen(), KEY)

    async def test_unknownKeyAnonymous(self) -> None:
        """
        An unknown key let through as the anonymous consumer does not reach
        the service.
        """
        await self.key_auth(anonymous="guest")
        data = await self.raw(b"GET /h/x?apikey=" + OTHER.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
                              b"Connection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual((seen["uri"], seen["headers"]["x-anonymous-consumer"]), ("/x", ["true"]))

    async def test_notHiddenByDefault(self) -> None:
        """
        Without C{hide_credentials} the service gets the key, as in Kong.
        """
        await self.admin("POST", "/routes/r/plugins", 201, json={"name": "key-auth"})
        data = await self.raw(b"GET /h/x?apikey=" + KEY.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
                              b"Connection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        self.assertEqual(self.seen()["uri"], "/x?apikey=" + KEY)


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class BasicAuthHideCredentialsTests(_NodeTestCase):
    """
    basic-auth with C{hide_credentials} sends the service neither
    credential header.
    """

    async def setUp(self) -> None:
        await super().setUp()
        for name, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
            await self.admin("POST", "/consumers", 201, json={"username": name})
            await self.admin("POST", f"/consumers/{name}/basic-auth", 201,
                             json={"username": name, "password": password})
        await self.admin("POST", "/routes/r/plugins", 201, json={
            "name": "basic-auth", "config": {"hide_credentials": True}})

    async def test_proxyAuthorizationAndAuthorization(self) -> None:
        """
        Authenticated by C{Proxy-Authorization}, the request reaches the
        service without the C{Authorization} header (another consumer's
        credentials) either.
        """
        data = await self.raw(b"GET /h/x HTTP/1.1\r\nHost: gw.test\r\nProxy-Authorization: "
                              + _basic("alice", "alice-pw") + b"\r\nAuthorization: " + _basic("bob", "bob-pw")
                              + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual(seen["headers"]["x-consumer-username"], ["alice"])
        self.assertNotIn("authorization", seen["headers"])
        self.assertNotIn("proxy-authorization", seen["headers"])
        self.assertNoSecret(seen, _basic("bob", "bob-pw").decode()[6:], _basic("alice", "alice-pw").decode()[6:])

    async def test_authorization(self) -> None:
        """
        Authenticated by C{Authorization}, the request reaches the service
        without C{Proxy-Authorization} (which did not authenticate).
        """
        data = await self.raw(b"GET /h/x HTTP/1.1\r\nHost: gw.test\r\nProxy-Authorization: "
                              + _basic("mallory", "guess") + b"\r\nAuthorization: " + _basic("bob", "bob-pw")
                              + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(data), 200, data)
        seen = self.seen()
        self.assertEqual(seen["headers"]["x-consumer-username"], ["bob"])
        self.assertNoSecret(seen, _basic("bob", "bob-pw").decode()[6:], _basic("mallory", "guess").decode()[6:])
