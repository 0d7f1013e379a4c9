"""
Tests for what keeps basic-auth's password checks from telling usernames
apart or being hogged by one client: the dummy hash for unknown users,
L{echogate.bundled.password_checks}' fair queue, its bounds and its cache
of successes; in memory, through L{GatewayHarness}, and through a running
gateway on real sockets.
"""
from __future__ import annotations

import base64
import random
import re
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.basic_auth import BUSY, BasicAuth
from echogate.bundled.password_checks import FairHashQueue, PasswordCheck, SuccessCache, TooManyChecks, address_group
from echogate.entities.credentials import dummy_hash, hash_password, verify_password
from echogate.registry import load_plugins
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase, basic
from tests.entities.test_credentials import ALICE, people
from tests.gateway import start_gateway
from tests.rawclient import connect, status_of
from tests.upstream_server import start_upstream

USERS = {"basicauth_credentials": [{"consumer": {"id": ALICE}, "username": "alice", "password": "wonderland"}]}
_COST = re.compile(r"^\$scrypt\$ln=\d+,r=\d+,p=\d+\$")


def cost(stored: str) -> str:
    """
    The algorithm and cost parameters of a stored hash (C{$scrypt$ln=14,r=8,p=1$}).
    """
    match = _COST.match(stored)
    assert match is not None, stored
    return match.group(0)


