"""
The edge limits over HTTP/2, through a whole node on 127.0.0.1 (h2c with
prior knowledge): per stream (the body timer, the body size limit, a
header line too long, C{Expect: 100-continue} answered only once the head
passed) and per connection (the idle timeout, a drain's GOAWAY), each
stream's refusal leaving the connection's other streams working.
"""
from __future__ import annotations

import json
from typing import Any, TypeVar

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.trial import unittest

from tests.gateway import RunningGateway, start_gateway
from tests.h2.h2client import H2Client, connect
from tests.upstream_server import UpstreamResource, start_upstream
from tests.waiting import until

T = TypeVar("T")

#: How long a test waits for what must happen (a bound against hanging,
#: not a timing assertion).
PATIENCE = 15


async def within(d: Deferred[T]) -> T:
    """
    C{d}'s result, failing the test if it takes more than L{PATIENCE}
    seconds.
    """
    result: T = await d.addTimeout(PATIENCE, reactor)
    return result


def record_informational(client: H2Client) -> dict[int, list[int]]:
    """
    Record the informational (1xx) heads C{client} receives, per stream
    (the test client leaves them out of its answers).
    """
    seen: dict[int, list[int]] = {}
    receive = client.conn.receive_data

    def receive_data(data: bytes) -> Any:
        events = receive(data)
        for event in events:
            if isinstance(event, h2.events.InformationalResponseReceived):
                seen.setdefault(event.stream_id, []).append(int(dict(event.headers)[b":status"]))
        return events

    client.conn.receive_data = receive_data  # type: ignore[method-assign,assignment]
    return seen


def survive_goaway(client: H2Client) -> None:
    """
    Let C{client} read its streams' answers after a GOAWAY (C{h2} closes
    its state machine on any GOAWAY, as if none could follow: a graceful
    GOAWAY lets the streams it names finish).
    """
    machine = client.conn.state_machine
    process_input = machine.process_input

    def process(input_: Any) -> Any:
        if input_ is h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return process_input(input_)

    machine.process_input = process  # type: ignore[method-assign]


