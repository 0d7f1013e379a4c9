"""
Several nodes sharing one PostgreSQL, and a database that goes away:
changes propagate through LISTEN/NOTIFY, the proxy keeps serving through
an outage, admin writes fail fast and clearly, and everything resumes when
the database returns.
"""
from __future__ import annotations

import os
import signal
from typing import Any

import psycopg2
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from tests.gateway import RunningGateway, start_gateway
from tests.postgres import PostgresMixin, create_database
from tests.upstream_server import start_upstream
from tests.waiting import until


async def _served(node: RunningGateway, path: str, attempts: int = 500) -> int:
    """
    Poll C{node}'s proxy until C{path} is routed (at most C{attempts}
    tries, 10 ms apart); the number of tries it took.
    """
    for attempt in range(attempts):
        answer = await node.proxy("GET", path)
        if answer.code == 200:
            return attempt
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"{path} was never served")


class PropagationTests(unittest.TestCase, PostgresMixin):
    timeout = 120

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        dsn = self.dsn = self.database()
        # No periodic version check here: only LISTEN/NOTIFY can propagate.
        quiet = {"config_check_interval": "600"}
        self.a = await start_gateway(self, database=dsn, settings=quiet)
        self.b = await start_gateway(self, database=dsn, settings=quiet)

    async def test_changeOnOneNodeServedByTheOther(self) -> None:
        """
        A service and route created through node A's Admin API are served
        by node B's proxy; a deletion through A stops B serving it.
        """
        answer = await self.a.admin("POST", "/services", json={
            "name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.assertEqual(answer.code, 201)
        answer = await self.a.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        route = answer.json()["id"]
        await _served(self.b, "/p")
        await self.a.admin("DELETE", f"/routes/{route}")
        for _ in range(500):
            if (await self.b.proxy("GET", "/p")).code == 404:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual((await self.b.proxy("GET", "/p")).code, 404)

    async def test_updatesReachOtherNode(self) -> None:
        """
        Updates through node A of a service (its path), a route (its paths)
        and a plugin (its config) are served by node B.
        """
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        route = (await self.a.admin("POST", "/services/s/routes", json={"paths": ["/old"]})).json()
        plugin = (await self.a.admin("POST", "/plugins", json={"name": "header-echo"})).json()
        await _served(self.b, "/old")
        await self.a.admin("PATCH", f"/routes/{route['id']}", json={"paths": ["/new"]})
        await _served(self.b, "/new")
        self.assertEqual((await self.b.proxy("GET", "/old")).code, 404)
        await self.a.admin("PATCH", "/services/s", json={"path": "/base"})
        await self.a.admin("PATCH", f"/plugins/{plugin['id']}", json={"config": {"responseHeader": "X-Changed"}})
        for _ in range(500):
            answer = await self.b.proxy("GET", "/new/x", headers={"X-Request-Echo": "v"})
            if answer.json().get("path") == "/base/x" and answer.header("X-Changed") == "v":
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(answer.json()["path"], "/base/x")
        self.assertEqual(answer.header("X-Changed"), "v")

    async def test_pluginChangeReachesOtherNode(self) -> None:
        """
        A plugin added through node B applies on node A.
        """
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.a.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        await _served(self.b, "/p")
        await self.b.admin("POST", "/plugins", json={"name": "header-echo"})
        for _ in range(500):
            answer = await self.a.proxy("GET", "/p", headers={"X-Request-Echo": "v"})
            if answer.header("X-Response-Echo") == "v":
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(answer.header("X-Response-Echo"), "v")

    async def test_reloadAfterLostNotifications(self) -> None:
        """
        When node B's LISTEN connection is killed, a change made meanwhile
        is still picked up once it reconnects (full reload).
        """
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        dsn = self.b.service.store.dsn
        connection = psycopg2.connect(dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid() AND datname = current_database()")
        connection.close()
        await self.a.admin("POST", "/services/s/routes", json={"paths": ["/late"]})
        await _served(self.b, "/late")

    async def test_periodicCheckCatchesMissedChanges(self) -> None:
        """
        A node that missed a notification catches up through its periodic
        configuration version check.
        """
        c = await start_gateway(self, database=self.dsn, settings={"config_check_interval": "0.2"})
        c.service.live._unsubscribe()
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.a.admin("POST", "/services/s/routes", json={"paths": ["/missed"]})
        await _served(c, "/missed")

    async def test_concurrentCreatesOfOneName(self) -> None:
        """
        The same service name created at once through both nodes: exactly
        one 201, the others 409.
        """
        body = {"name": "contested", "url": f"http://127.0.0.1:{self.upstream_port}"}
        answers = await gatherResults([
            Deferred.fromCoroutine(node.admin("POST", "/services", json=body))
            for node in (self.a, self.b, self.a, self.b, self.a, self.b)])
        codes = sorted(a.code for a in answers)
        self.assertEqual(codes, [201, 409, 409, 409, 409, 409])

    async def test_statusShowsVersionAndReachability(self) -> None:
        """
        GET /status shows the database reachable, and both nodes converge
        on the same configuration version.
        """
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.a.admin("POST", "/services/s/routes", json={"paths": ["/v"]})
        await _served(self.b, "/v")
        status_a = (await self.a.admin("GET", "/status")).json()
        status_b = (await self.b.admin("GET", "/status")).json()
        self.assertTrue(status_a["database"]["reachable"])
        self.assertEqual(self.a.service.live.current.version, self.b.service.live.current.version)
        self.assertIn("server", status_b)


class OutageTests(unittest.TestCase, PostgresMixin):
    timeout = 120

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.server = self.temporary_server()
        self.dsn = create_database(migrated=True, server=self.server)
        self.node = await start_gateway(self, database=self.dsn, settings={"db_query_timeout": "1"})
        await self.node.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.node.admin("POST", "/services/s/routes", json={"paths": ["/p"]})

    async def test_databaseStopped(self) -> None:
        """
        With the database stopped: every proxied request is still served
        from the snapshot, admin writes answer 503 with a JSON message,
        /status says unreachable; when it returns, writes work again
        without a restart and reach the proxy.
        """
        self.server.stop()
        for _ in range(50):
            self.assertEqual((await self.node.proxy("GET", "/p")).code, 200)
        answer = await self.node.admin("POST", "/services", json={"name": "t", "url": "http://127.0.0.1:1"})
        self.assertEqual(answer.code, 503)
        self.assertIn("message", answer.json())
        status = await self.node.admin("GET", "/status")
        self.assertEqual(status.code, 200)
        self.assertFalse(status.json()["database"]["reachable"])
        self.server.start()
        for _ in range(200):
            answer = await self.node.admin("POST", "/services/s/routes", json={"paths": ["/back"]})
            if answer.code == 201:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(answer.code, 201, answer.body)
        await _served(self.node, "/back")

    async def test_databaseFrozen(self) -> None:
        """
        A database that accepts connections but never answers (SIGSTOP):
        admin writes answer 503 instead of hanging; the proxy keeps serving.
        """
        self.server.pause()
        self.addCleanup(self.server.resume)
        answer = await self.node.admin("POST", "/services", json={"name": "t", "url": "http://127.0.0.1:1"})
        self.assertEqual(answer.code, 503)
        self.assertEqual((await self.node.proxy("GET", "/p")).code, 200)
        self.server.resume()
        for _ in range(200):
            answer = await self.node.admin("POST", "/services", json={"name": "t", "url": "http://127.0.0.1:1"})
            if answer.code == 201:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(answer.code, 201, answer.body)


class StartWhileDownTests(unittest.TestCase, PostgresMixin):
    timeout = 120

    async def test_waitsForTheDatabase(self) -> None:
        """
        A gateway started while its database is down waits, retrying, and
        serves once the database is up.
        """
        server = self.temporary_server()
        dsn = create_database(migrated=True, server=server)
        server.stop()
        starting = Deferred.fromCoroutine(start_gateway(self, database=dsn))
        await deferLater(reactor, 1.5, lambda: None)
        self.assertFalse(starting.called)
        server.start()
        node = await starting
        answer = await node.admin("GET", "/services")
        self.assertEqual(answer.code, 200)


class KilledMidWriteTests(unittest.TestCase, PostgresMixin):
    timeout = 120

    async def test_sigkillLeavesNoHalfWrites(self) -> None:
        """
        A node killed with SIGKILL while answering a burst of
        PUT /routes/{r}/service (a new service and the route's link to it,
        one transaction each) leaves every service linked: never a service
        without the route that was to point at it.
        """
        from tests.test_startup import TWISTD, _env, _free_port, _Gateway

        # Large enough that the node cannot answer them all before the
        # client reads the first answer.
        BURST = 160

        dsn = self.database()
        proxy_port, admin_port = _free_port(), _free_port()
        protocol = _Gateway()
        transport = reactor.spawnProcess(
            protocol, TWISTD, [TWISTD, "-n", "--pidfile=", "--logfile=-", "echogate", "--database", dsn,
                               "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                               "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"],
            env=_env(), path=os.getcwd())

        def kill() -> Deferred:
            if not protocol.ended.called:
                transport.signalProcess("KILL")
            return protocol.ended

        self.addCleanup(kill)
        admin = f"http://127.0.0.1:{admin_port}"
        pool = HTTPConnectionPool(reactor, persistent=False)

        async def ready() -> bool:
            if protocol.ended.called:
                self.fail(f"gateway exited early:\n{protocol.output.decode()}")
            try:
                response = await treq.get(f"{admin}/", pool=pool, timeout=2)
                await response.content()
                return response.code == 200
            except Exception:
                return False

        await until(ready, timeout=60, interval=0.1, message="the node's Admin API answers")
        routes = []
        for chunk in range(0, BURST, 20):
            answers = await gatherResults([
                treq.post(f"{admin}/routes", json={"name": f"r{i}", "paths": [f"/r{i}"]}, pool=pool)
                for i in range(chunk, min(chunk + 20, BURST))])
            routes += [(await treq.json_content(answer))["id"] for answer in answers]
        self.assertEqual(len(set(routes)), BURST)
        # The burst is parked behind a lock on the services table until the
        # node's every pool connection waits on it (the requests are all in
        # flight and the client is idle); then the lock goes and the kill is
        # triggered by the burst itself, synchronously in the callback of
        # the first answer: some writes are answered before it, the others
        # are still queued in the node.
        holder = psycopg2.connect(dsn)
        self.addCleanup(holder.close)
        holder.autocommit = False
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE services IN EXCLUSIVE MODE")
        KILL_AT = 1
        answered: list[int] = []

        def count(response: Any) -> Any:
            answered.append(response.code)
            if len(answered) == KILL_AT:
                os.kill(transport.pid, signal.SIGKILL)
            return response

        burst = [treq.put(f"{admin}/routes/{r}/service", json={"url": f"http://127.0.0.1:{9000 + n}"},
                          pool=pool).addCallback(count)
                 for n, r in enumerate(routes)]

        def blocked() -> bool:
            with holder.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                               " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                return cursor.fetchone()[0] >= 4  # PostgresStore's default pool_size

        await until(blocked, timeout=30, message="the node's writes wait on the locked services table")
        self.assertEqual(answered, [])
        holder.rollback()
        await protocol.ended
        # Every request of the burst ends (most fail: the node is gone)
        # before the test does, connection attempts included.
        results = await DeferredList(burst, consumeErrors=True)
        failed = [result for ok, result in results if not ok]
        # Mid-burst: writes were answered before the kill, others never were.
        self.assertGreaterEqual(len(answered), KILL_AT, answered)
        self.assertEqual(set(answered[:KILL_AT]), {200}, answered)
        self.assertGreater(len(failed), 0, f"all {len(routes)} writes were answered before the kill")
        self.assertEqual(len(answered) + len(failed), len(routes))
        connection = psycopg2.connect(dsn)
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM services")
            services = {row[0] for row in cursor.fetchall()}
            cursor.execute("SELECT service_id FROM routes WHERE service_id IS NOT NULL")
            linked = {row[0] for row in cursor.fetchall()}
        connection.close()
        self.assertEqual(services, linked)