def call_now(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


class Verifier:
    """
    A stand-in for C{verify_password} that records the hashes it is asked
    to check, and checks them for real.
    """

    def __init__(self) -> None:
        self.checked: list[str] = []

    def __call__(self, stored: str, password: str) -> bool:
        self.checked.append(stored)
        return verify_password(stored, password)


class ManualRunner:
    """
    A runner whose jobs end when the test says: records the order jobs
    start in and the most that ran at once.
    """

    def __init__(self) -> None:
        self.started: list[tuple] = []
        self.pending: list[Deferred] = []
        self.most = 0

    def __call__(self, function: Callable[..., Any], *args: Any) -> Deferred:
        self.started.append(args)
        d: Deferred = Deferred()
        d.addCallback(lambda _: function(*args))
        self.pending.append(d)
        self.most = max(self.most, len(self.pending))
        return d

    def finish(self, index: int = 0) -> None:
        self.pending.pop(index).callback(None)


class DummyHashTests(SynchronousTestCase):
    """
    L{dummy_hash}: a hash no password matches, of the real hashes' cost.
    """

    def test_sameCost(self) -> None:
        """
        It has the algorithm and cost parameters of L{hash_password}'s
        hashes, and the same shape.
        """
        real = hash_password("x")
        dummy = dummy_hash()
        self.assertEqual(cost(dummy), cost(real))
        self.assertEqual((len(dummy), dummy.count("$")), (len(real), real.count("$")))

    def test_matchesNothing(self) -> None:
        """
        No password matches it, and each one is different.
        """
        dummy = dummy_hash()
        for password in ["", "x", "wonderland"]:
            self.assertFalse(verify_password(dummy, password))
        self.assertNotEqual(dummy, dummy_hash())


class EnumerationTests(SynchronousTestCase):
    """
    An unknown username costs the same hash as a wrong password, and is
    answered the same.
    """

    def setUp(self) -> None:
        self.verifier = Verifier()
        plugin = BasicAuth(check=PasswordCheck(run=call_now, verify=self.verifier, clock=Clock()))
        self.harness = GatewayHarness([plugin], [("basic-auth", {})], entities=people(USERS))

    def request(self, headers: dict[str, str]) -> HarnessResponse:
        return self.successResultOf(self.harness.request("GET", "/", headers=headers))

    def assertOneHash(self, headers: dict[str, str]) -> HarnessResponse:
        """
        The request is refused after exactly one hash of the real cost.
        """
        self.verifier.checked.clear()
        response = self.request(headers)
        self.assertEqual(response.status, 401)
        self.assertEqual([cost(stored) for stored in self.verifier.checked], [cost(hash_password("x"))])
        return response

    def test_unknownUser(self) -> None:
        """
        C{Authorization: Basic base64(carol:guess)}, carol unknown: one
        scrypt of the stored hashes' cost.
        """
        self.assertOneHash({"Authorization": basic("carol", "guess")})

    def test_wrongPassword(self) -> None:
        """
        C{Authorization: Basic base64(alice:guess)}: one scrypt, of the
        same cost.
        """
        self.assertOneHash({"Authorization": basic("alice", "guess")})

    def test_unknownUserInProxyAuthorization(self) -> None:
        """
        An unknown username in C{Proxy-Authorization} alone is hashed too.
        """
        self.assertOneHash({"Proxy-Authorization": basic("carol", "guess")})

    def test_sameAnswer(self) -> None:
        """
        Unknown user and wrong password get the same status, headers (but
        the Date) and body.
        """
        unknown = self.assertOneHash({"Authorization": basic("carol", "guess")})
        wrong = self.assertOneHash({"Authorization": basic("alice", "guess")})
        timeless = [{name: values for name, values in response.headers.items() if name != "date"}
                    for response in (unknown, wrong)]
        self.assertEqual((unknown.status, timeless[0], unknown.body), (wrong.status, timeless[1], wrong.body))

    def test_knownPasswordOfDummy(self) -> None:
        """
        Even a check of the dummy hash that said yes would not let an
        unknown user in.
        """
        plugin = BasicAuth(check=lambda stored, password, address, credential: True)
        harness = GatewayHarness([plugin], [("basic-auth", {})], entities=people(USERS))
        response = self.successResultOf(harness.request("GET", "/", headers={"Authorization": basic("carol", "x")}))
        self.assertEqual(response.status, 401)

    def test_noUsernameNoHash(self) -> None:
        """
        A header with no username in it is refused without hashing.
        """
        self.verifier.checked.clear()
        self.assertEqual(self.request({"Authorization": "Basic !!"}).status, 401)
        self.assertEqual(self.verifier.checked, [])


class FairHashQueueTests(SynchronousTestCase):
    """
    L{FairHashQueue}: a cap on hashes at once, round-robin between client
    addresses, bounded waiting.
    """

    def setUp(self) -> None:
        self.runner = ManualRunner()

    def test_secondAddressServedSoon(self) -> None:
        """
        With ten guesses from one address queued, a second address's check
        runs second, before the first address's second guess.
        """
        queue = FairHashQueue(self.runner, concurrency=1, per_address=16)
        guesses = [queue.submit("192.0.2.66", lambda n: n, ("guess", n)) for n in range(10)]
        login = queue.submit("198.51.100.7", lambda n: n, ("login", 0))
        while self.runner.pending:
            self.runner.finish()
        self.assertEqual(self.runner.started[:3], [(("guess", 0),), (("login", 0),), (("guess", 1),)])
        self.assertEqual(self.successResultOf(login), ("login", 0))
        self.assertEqual([self.successResultOf(d) for d in guesses], [("guess", n) for n in range(10)])

    def test_roundRobin(self) -> None:
        """
        Three addresses with queued checks take turns.
        """
        queue = FairHashQueue(self.runner, concurrency=1, per_address=16)
        queue.submit("first", str, "x")
        for address in ("a", "b", "c"):
            for n in range(3):
                queue.submit(address, str, f"{address}{n}")
        while self.runner.pending:
            self.runner.finish()
        self.assertEqual([args[0] for args in self.runner.started],
                         ["x", "a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"])

    def test_capNeverExceeded(self) -> None:
        """
        However many addresses submit, and in whatever order checks end,
        no more than C{concurrency} run at once, and every one runs.
        """
        shuffle = random.Random(28)
        queue = FairHashQueue(self.runner, concurrency=3, per_address=50)
        results = [queue.submit(f"10.0.0.{n % 7}", int, n) for n in range(60)]
        while self.runner.pending:
            self.assertLessEqual(queue.running, 3)
            self.runner.finish(shuffle.randrange(len(self.runner.pending)))
            if shuffle.random() < 0.3:
                results.append(queue.submit("10.0.1.1", int, len(results)))
        self.assertEqual(self.runner.most, 3)
        self.assertEqual([self.successResultOf(d) for d in results], list(range(len(results))))
        self.assertEqual((queue.running, queue.waiting), (0, 0))

    def test_perAddressBound(self) -> None:
        """
        Beyond C{per_address} waiting, an address's next check is refused
        at once; other addresses are still queued.
        """
        queue = FairHashQueue(self.runner, concurrency=1, per_address=2)
        for n in range(3):
            queue.submit("192.0.2.66", int, n)
        self.assertRaises(TooManyChecks, queue.submit, "192.0.2.66", int, 3)
        queue.submit("198.51.100.7", int, 4)
        self.assertEqual((queue.running, queue.waiting), (1, 3))

    def test_totalBound(self) -> None:
        """
        Beyond C{total} waiting in all, any address is refused.
        """
        queue = FairHashQueue(self.runner, concurrency=1, per_address=5, total=2)
        for address in ("a", "b", "c"):
            queue.submit(address, int, 0)
        self.assertRaises(TooManyChecks, queue.submit, "d", int, 0)

    def test_cancelWaiting(self) -> None:
        """
        A cancelled waiting check leaves the queue and never runs.
        """
        queue = FairHashQueue(self.runner, concurrency=1)
        queue.submit("a", int, 1)
        waiting = queue.submit("b", int, 2)
        later = queue.submit("c", int, 3)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(queue.waiting, 1)
        while self.runner.pending:
            self.runner.finish()
        self.assertEqual(self.runner.started, [(1,), (3,)])
        self.assertEqual(self.successResultOf(later), 3)

    def test_cancelRunning(self) -> None:
        """
        A cancelled running check keeps its slot until it ends.
        """
        queue = FairHashQueue(self.runner, concurrency=1)
        running = queue.submit("a", int, 1)
        queue.submit("b", int, 2)
        running.cancel()
        self.failureResultOf(running, CancelledError)
        self.assertEqual((queue.running, len(self.runner.started)), (1, 1))
        self.runner.finish()
        self.assertEqual(self.runner.started, [(1,), (2,)])

    def test_failure(self) -> None:
        """
        A check that fails fails its Deferred, and frees its slot.
        """
        queue = FairHashQueue(self.runner, concurrency=1)
        failed = queue.submit("a", int, "not a number")
        after = queue.submit("a", int, 2)
        self.runner.finish()
        self.failureResultOf(failed, ValueError)
        self.runner.finish()
        self.assertEqual(self.successResultOf(after), 2)

    def test_badBounds(self) -> None:
        """
        A concurrency below 1 is refused.
        """
        self.assertRaises(ValueError, FairHashQueue, self.runner, 0)


class AddressGroupTests(SynchronousTestCase):
    """
    L{address_group}: which queue a client address waits in.
    """

    def test_ipv4(self) -> None:
        """
        IPv4 addresses (mapped ones too) each have their own queue.
        """
        self.assertEqual(address_group("192.0.2.1"), "192.0.2.1")
        self.assertEqual(address_group("::ffff:192.0.2.1"), "192.0.2.1")

    def test_ipv6(self) -> None:
        """
        The addresses of one IPv6 /64 share a queue.
        """
        self.assertEqual(address_group("2001:db8::1"), address_group("2001:db8::ffff:1"))
        self.assertNotEqual(address_group("2001:db8::1"), address_group("2001:db8:0:1::1"))

    def test_other(self) -> None:
        """
        What is not an address is its own queue.
        """
        self.assertEqual(address_group("unix"), "unix")


class SuccessCacheTests(SynchronousTestCase):
    """
    L{PasswordCheck} remembers successes for a while in its
    L{SuccessCache}, by credential, stored hash and password.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.verifier = Verifier()
        self.stored = hash_password("right", log_n=4)

    def check(self, **kw: Any) -> PasswordCheck:
        return PasswordCheck(run=call_now, verify=self.verifier, clock=self.clock, ttl=60.0, **kw)

    def test_hitSkipsHash(self) -> None:
        """
        A success checked again within the TTL answers C{True} at once,
        without hashing.
        """
        check = self.check()
        self.assertTrue(self.successResultOf(check(self.stored, "right", "192.0.2.1", "id-1")))
        self.clock.advance(59)
        self.assertIs(check(self.stored, "right", "198.51.100.7", "id-1"), True)
        self.assertEqual(len(self.verifier.checked), 1)

    def test_changedHashMisses(self) -> None:
        """
        A changed stored hash (a new password, the same again) is hashed
        afresh.
        """
        check = self.check()
        self.successResultOf(check(self.stored, "right", "a", "id-1"))
        other = hash_password("right", log_n=4)
        self.assertTrue(self.successResultOf(check(other, "right", "a", "id-1")))
        self.assertEqual(self.verifier.checked, [self.stored, other])

    def test_otherCredentialMisses(self) -> None:
        """
        The same hash and password under another credential id is hashed
        afresh.
        """
        check = self.check()
        self.successResultOf(check(self.stored, "right", "a", "id-1"))
        self.successResultOf(check(self.stored, "right", "a", "id-2"))
        self.assertEqual(len(self.verifier.checked), 2)

    def test_expires(self) -> None:
        """
        After the TTL, the success is hashed again.
        """
        check = self.check()
        self.successResultOf(check(self.stored, "right", "a", "id-1"))
        self.clock.advance(60)
        self.assertTrue(self.successResultOf(check(self.stored, "right", "a", "id-1")))
        self.assertEqual(len(self.verifier.checked), 2)

    def test_failuresNotRemembered(self) -> None:
        """
        A wrong password is hashed every time.
        """
        check = self.check()
        for _ in range(2):
            self.assertFalse(self.successResultOf(check(self.stored, "wrong", "a", "id-1")))
        self.assertEqual(len(self.verifier.checked), 2)

    def test_bounded(self) -> None:
        """
        At most C{size} successes are remembered, the oldest forgotten.
        """
        check = self.check(size=2)
        hashes = [hash_password(str(n), log_n=4) for n in range(3)]
        for n, stored in enumerate(hashes):
            self.successResultOf(check(stored, str(n), "a", str(n)))
        self.assertEqual(len(check.cache), 2)
        self.assertIs(check(hashes[2], "2", "a", "2"), True)
        self.assertIsInstance(check(hashes[0], "0", "a", "0"), Deferred)

    def test_keyed(self) -> None:
        """
        The cache's keys are HMACs under a key of its own: two caches
        remember the same success differently.
        """
        self.assertNotEqual(SuccessCache(self.clock).key("id", "h", "p"), SuccessCache(self.clock).key("id", "h", "p"))


class BusyTests(SynchronousTestCase):
    """
    basic-auth answers 429 at once to an address with too many checks
    waiting.
    """

    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.check = PasswordCheck(run=self.runner, concurrency=1, per_address=1, clock=Clock(),
                                   verify=lambda stored, password: False)
        self.harness = GatewayHarness([BasicAuth(check=self.check)], [("basic-auth", {})], entities=people(USERS))

    def test_tooMany(self) -> None:
        """
        A third concurrent C{Authorization: Basic base64(alice:guess)}
        from one address (one hashing, one waiting) gets 429 with
        Retry-After; another address is still queued.
        """
        guess = {"Authorization": basic("alice", "guess")}
        first = self.harness.request("GET", "/", headers=guess, client_ip="192.0.2.66")
        second = self.harness.request("GET", "/", headers=guess, client_ip="192.0.2.66")
        third = self.successResultOf(self.harness.request("GET", "/", headers=guess, client_ip="192.0.2.66"))
        self.assertEqual((third.status, third.json(), third.header("retry-after")), (429, {"message": BUSY}, "1"))
        other = self.harness.request("GET", "/", headers={"Authorization": basic("carol", "x")},
                                     client_ip="198.51.100.7")
        while self.runner.pending:
            self.runner.finish()
        for response in (first, second, other):
            self.assertEqual(self.successResultOf(response).status, 401)


def raw_login(username: str, password: str, client: str) -> bytes:
    """
    The raw request a client at C{client} (named by the trusted peer in
    X-Real-IP and X-Forwarded-For) sends to log in.
    """
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return (f"GET /mock/request HTTP/1.1\r\nHost: mockbin.org\r\nX-Real-IP: {client}\r\n"
            f"X-Forwarded-For: {client}\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n").encode()


def untimed(response: bytes) -> bytes:
    """
    C{response} without the lines that tell the time: Date and the
    latency headers (which tell that both took the hash).
    """
    return b"\r\n".join(line for line in response.split(b"\r\n")
                         if not line.lower().startswith(b"date:") and b"-latency:" not in line.lower())


class BasicAuthSocketTests(AuthTestCase):
    """
    basic-auth's checks in a running gateway over real sockets, with a
    L{PasswordCheck} running one hash at a time in the thread pool.
    """

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.verifier = Verifier()
        self.check = PasswordCheck(concurrency=1, per_address=16, verify=self.verifier)
        plugins = {**load_plugins("bundled"), "basic-auth": BasicAuth(check=self.check)}
        self.gw = await start_gateway(self, plugin_objects=plugins, settings={"trusted_ips": "127.0.0.1"})
        await self.admin_ok("POST", "/services", 201, json={
            "name": "mock-service", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.admin_ok("POST", "/services/mock-service/routes", 201, json={
            "name": "mock", "hosts": ["mockbin.org"], "paths": ["/mock"]})
        await self.consumer("alice")
        await self.admin_ok("POST", "/consumers/alice/basic-auth", 201,
                            data={"username": "alice", "password": "wonderland"})
        await self.consumer("bob")
        await self.admin_ok("POST", "/consumers/bob/basic-auth", 201, data={"username": "bob", "password": "builder"})
        await self.plugin("basic-auth")

    async def send(self, request: bytes) -> Any:
        client = await connect(self.gw.proxy_port)
        self.addCleanup(client.transport.abortConnection)
        client.send(request)
        return client

    async def test_unknownUserAnsweredAlike(self) -> None:
        """
        Over the wire, an unknown username and a wrong password each take
        one hash of the same cost and get the same 401, byte for byte but
        the time (Date, latency).
        """
        unknown = await (await self.send(raw_login("carol", "guess", "192.0.2.66"))).closed
        hashed = list(self.verifier.checked)
        wrong = await (await self.send(raw_login("alice", "guess", "192.0.2.66"))).closed
        self.assertEqual(status_of(unknown), 401)
        self.assertEqual(untimed(unknown), untimed(wrong))
        self.assertEqual([cost(stored) for stored in hashed], [cost(self.verifier.checked[-1])])
        self.assertEqual(len(self.verifier.checked), 2)

    async def test_guessesDoNotStarveOthers(self) -> None:
        """
        With sixteen guesses at alice's password from one address waiting,
        bob's login from another address succeeds while most of them
        still wait.
        """
        guesses = [await self.send(raw_login("alice", f"guess-{n}", "192.0.2.66")) for n in range(16)]
        while self.check.queue.waiting < 15:
            await deferLater(reactor, 0.01, lambda: None)
        login = await (await self.send(raw_login("bob", "builder", "198.51.100.7"))).response()
        self.assertEqual(status_of(login), 200, login)
        answered = sum(1 for guess in guesses if guess.data)
        self.assertLess(answered, 8)
        for guess in guesses:
            self.assertEqual(status_of(await guess.closed), 401)
