"""
Streamed uploads end to end (L{echogate.proxy.uploads}): a route with
C{request_buffering: false} sends the body to a real upstream on
127.0.0.1 as it arrives, with back-pressure, never to a file.
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest

from echogate.bundled.key_auth import KeyAuth
from echogate.bundled.request_size_limiting import RequestSizeLimiting
from echogate.bundled.request_transformer import RequestTransformer
from tests.proxy.bodies import Gatewayed, UpstreamServer, post_head, rss, start_upstream, upload
from tests.rawclient import status_of
from tests.waiting import until

STREAMED = {"request_buffering": False}
MB = 1024 * 1024


class StreamedUploadTests(unittest.TestCase):
    timeout = 300

    async def test_largeUploadThroughSlowUpstream(self) -> None:
        """
        A 1 GB upload through an upstream that reads slowly passes
        whole with the gateway's memory flat, and no body file is made.
        """
        server = UpstreamServer(pause=0.002)
        gw = Gatewayed(self, start_upstream(self, server), STREAMED)
        size = 1024 * MB
        before = rss()
        client = await upload(gw.address, post_head(size), size)
        peak = [before]

        def sample() -> bool:
            peak[0] = max(peak[0], rss())
            return client.closed.called or b"\r\n\r\n" in client.data and client.data.endswith(b"%d" % size)

        await until(sample, timeout=240, interval=0.05, message="the upload was answered")
        self.assertEqual(status_of(client.data), 200, client.data[:300])
        self.assertTrue(client.data.endswith(b"%d" % size))
        self.assertEqual(server.received, size)
        self.assertLess(peak[0] - before, 64 * MB)
        self.assertEqual(gw.files, [])

    async def test_contentLengthPassedThrough(self) -> None:
        """
        A body the client sized goes upstream with that Content-Length.
        """
        server = UpstreamServer()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED)
        client = await upload(gw.address, post_head(300_000), 300_000)
        await client.answered
        await until(lambda: client.data.endswith(b"300000"), message="answered")
        self.assertIn(b"content-length: 300000", server.heads[0].lower())
        self.assertNotIn(b"transfer-encoding", server.heads[0].lower())
        self.assertEqual(gw.files, [])

    async def test_chunkedStaysChunked(self) -> None:
        """
        A chunked body goes upstream chunked, whole.
        """
        server = UpstreamServer()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED)
        client = await upload(gw.address, post_head(None), 300_000, chunked=True)
        await until(lambda: client.data.endswith(b"300000"), message="answered")
        self.assertIn(b"transfer-encoding: chunked", server.heads[0].lower())
        self.assertNotIn(b"content-length", server.heads[0].lower())
        self.assertEqual(server.received, 300_000)
        self.assertEqual(gw.files, [])

    async def test_bufferedRouteStillSpools(self) -> None:
        """
        The default route (request_buffering true) reads the body whole
        first, into a file the site made.
        """
        server = UpstreamServer()
        gw = Gatewayed(self, start_upstream(self, server))
        client = await upload(gw.address, post_head(300_000), 300_000)
        await until(lambda: client.data.endswith(b"300000"), message="answered")
        self.assertEqual(gw.files, [300_000])

    async def test_sizeLimitMidStream(self) -> None:
        """
        A chunked body that crosses client_max_body_size mid-stream gets
        413, and both the client's and the upstream's connections close.
        """
        server = UpstreamServer()
        server.on_end = lambda conn: None  # (never answers)
        gw = Gatewayed(self, start_upstream(self, server), STREAMED, max_body_size=MB)
        gone = server.connection_lost()
        client = await upload(gw.address, post_head(None), 8 * MB, chunked=True)
        data = await client.closed
        self.assertEqual(status_of(data), 413, data[:300])
        conn = await gone
        self.assertGreater(conn.size, 0)
        self.assertLessEqual(conn.size, MB)

    async def test_pluginSizeLimitMidStream(self) -> None:
        """
        request-size-limiting on a streamed route counts a chunked body as
        it flows (no buffering): 413 past it, the upstream cut too.
        """
        server = UpstreamServer()
        server.on_end = lambda conn: None
        plugin = RequestSizeLimiting()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED,
                       plugins=[(plugin, {"allowed_payload_size": 1, "size_unit": "megabytes"})])
        gone = server.connection_lost()
        client = await upload(gw.address, post_head(None), 8 * MB, chunked=True)
        data = await client.closed
        self.assertEqual(status_of(data), 413, data[:300])
        conn = await gone
        self.assertGreater(conn.size, 0)
        self.assertEqual(gw.files, [])

    async def test_limitCutsAfterResponseStarted(self) -> None:
        """
        Once the upstream answered (and the head reached the client), a
        body that crosses the limit cuts both connections.
        """
        server = UpstreamServer()

        def early(conn: object) -> bool:
            conn.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")  # type: ignore
            return True

        server.on_head = early
        server.on_end = lambda conn: None
        gw = Gatewayed(self, start_upstream(self, server), STREAMED, max_body_size=MB)
        gone = server.connection_lost()
        client = await upload(gw.address, post_head(None), 8 * MB, chunked=True)
        data = await client.closed
        self.assertEqual(status_of(data), 200)
        self.assertNotIn(b"0\r\n\r\n", data.partition(b"\r\n\r\n")[2])  # never finished
        await gone

    async def test_sentBodyNotReplayed(self) -> None:
        """
        An upstream that resets after reading part of a streamed body
        gets one attempt only: the client gets 502.
        """
        server = UpstreamServer()

        def reset(conn: object, size: int) -> None:
            if conn.size > 200_000:  # type: ignore[attr-defined]
                conn.transport.abortConnection()  # type: ignore[attr-defined]

        server.on_body = reset
        gw = Gatewayed(self, start_upstream(self, server), STREAMED)
        client = await upload(gw.address, post_head(2 * MB), 2 * MB)
        data = await client.closed
        self.assertEqual(status_of(data), 502, data[:300])
        self.assertEqual(len(server.heads), 1)

    async def test_staleConnectionNotReplayedOnceSent(self) -> None:
        """
        A kept-alive connection that closes after taking part of a
        streamed PUT is not retried on a new one (it would be for a
        request whose body was not sent): 502, one PUT seen.
        """
        server = UpstreamServer()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED)
        warm = await upload(gw.address, b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n", 0)
        await until(lambda: status_of(warm.data) == 200, message="warmed")

        def close(conn: object, size: int) -> None:
            if conn.size > 200_000:  # type: ignore[attr-defined]
                conn.transport.loseConnection()  # type: ignore[attr-defined]

        server.on_body = close
        head = post_head(2 * MB).replace(b"POST", b"PUT")
        client = await upload(gw.address, head, 2 * MB)
        data = await client.closed
        self.assertEqual(status_of(data), 502, data[:300])
        self.assertEqual([h.split(b" ")[0] for h in server.heads], [b"GET", b"PUT"])
        self.assertEqual(len(server.connections), 1)

    async def test_connectFailureRetriedWithBodyIntact(self) -> None:
        """
        A connection that could not be made is retried, and the body,
        read only once a connection exists, arrives whole on the retry.
        """
        server = UpstreamServer()
        port = start_upstream(self, server)
        gw = Gatewayed(self, port, STREAMED)
        real = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        attempts: list[int] = []

        class Flaky:
            def connect(self, factory: object) -> Deferred:
                attempts.append(1)
                if len(attempts) == 1:
                    return fail(ConnectionRefusedError())
                return real.connect(factory)  # type: ignore[arg-type]

        gw.client._endpoints[("127.0.0.1", port, 5.0)] = Flaky()
        client = await upload(gw.address, post_head(300_000), 300_000)
        await until(lambda: client.data.endswith(b"300000"), message="answered")
        self.assertEqual(len(attempts), 2)
        self.assertEqual(server.received, 300_000)

    async def test_accessRefusalLeavesBodyUnread(self) -> None:
        """
        key-auth refusing a streamed request answers 401 on the head: the
        upstream is never called and the body never read.
        """
        server = UpstreamServer()
        plugin = KeyAuth()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED, plugins=[(plugin, {})])
        client = await upload(gw.address, post_head(50 * MB), 0)
        data = await client.closed
        self.assertEqual(status_of(data), 401, data[:300])
        self.assertEqual(server.heads, [])
        self.assertEqual(gw.files, [])

    async def test_bodyTransformBuffers(self) -> None:
        """
        request-transformer with a body change on a streamed route
        buffers that request (it reads the body in access): the changed
        body reaches the upstream, with its own Content-Length.
        """
        server = UpstreamServer()
        seen: list[bytes] = []
        server.on_body = lambda conn, size: None
        plugin = RequestTransformer()
        gw = Gatewayed(self, start_upstream(self, server), STREAMED,
                       plugins=[(plugin, {"add": {"body": ["b:2"]}})])
        body = b"a=1"
        head = post_head(len(body), extra=b"Content-Type: application/x-www-form-urlencoded\r\n")
        client = Uploaded = await upload(gw.address, head + body, 0)
        del Uploaded
        await until(lambda: status_of(client.data) is not None, message="answered")
        seen.append(server.heads[0])
        self.assertEqual(status_of(client.data), 200)
        self.assertIn(b"content-length: 7", seen[0].lower())
        self.assertTrue(client.data.endswith(b"7"))
