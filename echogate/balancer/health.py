"""
The health of an upstream's addresses: Kong's counters and thresholds, fed
by passive reports of real traffic and by an L{ActiveChecker}'s probes.

Each address has an L{AddressHealth}: one of four states (healthy, mostly
healthy, mostly unhealthy, unhealthy; the first two are picked) and four
counters. A success counts only when the address is not fully healthy, and
clears the failure counters; a failure (an unhealthy HTTP status, a TCP
failure, a timeout) clears the success counter. When a counter reaches its
threshold the address turns fully healthy or unhealthy and the counters
start over; before that, the first contrary report makes it "mostly" so.
A threshold of 0 turns its counter off. Passive checks alone never bring an
address back (no traffic reaches it): only an active check or an explicit
L{UpstreamHealth.set_healthy} does.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.internet import defer, error
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger(namespace="echogate.balancer")

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
DNS_ERROR = "DNS_ERROR"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"

_FULLY_HEALTHY = "healthy"
_MOSTLY_HEALTHY = "mostly_healthy"
_MOSTLY_UNHEALTHY = "mostly_unhealthy"
_FULLY_UNHEALTHY = "unhealthy"

#: What went wrong with a request or a probe.
TCP_FAILURE = "tcp"
TIMEOUT = "timeout"

_ACTIVE_HEALTHY = (200, 302)
_ACTIVE_UNHEALTHY = (429, 404, 500, 501, 502, 503, 504, 505)
_PASSIVE_HEALTHY = (200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                    300, 301, 302, 303, 304, 305, 306, 307, 308)
_PASSIVE_UNHEALTHY = (429, 500, 503)

#: What an active probe is: C{(address, port, http_path, headers, timeout,
#: https)} to a Deferred firing with the response status (C{http_path} is
#: C{None} for a TCP check, whose status is ignored).
Probe = Callable[[str, int, "str | None", Mapping[str, Any], float, bool], "Deferred[int]"]


@attrs.frozen
class Thresholds:
    """
    One check's (active or passive) statuses and counter limits.
    """

    healthy_statuses: frozenset[int]
    successes: int
    unhealthy_statuses: frozenset[int]
    http_failures: int
    tcp_failures: int
    timeouts: int
    kind: str = "http"


def _thresholds(config: Mapping[str, Any] | None, healthy: Iterable[int],
                unhealthy: Iterable[int]) -> Thresholds:
    config = config or {}
    good = config.get("healthy") or {}
    bad = config.get("unhealthy") or {}
    return Thresholds(
        frozenset(good.get("http_statuses") or healthy), int(good.get("successes") or 0),
        frozenset(bad.get("http_statuses") or unhealthy), int(bad.get("http_failures") or 0),
        int(bad.get("tcp_failures") or 0), int(bad.get("timeouts") or 0),
        str(config.get("type") or "http"))


@attrs.frozen
class HealthConfig:
    """
    An upstream's C{healthchecks}, with Kong's defaults filled in.
    """

    active: Thresholds
    passive: Thresholds
    healthy_interval: float = 0.0
    unhealthy_interval: float = 0.0
    timeout: float = 1.0
    concurrency: int = 10
    http_path: str = "/"
    headers: Mapping[str, Any] = attrs.field(factory=dict)
    threshold: float = 0.0

    @classmethod
    def from_record(cls, healthchecks: Mapping[str, Any] | None) -> HealthConfig:
        """
        The configuration of an upstream record's C{healthchecks} field.
        """
        healthchecks = healthchecks or {}
        active = healthchecks.get("active") or {}
        return cls(
            _thresholds(active, _ACTIVE_HEALTHY, _ACTIVE_UNHEALTHY),
            _thresholds(healthchecks.get("passive"), _PASSIVE_HEALTHY, _PASSIVE_UNHEALTHY),
            float((active.get("healthy") or {}).get("interval") or 0),
            float((active.get("unhealthy") or {}).get("interval") or 0),
            float(active.get("timeout") or 1), max(1, int(active.get("concurrency") or 10)),
            str(active.get("http_path") or "/"), dict(active.get("headers") or {}),
            float(healthchecks.get("threshold") or 0))

    @property
    def enabled(self) -> bool:
        """
        Whether any check is on (Kong's rule): an active interval, or a
        passive failure threshold.
        """
        passive = self.passive
        return bool(self.healthy_interval or self.unhealthy_interval or passive.tcp_failures
                    or passive.timeouts or passive.http_failures)


@attrs.define
class AddressHealth:
    """
    One address's health state and counters.
    """

    state: str = _FULLY_HEALTHY
    successes: int = 0
    http_failures: int = 0
    tcp_failures: int = 0
    timeouts: int = 0

    @property
    def healthy(self) -> bool:
        """
        Whether the address may be picked.
        """
        return self.state in (_FULLY_HEALTHY, _MOSTLY_HEALTHY)

    def reset(self, healthy: bool) -> None:
        """
        Make the address fully healthy or unhealthy, counters cleared.
        """
        self.state = _FULLY_HEALTHY if healthy else _FULLY_UNHEALTHY
        self.successes = self.http_failures = self.tcp_failures = self.timeouts = 0

    def count(self, counter: str, limit: int) -> bool:
        """
        Count one report on C{counter} (C{"successes"} or a failure
        counter) against C{limit}; whether the address changed between
        picked and not.
        """
        success = counter == "successes"
        if limit <= 0 or (success and self.state == _FULLY_HEALTHY):
            return False
        if success:
            self.http_failures = self.tcp_failures = self.timeouts = 0
        else:
            self.successes = 0
        value = getattr(self, counter) + 1
        setattr(self, counter, value)
        state = self.state
        if value >= limit:
            state = _FULLY_HEALTHY if success else _FULLY_UNHEALTHY
        elif state == _FULLY_HEALTHY and not success:
            state = _MOSTLY_HEALTHY
        elif state == _FULLY_UNHEALTHY and success:
            state = _MOSTLY_UNHEALTHY
        if state == self.state:
            return False
        was = self.healthy
        if state in (_FULLY_HEALTHY, _FULLY_UNHEALTHY):
            self.reset(state == _FULLY_HEALTHY)
        else:
            self.state = state
        return was != self.healthy


AddressKey = tuple[str, int]


@attrs.define
class UpstreamHealth:
    """
    The health of one upstream's addresses, kept across configuration
    snapshots; C{version} goes up whenever an address turns picked or not.
    """

    config: HealthConfig = attrs.field(factory=lambda: HealthConfig.from_record(None))
    addresses: dict[AddressKey, AddressHealth] = attrs.field(factory=dict)
    version: int = 0

    def of(self, address: str, port: int) -> AddressHealth:
        """
        The health of C{address:port}, healthy when first asked.
        """
        key = (address, port)
        found = self.addresses.get(key)
        if found is None:
            found = self.addresses[key] = AddressHealth()
        return found

    def healthy(self, address: str, port: int) -> bool:
        """
        Whether C{address:port} may be picked.
        """
        found = self.addresses.get((address, port))
        return found is None or found.healthy

    def _count(self, address: str, port: int, counter: str, limit: int) -> None:
        if self.of(address, port).count(counter, limit):
            self.version += 1
            _log.info("upstream address {address}:{port} is now {state}", address=address,
                      port=port, state=HEALTHY if self.healthy(address, port) else UNHEALTHY)

    def report_status(self, address: str, port: int, status: int, active: bool = False) -> None:
        """
        Count a response status (C{0} for none) by the passive or active
        thresholds.
        """
        checks = self.config.active if active else self.config.passive
        if checks.kind == "tcp":
            self._count(address, port, "successes", checks.successes)
        elif status in checks.healthy_statuses:
            self._count(address, port, "successes", checks.successes)
        elif status in checks.unhealthy_statuses or status == 0:
            self._count(address, port, "http_failures", checks.http_failures)

    def report_failure(self, address: str, port: int, kind: str, active: bool = False) -> None:
        """
        Count a TCP failure or a timeout (C{kind}).
        """
        checks = self.config.active if active else self.config.passive
        if kind == TIMEOUT:
            self._count(address, port, "timeouts", checks.timeouts)
        else:
            self._count(address, port, "tcp_failures", checks.tcp_failures)

    def set_healthy(self, address: str, port: int, healthy: bool) -> None:
        """
        The Admin API's override: make C{address:port} fully healthy or
        unhealthy, counters cleared.
        """
        found = self.of(address, port)
        was = found.healthy
        found.reset(healthy)
        if was != healthy:
            self.version += 1

    def forget(self, keep: Iterable[AddressKey]) -> None:
        """
        Drop the state of every address not in C{keep}.
        """
        keep = set(keep)
        for key in [key for key in self.addresses if key not in keep]:
            del self.addresses[key]


class ActiveChecker:
    """
    Probes an upstream's addresses: the healthy ones every
    C{healthy_interval}, the unhealthy ones every C{unhealthy_interval}
    (an interval of 0 turns that check off), at most C{concurrency} at a
    time and one at a time per address, each within C{timeout}.

    @param addresses: the addresses to check, asked on every round.
    """

    def __init__(self, health: UpstreamHealth, probe: Probe, clock: IReactorTime,
                 addresses: Callable[[], Iterable[AddressKey]]) -> None:
        self._health = health
        self._probe = probe
        self._clock = clock
        self._addresses = addresses
        self._config = health.config
        self._gate = DeferredSemaphore(self._config.concurrency)
        self._busy: set[AddressKey] = set()
        self._loops: list[LoopingCall] = []

    def start(self) -> None:
        """
        Start the checks the configuration turns on.
        """
        for interval, healthy in ((self._config.healthy_interval, True),
                                  (self._config.unhealthy_interval, False)):
            if interval > 0:
                loop = LoopingCall(self.check, healthy)
                loop.clock = self._clock
                loop.start(interval, now=False).addErrback(
                    lambda failure: _log.failure("health check round", failure))
                self._loops.append(loop)

    def stop(self) -> None:
        """
        Stop checking (probes under way finish and still count).
        """
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []

    @property
    def running(self) -> bool:
        """
        Whether a check is scheduled.
        """
        return bool(self._loops)

    def check(self, healthy: bool) -> Deferred[None]:
        """
        Probe once every address whose health is C{healthy}; fires when all
        those probes are done.
        """
        probes = []
        for address, port in list(self._addresses()):
            key = (address, port)
            if key in self._busy or self._health.healthy(address, port) != healthy:
                continue
            self._busy.add(key)
            probes.append(self._gate.run(self._check_one, address, port))
        return defer.gatherResults(probes, consumeErrors=True).addCallback(lambda _: None)

    def _check_one(self, address: str, port: int) -> Deferred[None]:
        config = self._config
        kind = config.active.kind
        path = None if kind == "tcp" else config.http_path
        try:
            probing = self._probe(address, port, path, config.headers, config.timeout,
                                  kind == "https")
        except Exception:
            probing = defer.fail(Failure())
        probing.addTimeout(config.timeout, self._clock)

        def answered(status: int) -> None:
            self._health.report_status(address, port, int(status), active=True)

        def failed(failure: Failure) -> None:
            timed_out = failure.check(defer.TimeoutError, error.TimeoutError)
            self._health.report_failure(address, port, TIMEOUT if timed_out else TCP_FAILURE,
                                        active=True)

        def done(_: object) -> None:
            self._busy.discard((address, port))

        return probing.addCallbacks(answered, failed).addBoth(done)