class LimitsOverH2Tests(unittest.TestCase):
    """
    The node's limits, applied to each HTTP/2 stream and connection.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.upstream: UpstreamResource
        self.upstream, upstream_port = start_upstream(self)
        self.gw: RunningGateway = await start_gateway(self, settings={
            "proxy_listen": "127.0.0.1:0 http2", "client_body_timeout": "1", "client_max_body_size": "1k",
            "keepalive_timeout": "1", "max_header_line": "1k"})
        answer = await self.gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)
        for name in ("open", "locked"):
            answer = await self.gw.admin("POST", "/services/s/routes", json={"name": name, "paths": [f"/{name}"]})
            self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/routes/locked/plugins", json={"name": "key-auth"})
        self.assertEqual(answer.code, 201, answer.body)

    async def client(self) -> H2Client:
        client = await connect(self.gw.proxy_port)
        self.addCleanup(lambda: client.transport.loseConnection())
        return client

    async def check_goes_on(self, client: H2Client) -> None:
        """
        The connection still serves a stream.
        """
        answer = await within(client.done[client.request(b"GET", b"/open/after")])
        self.assertEqual((answer.status, answer.reset), (200, None))

    async def test_bodyTimeoutPerStream(self) -> None:
        """
        A stream that sends its head and part of its body, then nothing,
        is answered 408 on that stream after C{client_body_timeout}; a
        stream of the same connection that is busy meanwhile is answered,
        and the connection takes new streams.
        """
        client = await self.client()
        stalled = client.request(b"POST", b"/open/upload", headers=[(b"content-length", b"100")],
                                 body=b"x" * 10, end=False)
        slow = client.request(b"GET", b"/open/slow?delay=2")
        answer = await within(client.done[stalled])
        self.assertEqual((answer.status, json.loads(answer.body)), (408, {"message": "Request timeout"}))
        self.assertEqual((await within(client.done[slow])).status, 200)
        self.assertFalse(client.closed.called)
        await self.check_goes_on(client)

    async def test_bodyTooLargeDeclared(self) -> None:
        """
        A stream that declares a body larger than C{client_max_body_size}
        is answered 413 on its head (the service sees nothing); the
        connection goes on.
        """
        client = await self.client()
        stream = client.request(b"POST", b"/open/big", headers=[(b"content-length", b"2000")], end=False)
        answer = await within(client.done[stream])
        self.assertEqual((answer.status, json.loads(answer.body)), (413, {"message": "Request size limit exceeded"}))
        self.assertEqual(self.upstream.seen, [])
        await self.check_goes_on(client)

    async def test_bodyTooLargeStreamed(self) -> None:
        """
        A stream without a declared length whose body goes past
        C{client_max_body_size} is answered 413 without ending the
        connection; a body under the limit gets through.
        """
        client = await self.client()
        small = await within(client.done[client.request(b"POST", b"/open/small", body=b"s" * 1000)])
        self.assertEqual((small.status, json.loads(small.body)["body_length"]), (200, 1000))
        stream = client.request(b"POST", b"/open/big", body=b"x" * 600, end=False)
        client.send(stream, b"y" * 600, end=True)
        answer = await within(client.done[stream])
        self.assertEqual((answer.status, answer.reset), (413, None))
        self.assertEqual(json.loads(answer.body), {"message": "Request size limit exceeded"})
        self.assertEqual([seen["body_length"] for seen in self.upstream.seen if seen["path"] == "/big"
                          and seen["body_length"] > 1024], [])
        await self.check_goes_on(client)

    async def test_headerLineTooLong(self) -> None:
        """
        A header field longer than C{max_header_line} gets 431 on its
        stream (the count limit is in test_downstream); the connection
        goes on.
        """
        client = await self.client()
        answer = await within(client.done[client.request(b"GET", b"/open/x", headers=[(b"x-long", b"v" * 1100)])])
        self.assertEqual(answer.status, 431)
        fits = await within(client.done[client.request(b"GET", b"/open/x", headers=[(b"x-long", b"v" * 900)])])
        self.assertEqual(fits.status, 200)
        self.assertEqual([seen["headers"]["x-long"][0] for seen in self.upstream.seen], ["v" * 900])
        await self.check_goes_on(client)

    async def test_idleClosed(self) -> None:
        """
        An HTTP/2 connection with no stream open is closed after
        C{keepalive_timeout}, with GOAWAY (no error).
        """
        client = await self.client()
        self.assertEqual((await within(client.done[client.request(b"GET", b"/open/x")])).status, 200)
        await within(client.closed)
        self.assertEqual(client.goaway, h2.errors.ErrorCodes.NO_ERROR)

    async def test_pingsAreNotActivity(self) -> None:
        """
        A client that opens no stream and only sends PINGs (a slow client
        holding a connection) is still closed after C{keepalive_timeout}:
        only streams count as activity.
        """
        client = await self.client()
        pending: list[IDelayedCall] = []

        def ping() -> None:
            pending.clear()
            if not client.closed.called:
                client.conn.ping(b"12345678")
                client.transport.write(client.conn.data_to_send())
                pending.append(reactor.callLater(0.2, ping))

        ping()
        try:
            await within(client.closed)
        finally:
            # The next ping may already be scheduled when the connection
            # closes: cancel it, or the reactor is left unclean.
            for call in pending:
                if call.active():
                    call.cancel()
        self.assertEqual(client.goaway, h2.errors.ErrorCodes.NO_ERROR)

    async def test_slowStreamKeepsTheConnection(self) -> None:
        """
        A stream in flight for longer than C{keepalive_timeout} keeps its
        connection open: it is answered whole, and the connection is
        closed only once idle.
        """
        client = await self.client()
        answer = await within(client.done[client.request(b"GET", b"/open/slow?delay=2.5")])
        self.assertEqual((answer.status, answer.reset), (200, None))
        self.assertEqual(json.loads(answer.body)["path"], "/slow")
        self.assertFalse(client.closed.called)
        await within(client.closed)


    async def test_drain(self) -> None:
        """
        A drain (the node stopping) sends GOAWAY to every HTTP/2 client:
        an idle connection is closed at once; one with a stream in flight
        is closed after that stream is answered whole.
        """
        idle = await self.client()
        self.assertEqual((await within(idle.done[idle.request(b"GET", b"/open/x")])).status, 200)
        busy = await self.client()
        survive_goaway(busy)
        stream = busy.request(b"GET", b"/open/slow?delay=2")
        await until(lambda: any(seen["path"] == "/slow" for seen in self.upstream.seen))
        drained = self.gw.service.proxy_site.drain(PATIENCE)
        await within(idle.closed)
        self.assertEqual(idle.goaway, h2.errors.ErrorCodes.NO_ERROR)
        await until(lambda: busy.goaway is not None)
        self.assertEqual(busy.goaway, h2.errors.ErrorCodes.NO_ERROR)
        self.assertFalse(busy.done[stream].called)
        answer = await within(busy.done[stream])
        self.assertEqual((answer.status, answer.reset), (200, None))
        self.assertEqual(json.loads(answer.body)["path"], "/slow")
        await within(busy.closed)
        await within(drained)


    async def test_expectContinue(self) -> None:
        """
        C{Expect: 100-continue} is answered with 100 only once the head
        passed routing and authentication: on a key-auth route without a
        key, a 401 and no 100; on an open route, 100, then the body, then
        the answer.
        """
        client = await self.client()
        informational = record_informational(client)
        expect = [(b"expect", b"100-continue"), (b"content-length", b"5")]
        refused = client.request(b"POST", b"/locked/x", headers=expect, end=False)
        answer = await within(client.done[refused])
        self.assertEqual(answer.status, 401)
        self.assertNotIn(refused, informational)
        accepted = client.request(b"POST", b"/open/x", headers=expect, end=False)
        await until(lambda: informational.get(accepted))
        self.assertEqual(informational[accepted], [100])
        self.assertFalse(client.heads[accepted].called)
        client.send(accepted, b"hello", end=True)
        answer = await within(client.done[accepted])
        self.assertEqual((answer.status, json.loads(answer.body)["body"]), (200, "hello"))
        self.assertEqual([seen["path"] for seen in self.upstream.seen], ["/x"])
