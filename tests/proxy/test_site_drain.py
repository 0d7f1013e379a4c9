"""
Draining the proxy listener for a graceful stop (L{GatewaySite.drain}),
over real sockets on 127.0.0.1; the drain's timeout runs on a L{Clock}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from echogate.proxy.site import GatewaySite
from tests.proxy.test_site_limits import (
    REQUEST,
    ListenerTestCase,
    RawClient,
    open_channel,
    until,
)

HELD = b"GET /held HTTP/1.1\r\nHost: gateway.example\r\n\r\n"


class DrainTests(ListenerTestCase):
    """
    L{GatewaySite.drain} closes idle connections at once, lets requests in
    flight finish and closes their connections after them, and aborts what
    is still open at the timeout.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()

    async def held(self) -> tuple[RawClient, Any]:
        """
        A keep-alive connection with a request in flight, and that request.
        """
        client = await self.connect(send=HELD)
        await until(lambda: len(self.resource.held) == 1)
        return client, self.resource.held[0]

    def test_nothingOpen(self) -> None:
        """
        With no connection open, the drain is over at once.
        """
        self.assertIsNone(self.successResultOf(self.site.drain(5, self.clock)))
        self.assertTrue(self.site.draining)

    async def test_idleClosedAtOnce(self) -> None:
        """
        A keep-alive connection between requests is closed at once, and
        the drain is over when it is closed.
        """
        client = await self.connect(send=REQUEST)
        await client.wait_for(b"hello")
        drained = self.site.drain(5, self.clock)
        self.assertEqual(await client.closed, client.received)
        await drained
        self.assertEqual((self.site.connections_open, self.clock.getDelayedCalls()), (0, []))

    async def test_inFlightAnsweredWithClose(self) -> None:
        """
        A request in flight is answered in full, with C{Connection: close},
        then its connection is closed and the drain is over.
        """
        client, request = await self.held()
        drained = self.site.drain(5, self.clock)
        self.assertNoResult(drained)
        request.write(b"late answer")
        request.finish()
        answer = await client.closed
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(answer.endswith(b"late answer\r\n0\r\n\r\n"), answer)
        await drained

    async def test_startedResponseClosedAfter(self) -> None:
        """
        A response already under way when the drain starts (its head said
        nothing of closing) ends in full, then its connection is closed.
        """
        client, request = await self.held()
        request.write(b"first part")
        await client.wait_for(b"first part")
        drained = self.site.drain(5, self.clock)
        self.assertNoResult(drained)
        request.write(b", second part")
        request.finish()
        self.assertTrue((await client.closed).endswith(b", second part\r\n0\r\n\r\n"))
        await drained

    async def test_timeoutAborts(self) -> None:
        """
        A request still in flight at the timeout has its connection aborted,
        then the drain is over.
        """
        client, request = await self.held()
        gone = request.notifyFinish()
        drained = self.site.drain(5, self.clock)
        self.clock.advance(4.9)
        self.assertNoResult(drained)
        self.assertFalse(client.closed.called)
        self.clock.advance(0.1)
        self.assertEqual(await client.closed, b"")
        await drained
        self.failureResultOf(gone)

    async def test_newConnectionsClosed(self) -> None:
        """
        A connection that comes while the site drains is closed at once.
        """
        await self.held()
        self.site.drain(5, self.clock)
        latecomer = await self.connect(send=REQUEST)
        self.assertEqual(await latecomer.closed, b"")
        self.assertEqual(self.site.connections_open, 1)

    async def test_everyCallerTold(self) -> None:
        """
        Two drains of the same site are both over when the last connection
        closes, and leave no timer behind.
        """
        _, request = await self.held()
        first = self.site.drain(5, self.clock)
        second = self.site.drain(10, self.clock)
        request.finish()
        await first
        await second
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled(self) -> None:
        """
        Cancelling a drain stops its timer.
        """
        site = GatewaySite(self.resource, reactor=Clock(), timeout=None)
        open_channel(site, "192.0.2.1").dataReceived(HELD)
        drained = site.drain(5, self.clock)
        drained.cancel()
        self.failureResultOf(drained)
        self.assertEqual(self.clock.getDelayedCalls(), [])
