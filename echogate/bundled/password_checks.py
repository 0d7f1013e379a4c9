"""
Checking passwords against their slow (scrypt) hashes without letting
one client starve the others: what basic-auth runs its checks through.

  - L{FairHashQueue} runs at most C{concurrency} hashes at a time and
    queues the rest, served in turn between client addresses, each
    address's share of the queue bounded (L{TooManyChecks} beyond).
  - L{SuccessCache} remembers recent successful checks for a short time,
    as an HMAC under a key made when the process starts.
  - L{PasswordCheck} puts the two together in front of
    L{echogate.entities.credentials.verify_password}; the node it is bound
    to (L{PasswordCheck.bind}) runs the hashes in its thread pool and tells
    the time.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import itertools
import os
from collections import OrderedDict
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from echogate.entities.credentials import verify_password
from echogate.interfaces import IPluginNode
from echogate.plugin import NodeBinding, NodeNotBound

#: Hashes run at once by default: one per core, at most 4, well below the
#: reactor's thread pool (10 threads, also used for DNS lookups).
DEFAULT_CONCURRENCY = max(1, min(4, os.cpu_count() or 1))

#: Checks one client address may have waiting (besides those running).
DEFAULT_PER_ADDRESS = 8

#: Checks that may wait in all.
DEFAULT_TOTAL = 1024

#: How long (seconds) a successful check is remembered.
DEFAULT_TTL = 60.0

#: How many successful checks are remembered.
DEFAULT_SIZE = 4096


def address_group(address: str) -> str:
    """
    The queue a client address waits in: the address itself for IPv4, its
    /64 network for IPv6 (one host commonly holds a whole /64), the string
    as given when it is not an address.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class TooManyChecks(Exception):
    """
    A client address already has as many checks waiting as it may (or the
    queue is full): the check was not queued.
    """


class _Flow:
    """
    One client address's checks: how many wait and run, and the tag its
    next check starts from.
    """

    __slots__ = ("finish", "waiting", "running")

    def __init__(self, finish: int) -> None:
        self.finish = finish
        self.waiting = 0
        self.running = 0


class _Job:
    __slots__ = ("address", "function", "args", "deferred", "start", "queue")

    def __init__(self, address: str, function: Callable[..., Any], args: tuple, start: int) -> None:
        self.address = address
        self.function = function
        self.args = args
        self.start = start
        self.deferred: Deferred = Deferred(self._cancel)
        self.queue: FairHashQueue | None = None

    def _cancel(self, _: Deferred) -> None:
        if self.queue is not None:
            self.queue._forget(self)


class FairHashQueue:
    """
    Runs slow functions (password hashes) through C{run}, at most
    C{concurrency} at a time. The others wait, and a freed slot goes to
    the client addresses in turn (start-time fair queueing: each check is
    tagged one after its address's previous one, or after the check
    running now if its address has none waiting, and the smallest tag runs
    first), so an address with many guesses waiting delays another address
    by about one hash per slot: with equal checks, this is round-robin
    between addresses. An address may have C{per_address} checks waiting,
    all addresses C{total}; beyond, L{submit} raises L{TooManyChecks} at
    once.

    Cancelling a waiting check's Deferred takes it out of the queue; a
    running one keeps its slot until it ends.

    @param run: calls C{function(*args)} and returns its result or a
        Deferred of it (the node's C{run_in_thread} in the gateway).
    """

    def __init__(self, run: Callable[..., Any], concurrency: int = DEFAULT_CONCURRENCY,
                 per_address: int = DEFAULT_PER_ADDRESS, total: int = DEFAULT_TOTAL) -> None:
        if concurrency < 1 or per_address < 0 or total < 0:
            raise ValueError("concurrency must be at least 1, the queue bounds at least 0")
        self._run = run
        self._concurrency = concurrency
        self._per_address = per_address
        self._total = total
        self._flows: dict[str, _Flow] = {}
        self._heap: list[tuple[int, int, _Job]] = []
        self._order = itertools.count()
        self._virtual = 0
        #: How many run now.
        self.running = 0
        #: How many wait.
        self.waiting = 0

    def submit(self, address: str, function: Callable[..., Any], *args: Any) -> Deferred:
        """
        Run C{function(*args)} as soon as a slot is free and it is
        C{address}'s turn.

        @return: a Deferred firing with its result.
        @raise TooManyChecks: C{address} (or everyone) has too many waiting.
        """
        flow = self._flows.get(address)
        now = self.running < self._concurrency and not self.waiting
        if not now and ((flow is not None and flow.waiting >= self._per_address)
                        or self.waiting >= self._total or self._per_address == 0):
            raise TooManyChecks(address)
        if flow is None:
            flow = self._flows[address] = _Flow(self._virtual)
        start = max(self._virtual, flow.finish)
        flow.finish = start + 1
        job = _Job(address, function, args, start)
        if now:
            self._start(job, flow)
        else:
            heapq.heappush(self._heap, (start, next(self._order), job))
            job.queue = self
            flow.waiting += 1
            self.waiting += 1
        return job.deferred

    def _idle(self, address: str, flow: _Flow) -> None:
        if not flow.waiting and not flow.running:
            del self._flows[address]

    def _forget(self, job: _Job) -> None:
        # The heap entry stays, skipped when it comes up.
        job.queue = None
        flow = self._flows[job.address]
        flow.waiting -= 1
        self.waiting -= 1
        self._idle(job.address, flow)
        if not self.waiting:
            self._heap.clear()

    def _start(self, job: _Job, flow: _Flow) -> None:
        self._virtual = max(self._virtual, job.start)
        flow.running += 1
        self.running += 1
        maybeDeferred(self._run, job.function, *job.args).addBoth(self._done, job)

    def _done(self, result: Any, job: _Job) -> None:
        flow = self._flows[job.address]
        flow.running -= 1
        self.running -= 1
        self._idle(job.address, flow)
        self._next()
        if not job.deferred.called:
            if isinstance(result, Failure):
                job.deferred.errback(result)
            else:
                job.deferred.callback(result)

    def _next(self) -> None:
        while self.running < self._concurrency and self._heap:
            job = heapq.heappop(self._heap)[2]
            if job.queue is None:
                continue  # cancelled while waiting
            job.queue = None
            flow = self._flows[job.address]
            flow.waiting -= 1
            self.waiting -= 1
            self._start(job, flow)


