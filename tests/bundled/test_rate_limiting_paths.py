"""
rate-limiting with C{limit_by=path} against spellings of the same path: a
running gateway with the real PostgreSQL, and the attacker's exact request
lines on a raw socket. Every spelling the router treats as one path
(repeated slashes, dot segments, encoded unreserved characters) is counted
as that path.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.gateway import start_gateway
from tests.rawclient import connect, status_of
from tests.upstream_server import start_upstream


class RateLimitByPathTests(TestCase):
    """
    A route C{/p} with rate-limiting C{limit_by=path}, C{path=/p/x},
    C{minute=1}: once C{/p/x} has been asked for, any other spelling of
    it is refused.
    """

    timeout = 60

    async def setUp(self) -> None:
        _, upstream_port = start_upstream(self)
        self.gw = await start_gateway(self)
        await self.admin(201, "POST", "/services", json={
            "name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        await self.admin(201, "POST", "/services/s/routes", json={"name": "p", "paths": ["/p"]})

    async def admin(self, code: int, method: str, path: str, **kw: Any) -> Any:
        """
        Call the Admin API and check the status.
        """
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer.body)
        return answer.json() if answer.body else None

    async def limit(self, path: str = "/p/x") -> None:
        """
        Enable rate-limiting by C{path}, one request a minute.
        """
        await self.admin(201, "POST", "/plugins", json={
            "name": "rate-limiting", "config": {"limit_by": "path", "path": path, "minute": 1}})

    async def get(self, target: bytes) -> int | None:
        """
        Send C{GET target} on a fresh raw connection: the status.
        """
        client = await connect(self.gw.proxy_port)
        self.addCleanup(lambda: client.transport.abortConnection())
        client.send(b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        return status_of(await client.response())

    async def test_samePath(self) -> None:
        """
        The second request for C{/p/x} is refused: the limit is in force.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/x")], [200, 429])

    async def test_repeatedSlash(self) -> None:
        """
        C{/p//x} counts as C{/p/x}.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p//x")], [200, 429])

    async def test_dotSegment(self) -> None:
        """
        C{/p/./x} counts as C{/p/x}.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/./x")], [200, 429])

    async def test_dotDotSegment(self) -> None:
        """
        C{/p/a/../x} counts as C{/p/x}.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/a/../x")], [200, 429])

    async def test_encodedUnreserved(self) -> None:
        """
        C{/p/%78} (an encoded C{x}) counts as C{/p/x}.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/%78")], [200, 429])

    async def test_queryIgnored(self) -> None:
        """
        A query string does not make another path.
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/x?y=1")], [200, 429])

    async def test_otherPathNotCounted(self) -> None:
        """
        Another path is counted apart (per client IP).
        """
        await self.limit()
        self.assertEqual([await self.get(b"/p/x"), await self.get(b"/p/y")], [200, 200])
