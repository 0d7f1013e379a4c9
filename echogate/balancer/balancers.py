"""
The node's balancers (L{Balancers}): one L{Balancer} per upstream, rebuilt
from each configuration snapshot, with each upstream's L{UpstreamState}
kept across snapshots, and the DNS refresh and active health checks started
and stopped with the node.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from twisted.internet.interfaces import IReactorTime

from echogate.balancer.balancer import Balancer, Outcome, Peer, UpstreamState
from echogate.balancer.dns import TargetResolver
from echogate.balancer.health import Probe


class Balancers:
    """
    The node's balancers by upstream name and id, rebuilt from each
    configuration snapshot (L{update}) with health, latency and in-flight
    counts kept by upstream id and address.

    @param clock: the clock of health checks, latency and DNS.
    @param resolver: resolves target host names (C{None}: host names are
        used as they are).
    @param probe: the active health check's probe (C{None}: no active
        checks).
    """

    def __init__(self, clock: IReactorTime, resolver: TargetResolver | None = None,
                 probe: Probe | None = None) -> None:
        self._clock = clock
        self._resolver = resolver
        self._probe = probe
        self._states: dict[str, UpstreamState] = {}
        self._balancers: dict[str, Balancer] = {}
        self._by_id: dict[str, Balancer] = {}
        self._records: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] = ([], [])
        self._running = False
        self._updating = False
        self._stale = False
        if resolver is not None:
            resolver.watch(self._name_changed)

    def update(self, upstreams: Iterable[Mapping[str, Any]],
               targets: Iterable[Mapping[str, Any]]) -> None:
        """
        Build the balancers of a configuration snapshot (upstream and
        target records), keeping each upstream's state; call it on the
        reactor thread.
        """
        upstreams, targets = list(upstreams), list(targets)
        self._records = (upstreams, targets)
        self._updating = True
        try:
            self._build(upstreams, targets)
        finally:
            self._updating = False
        if self._stale:
            self._stale = False
            self.update(*self._records)

    def _build(self, upstreams: list[Mapping[str, Any]], targets: list[Mapping[str, Any]]) -> None:
        by_upstream: dict[str, list[Mapping[str, Any]]] = {}
        for target in targets:
            by_upstream.setdefault(str((target.get("upstream") or {}).get("id")), []).append(target)
        old = self._by_id
        balancers: dict[str, Balancer] = {}
        by_id: dict[str, Balancer] = {}
        for upstream in upstreams:
            upstream_id = str(upstream.get("id"))
            state = self._states.setdefault(upstream_id, UpstreamState())
            balancer = Balancer(upstream, by_upstream.get(upstream_id, []), clock=self._clock,
                                state=state, resolver=self._resolver)
            keep = {(entry.address, entry.port) for entry in balancer.entries}
            state.health.forget(keep)
            state.loads = {key: load for key, load in state.loads.items()
                           if key in keep or load.in_flight}
            by_id[upstream_id] = balancer
            balancers[str(upstream.get("name"))] = balancer
        for upstream_id in [key for key in self._states if key not in by_id]:
            del self._states[upstream_id]
        self._balancers, self._by_id = balancers, by_id
        for balancer in old.values():
            balancer.stop_checks()
        if self._running:
            self._start_checks()
        if self._resolver is not None:
            self._resolver.forget(sorted(set().union(*(b.names for b in by_id.values()))))

    def _name_changed(self, name: str) -> None:
        if self._updating:
            self._stale = True
        elif any(name in balancer.names for balancer in self._by_id.values()):
            self.update(*self._records)

    def get(self, name: str) -> Balancer | None:
        """
        The balancer of the upstream called C{name} (or with that id), or
        C{None}: then the service's host is not an upstream.
        """
        found = self._balancers.get(name)
        if found is None and self._by_id:
            found = self._by_id.get(name)
        return found

    def items(self) -> list[tuple[str, Balancer]]:
        """
        Every upstream's name and balancer, by name.
        """
        return sorted(self._balancers.items(), key=lambda item: item[0])

    def report(self, peer: Peer, outcome: Outcome) -> None:
        """
        How a request to C{peer} went, to the current balancer of its
        upstream (even when the configuration changed since the pick).
        """
        balancer = self._by_id.get(peer.upstream_id)
        if balancer is not None:
            balancer.report(peer, outcome)
        else:
            load = peer._entry.load
            load.in_flight = max(0, load.in_flight - 1)

    def _start_checks(self) -> None:
        if self._probe is not None:
            for balancer in self._by_id.values():
                balancer.start_checks(self._probe)

    def start(self) -> None:
        """
        Start the DNS refresh and the active health checks.
        """
        self._running = True
        if self._resolver is not None:
            self._resolver.start()
        self._start_checks()

    def stop(self) -> None:
        """
        Stop the DNS refresh and the active health checks.
        """
        self._running = False
        if self._resolver is not None:
            self._resolver.stop()
        for balancer in self._by_id.values():
            balancer.stop_checks()
