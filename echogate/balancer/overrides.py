"""
The health set through the Admin API, applied to the node's balancers
(L{HealthOverrides}).

C{PUT /upstreams/{u}/targets/{t}/healthy} (or C{unhealthy}, optionally for
one address) stores a row of C{target_health_overrides}; every node reads
the rows with each configuration snapshot. A row is applied once, when it
first appears or when its health or C{updated_at} changed: after that the
address's health is the health checks' again, as in Kong, where the Admin
API sets the health checker's state and the checks go on from there. A row
whose addresses are not known yet (a target name still being resolved) is
applied once they are.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

from echogate.balancer.balancer import Balancer, split_target
from echogate.balancer.balancers import Balancers
from echogate.balancer.health import HEALTHY

__all__ = ["HealthOverrides"]


def _same_ip(one: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(one.strip("[]")) == ipaddress.ip_address(other.strip("[]"))
    except ValueError:
        return one == other


def _apply(balancer: Balancer, row: Mapping[str, Any]) -> int:
    """
    Set the health C{row} stores on C{balancer}'s addresses; how many
    addresses it set.
    """
    healthy = row.get("health") == HEALTHY
    target_id = str((row.get("target") or {}).get("id"))
    address = row.get("address")
    changed = 0
    for target in balancer.targets:
        if str(target.record.get("id")) != target_id:
            continue
        if address is None:
            wanted = None
        else:
            wanted = split_target(str(address))
        for entry in target.entries:
            if wanted is not None and not (_same_ip(entry.address, wanted[0])
                                           and entry.port == wanted[1]):
                continue
            balancer.state.health.set_healthy(entry.address, entry.port, healthy)
            changed += 1
    return changed


class HealthOverrides:
    """
    Applies the stored health overrides to a L{Balancers}, each row once.
    """

    def __init__(self, balancers: Balancers) -> None:
        self._balancers = balancers
        self._rows: list[Mapping[str, Any]] = []
        self._applied: dict[str, tuple[Any, Any]] = {}

    def update(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """
        The rows of a new configuration snapshot (after the balancers were
        updated from it): apply those that are new or changed.
        """
        self._rows = list(rows)
        present = {str(row.get("id")) for row in self._rows}
        for row_id in [key for key in self._applied if key not in present]:
            del self._applied[row_id]
        self.retry()

    def retry(self) -> None:
        """
        Apply the rows not applied yet (their addresses may be known now).
        """
        for row in self._rows:
            row_id = str(row.get("id"))
            stamp = (row.get("updated_at"), row.get("health"))
            if self._applied.get(row_id) == stamp:
                continue
            balancer = self._balancers.get(str((row.get("upstream") or {}).get("id")))
            if balancer is not None and _apply(balancer, row):
                self._applied[row_id] = stamp