class SuccessCache:
    """
    Recent successful password checks: for each, an HMAC (under a key
    made at start-up) of the credential's id, its stored hash and the
    password, remembered for C{ttl} seconds; at most C{size}, the oldest
    forgotten first. A changed password has a new stored hash, so it
    misses at once; nothing here can give back a password.

    @param clock: tells the time; C{None}: the reactor of the node in
        C{binding}.
    @param binding: the node whose reactor tells the time when there is
        no C{clock}.
    """

    def __init__(self, clock: IReactorTime | None = None, ttl: float = DEFAULT_TTL,
                 size: int = DEFAULT_SIZE, binding: NodeBinding | None = None) -> None:
        self._clock = clock
        self._binding = binding
        self._ttl = ttl
        self._size = size
        self._key = os.urandom(32)
        self._known: OrderedDict[bytes, float] = OrderedDict()

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock.seconds()
        if self._binding is None:
            raise NodeNotBound("a SuccessCache without a clock needs a node")
        return self._binding.node.reactor.seconds()  # type: ignore[no-any-return]

    def key(self, credential_id: str, stored: str, password: str) -> bytes:
        """
        What a check of C{password} against C{stored} (of the credential
        C{credential_id}) is remembered by.
        """
        message = b"\0".join(part.encode("utf-8", "surrogatepass") for part in (credential_id, stored, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        expires = self._known.get(key)
        if expires is None:
            return False
        if expires <= self._now():
            del self._known[key]
            return False
        return True

    def add(self, key: bytes) -> None:
        """
        Remember a success for C{ttl} seconds from now.
        """
        self._known.pop(key, None)
        self._known[key] = self._now() + self._ttl
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def __len__(self) -> int:
        return len(self._known)


class PasswordCheck:
    """
    Checks passwords against stored hashes with C{verify} (by default
    L{echogate.entities.credentials.verify_password}) through a
    L{FairHashQueue}, remembering successes in a L{SuccessCache}.

    @param run: how the queue runs C{verify}; C{None}: the bound node's
        C{run_in_thread} (its thread pool).
    @param clock: the cache's clock; C{None}: the bound node's reactor.
    """

    def __init__(self, run: Callable[..., Any] | None = None, *,
                 verify: Callable[[str, str], bool] = verify_password,
                 concurrency: int = DEFAULT_CONCURRENCY, per_address: int = DEFAULT_PER_ADDRESS,
                 total: int = DEFAULT_TOTAL, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE,
                 clock: IReactorTime | None = None) -> None:
        self._verify = verify
        self._given_run = run
        self.binding = NodeBinding()
        self.queue = FairHashQueue(self._run, concurrency, per_address, total)
        self.cache = SuccessCache(clock, ttl, size, self.binding)

    def bind(self, node: IPluginNode) -> None:
        """
        Run the hashes in C{node}'s thread pool and tell the time by its
        reactor (where C{run} and C{clock} were not given).
        """
        self.binding.bind(node)

    def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._given_run is not None:
            return self._given_run(function, *args)
        return self.binding.node.run_in_thread(function, *args)

    def __call__(self, stored: str, password: str, address: str = "", credential_id: str = "") -> bool | Deferred:
        """
        Whether C{password} matches C{stored}: C{True} at once when
        remembered, otherwise a Deferred firing with it once the check has
        had its turn among C{address}'s neighbours' checks.

        @raise TooManyChecks: C{address} has too many checks waiting.
        """
        key = self.cache.key(credential_id, stored, password)
        if key in self.cache:
            return True

        def remember(matches: bool) -> bool:
            if matches:
                self.cache.add(key)
            return matches

        return self.queue.submit(address_group(address), self._verify, stored, password).addCallback(remember)
