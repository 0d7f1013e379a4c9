"""
One upstream's balancer (L{Balancer}): what a request goes to and how it
went, with the L{Peer} it picks, the L{Outcome} it is told and the
L{UpstreamState} it shares with the next snapshot's balancer; the node's
registry of them is L{echogate.balancer.balancers.Balancers}.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from echogate.balancer.algorithms import make_algorithm
from echogate.balancer.dns import TargetResolver, is_ip
from echogate.balancer.entries import Entry, Load
from echogate.balancer.health import (
    DNS_ERROR,
    HEALTHCHECKS_OFF,
    HEALTHY,
    TCP_FAILURE,
    TIMEOUT,
    UNHEALTHY,
    ActiveChecker,
    AddressKey,
    HealthConfig,
    Probe,
    UpstreamHealth,
)
from echogate.balancer.leastload import observe

#: Kong's port for a target given without one.
DEFAULT_PORT = 8000
DEFAULT_WEIGHT = 100
DEFAULT_SLOTS = 10000


def split_target(target: str) -> tuple[str, int]:
    """
    The host and port of a target's C{"host:port"} (C{"[v6]:port"} for
    IPv6; a missing port is 8000).
    """
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if target.count(":") > 1:
        return target, DEFAULT_PORT
    host, colon, port = target.partition(":")
    return host, int(port) if colon else DEFAULT_PORT


class Peer:
    """
    Where one request goes (made for every try: a plain class with slots,
    which attrs' frozen classes are not as cheap to make as).

    @ivar address: the IP address to connect to.
    @ivar port: the port to connect to.
    @ivar target_id: the id of the target the address belongs to.
    @ivar hostname: the target's host name (for the C{Host} header).
    @ivar upstream_id: the id of the upstream.
    """

    __slots__ = ("address", "port", "target_id", "hostname", "upstream_id", "_entry")

    def __init__(self, address: str, port: int, target_id: str, hostname: str, upstream_id: str,
                 entry: Entry) -> None:
        self.address = address
        self.port = port
        self.target_id = target_id
        self.hostname = hostname
        self.upstream_id = upstream_id
        self._entry = entry

    def _key(self) -> tuple[str, int, str, str, str]:
        return (self.address, self.port, self.target_id, self.hostname, self.upstream_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Peer) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Peer(address={self.address!r}, port={self.port!r}, target_id={self.target_id!r}, "
                f"hostname={self.hostname!r}, upstream_id={self.upstream_id!r})")


class Outcome:
    """
    How a request to a L{Peer} went: a response C{status}, or a
    C{failure} (L{TCP_FAILURE} or L{TIMEOUT}); C{latency} in seconds.
    (One per try: a plain class with slots.)
    """

    __slots__ = ("status", "failure", "latency")

    def __init__(self, status: int | None = None, failure: str | None = None,
                 latency: float | None = None) -> None:
        self.status = status
        self.failure = failure
        self.latency = latency

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Outcome)
                and (self.status, self.failure, self.latency) == (other.status, other.failure, other.latency))

    def __hash__(self) -> int:
        return hash((self.status, self.failure, self.latency))

    def __repr__(self) -> str:
        return f"Outcome(status={self.status!r}, failure={self.failure!r}, latency={self.latency!r})"


@attrs.frozen
class _Target:
    record: Mapping[str, Any]
    host: str
    port: int
    weight: float
    entries: tuple[Entry, ...]
    resolved: bool


@attrs.define
class UpstreamState:
    """
    What this node knows of one upstream beyond its configuration: health
    and load by address. L{echogate.balancer.balancers.Balancers} keeps it
    across snapshots by the upstream's id.
    """

    health: UpstreamHealth = attrs.field(factory=UpstreamHealth)
    loads: dict[AddressKey, Load] = attrs.field(factory=dict)

    def load(self, address: str, port: int) -> Load:
        """
        The load of C{address:port}.
        """
        key = (address, port)
        found = self.loads.get(key)
        if found is None:
            found = self.loads[key] = Load()
        return found


class Balancer:
    """
    One upstream's balancer, built from its record and its targets'; what a
    request goes to (L{pick}) and how it went (L{report}).
    """

    def __init__(self, upstream: Mapping[str, Any], targets: Sequence[Mapping[str, Any]], *,
                 clock: IReactorTime, state: UpstreamState | None = None,
                 resolver: TargetResolver | None = None) -> None:
        self.upstream = upstream
        self.upstream_id = str(upstream.get("id"))
        self.state = state if state is not None else UpstreamState()
        self.state.health.config = self.config = HealthConfig.from_record(
            upstream.get("healthchecks"))
        self._clock = clock
        self.targets = [self._target(record, resolver) for record in targets]
        self.entries = [entry for target in self.targets for entry in target.entries]
        self._by_address: dict[AddressKey, list[Entry]] = {}
        for entry in self.entries:
            self._by_address.setdefault((entry.address, entry.port), []).append(entry)
        self._hostnames = {str(target.record.get("id")): target.host for target in self.targets}
        self.algorithm = make_algorithm(
            str(upstream.get("algorithm") or "round-robin"), self.entries,
            slots=int(upstream.get("slots") or DEFAULT_SLOTS), clock=clock)
        #: Whether passive checks count anything (a threshold is set):
        #: else reports skip the health counters.
        passive = self.config.passive
        self._passive = bool(passive.tcp_failures or passive.timeouts or passive.http_failures
                             or passive.successes)
        #: Whether the algorithm reads latencies (only C{latency} does).
        self._latency = str(upstream.get("algorithm") or "") == "latency"
        self._entry_ids = {id(entry) for entry in self.entries}
        self._version = -1
        self._healthy = True
        self._weights = (0.0, 0.0)
        self._checker: ActiveChecker | None = None

    def _target(self, record: Mapping[str, Any], resolver: TargetResolver | None) -> _Target:
        host, port = split_target(str(record.get("target")))
        weight = float(record.get("weight", DEFAULT_WEIGHT) or 0)
        target_id = str(record.get("id"))
        if is_ip(host) or resolver is None:
            entry = Entry(host, port, weight, target_id, self.state.load(host, port))
            return _Target(record, host, port, weight, (entry,), True)
        resolution = resolver.current(host)
        if resolution is None or not resolution.addresses:
            return _Target(record, host, port, weight, (), False)
        entries = []
        for found in resolution.addresses:
            at = found.port or port
            entries.append(Entry(found.address, at, weight * found.share, target_id,
                                 self.state.load(found.address, at)))
        return _Target(record, host, port, weight, tuple(entries), True)

    @property
    def names(self) -> set[str]:
        """
        The host names (not IP literals) of the targets.
        """
        return {target.host for target in self.targets if not is_ip(target.host)}

    def _sync(self) -> None:
        health = self.state.health
        if health.version == self._version:
            return
        self._version = health.version
        total = available = 0.0
        for entry in self.entries:
            up = health.healthy(entry.address, entry.port)
            self.algorithm.set_available(entry, up)
            total += entry.weight
            available += entry.weight if up else 0.0
        self._healthy = total > 0 and available * 100 >= self.config.threshold * total
        self._weights = (total, available)

    @property
    def healthy(self) -> bool:
        """
        Whether the healthy addresses carry at least C{threshold} percent
        of the weight (Kong's rule); an unhealthy balancer picks nothing.
        """
        self._sync()
        return self._healthy

    def pick(self, hash_key: str | None = None, exclude: Collection[Peer] = ()) -> Peer | None:
        """
        The peer for the next request, or C{None} when there is none (no
        healthy address, or the balancer is below its threshold). Every
        peer picked must be L{report}ed once.

        @param hash_key: the request's hash key (consistent hashing).
        @param exclude: peers already tried for this request.
        """
        self._sync()
        if not self._healthy:
            return None
        skip: list[Entry] = []
        if exclude:
            for peer in exclude:
                skip.extend(self._by_address.get((peer.address, peer.port), ()))
        entry = self.algorithm.pick(hash_key, skip)
        if entry is None:
            return None
        self.algorithm.acquire(entry)
        return Peer(entry.address, entry.port, entry.target_id,
                    self._hostnames.get(entry.target_id, entry.address), self.upstream_id,
                    entry=entry)

    def report(self, peer: Peer, outcome: Outcome) -> None:
        """
        How a request to C{peer} went: counted for the passive health
        checks, the latency average and the requests in flight.
        """
        if self._passive:
            health = self.state.health
            if outcome.failure in (TCP_FAILURE, TIMEOUT):
                health.report_failure(peer.address, peer.port, outcome.failure)
            elif outcome.status is not None:
                health.report_status(peer.address, peer.port, outcome.status)
        entry = peer._entry
        load = entry.load
        if outcome.latency is not None and self._latency:
            observe(load, outcome.latency, self._clock.seconds())
        if id(entry) in self._entry_ids:
            self.algorithm.release(entry, None)
        else:
            # Picked from the balancer this one replaced: its load is
            # shared, its place in the algorithm is not.
            load.in_flight = max(0, load.in_flight - 1)

    def set_healthy(self, address: str, port: int | None, healthy: bool) -> int:
        """
        The Admin API's override for an address (C{port} C{None}: every
        address with that IP) or a target's host name (all its addresses);
        how many addresses it changed.
        """
        changed = 0
        for target in self.targets:
            for entry in target.entries:
                if (address in (entry.address, target.host)
                        and port in (None, entry.port, target.port)):
                    self.state.health.set_healthy(entry.address, entry.port, healthy)
                    changed += 1
        return changed

    def start_checks(self, probe: Probe) -> None:
        """
        Start the active health checks the configuration turns on.
        """
        if self._checker is None:
            self._checker = ActiveChecker(
                self.state.health, probe, self._clock,
                lambda: list(self._by_address))
            self._checker.start()

    def stop_checks(self) -> None:
        """
        Stop the active health checks.
        """
        if self._checker is not None:
            self._checker.stop()
            self._checker = None

    def _address_health(self, entry: Entry) -> str:
        up = self.state.health.healthy(entry.address, entry.port)
        if not up:
            return UNHEALTHY
        return HEALTHY if self.config.enabled else HEALTHCHECKS_OFF

    def health_report(self) -> list[dict[str, Any]]:
        """
        Each target's record with its C{health} and its addresses', in the
        shape of Kong's C{GET /upstreams/{upstream}/health}.
        """
        report = []
        for target in self.targets:
            addresses = [{"ip": entry.address, "port": entry.port,
                          "health": self._address_health(entry),
                          "weight": _number(entry.weight)} for entry in target.entries]
            states = {address["health"] for address in addresses}
            if not target.resolved:
                health = DNS_ERROR
            elif HEALTHY in states or (HEALTHCHECKS_OFF in states):
                health = HEALTHY if self.config.enabled else HEALTHCHECKS_OFF
            else:
                health = UNHEALTHY
            item = dict(target.record)
            item["health"] = health
            item["data"] = {"addresses": addresses}
            report.append(item)
        return report

    def balancer_health(self) -> dict[str, Any]:
        """
        The whole upstream's health, as Kong's
        C{GET /upstreams/{upstream}/health?balancer_health=1} gives it.
        """
        healthy = self.healthy
        total, available = self._weights
        if self.config.enabled:
            verdict = HEALTHY if healthy else UNHEALTHY
        else:
            verdict = HEALTHCHECKS_OFF
        return {"balancer_health": verdict, "id": self.upstream_id,
                "details": {"healthy": healthy, "threshold": _number(self.config.threshold),
                            "weight": {"total": _number(total),
                                       "available": _number(available),
                                       "unavailable": _number(total - available)}}}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)
