"""
What the Admin API's health endpoints need from the data plane
(L{HealthView}), the answer when there is none (L{HealthchecksOff}), and
the record that C{PUT /upstreams/{u}/targets/{t}/healthy} stores
(L{health_override}).

Kong keeps a target's health in each node's memory and broadcasts a
manual change to every node. echogate stores the change instead, as a row
of C{target_health_overrides}: the write bumps the configuration version
and notifies every node (C{LISTEN/NOTIFY}), whose next configuration
carries it to the balancer. The row is deleted with its target or
upstream.
"""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any, Mapping, Protocol, Sequence

from echogate.balancer import Balancers, split_target

__all__ = [
    "HEALTHY",
    "UNHEALTHY",
    "HEALTHCHECKS_OFF",
    "DNS_ERROR",
    "HealthView",
    "HealthchecksOff",
    "BalancerHealth",
    "health_override",
    "with_health",
    "OVERRIDES",
]

#: The health of a target or address, as Kong reports it.
HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"
#: A target the balancer does not know (Kong: its name did not resolve).
DNS_ERROR = "DNS_ERROR"

#: The stored entity holding manual health changes.
OVERRIDES = "target_health_overrides"

_OVERRIDE_NAMESPACE = uuid.UUID("6a3c4b52-5f0e-4d1b-9a59-0e1f6b3c8d27")


class HealthView(Protocol):
    """
    The data plane's view of its balancers' health, asked by
    C{GET /upstreams/{u}/health}. Either method may return its answer or
    a Deferred firing with it; neither may fail for an upstream it does
    not know (it answers C{None}, or leaves targets out).
    """

    def targets_health(self, upstream: Mapping[str, Any],
                       targets: Sequence[Mapping[str, Any]]) -> Any:
        """
        The health of C{targets} (target records of C{upstream}, one page
        of them).

        @return: (or a Deferred firing with) a mapping from target id to
            C{{"health": ..., "addresses": [{"ip": ..., "port": ...,
            "weight": ..., "health": ...}], ...}}: C{health} one of
            L{HEALTHY}, L{UNHEALTHY} (of the target: healthy when any
            address is), L{HEALTHCHECKS_OFF}; every other key is shown to
            the user as the target's C{data} (Kong also gives C{host},
            C{port}, C{dns}, C{nodeWeight} and C{weight}). A target left
            out is reported as L{DNS_ERROR}; C{None} for an upstream with
            no balancer on this node reports every target so.
        """

    def balancer_health(self, upstream: Mapping[str, Any]) -> Any:
        """
        The health of C{upstream}'s balancer, for
        C{GET /upstreams/{u}/health?balancer_health=1}.

        @return: (or a Deferred firing with) C{{"health": ...,
            "balancer_health": ..., "id": upstream id, "details": ...}}
            as Kong's, or C{None} when this node has no balancer for it.
        """


class HealthchecksOff:
    """
    The L{HealthView} of a node without balancers: every target's health
    is L{HEALTHCHECKS_OFF}, with no addresses, and the balancer healthy
    with health checks off.
    """

    def targets_health(self, upstream: Mapping[str, Any],
                       targets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """
        See L{HealthView.targets_health}.
        """
        return {t["id"]: {"health": HEALTHCHECKS_OFF, "addresses": []} for t in targets}

    def balancer_health(self, upstream: Mapping[str, Any]) -> dict[str, Any]:
        """
        See L{HealthView.balancer_health}.
        """
        return {"health": HEALTHCHECKS_OFF, "balancer_health": HEALTHY,
                "id": upstream["id"], "details": None}


def _dns(host: str, addresses: Sequence[Mapping[str, Any]], port: int) -> str:
    """
    Kong's C{dns} of a target: the kind of record its addresses came from.
    """
    try:
        return "AAAA" if ipaddress.ip_address(host).version == 6 else "A"
    except ValueError:
        pass
    if any(address["port"] != port for address in addresses):
        return "SRV"
    if addresses and all(":" in str(address["ip"]) for address in addresses):
        return "AAAA"
    return "A"


def _total(addresses: Sequence[Mapping[str, Any]], healthy: bool | None = None) -> int | float:
    total = float(sum(address["weight"] for address in addresses
                      if healthy is None or (address["health"] != UNHEALTHY) == healthy))
    return int(total) if total.is_integer() else round(total, 3)


class BalancerHealth:
    """
    The L{HealthView} of a node's L{Balancers}: what this node's balancer
    of an upstream knows of its targets' addresses (resolved, weighted,
    healthy or not), in Kong's shapes.
    """

    def __init__(self, balancers: Balancers) -> None:
        self._balancers = balancers

    def targets_health(self, upstream: Mapping[str, Any],
                       targets: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """
        See L{HealthView.targets_health}: each target's C{health},
        C{addresses}, C{host}, C{port}, C{dns}, C{nodeWeight} and
        C{weight} (C{total}, C{available}, C{unavailable}); a target
        whose name has not resolved is left out (L{DNS_ERROR}).
        """
        balancer = self._balancers.get(str(upstream["id"]))
        if balancer is None:
            return None
        found: dict[str, Any] = {}
        for item in balancer.health_report():
            if item["health"] == DNS_ERROR:
                continue
            addresses = item["data"]["addresses"]
            host, port = split_target(str(item.get("target")))
            total, available = _total(addresses), _total(addresses, True)
            found[str(item["id"])] = {
                "health": item["health"], "addresses": addresses, "host": host, "port": port,
                "dns": _dns(host, addresses, port), "nodeWeight": item.get("weight"),
                "weight": {"total": total, "available": available,
                           "unavailable": total - available}}
        return found

    def balancer_health(self, upstream: Mapping[str, Any]) -> dict[str, Any] | None:
        """
        See L{HealthView.balancer_health}: C{health} is
        L{HEALTHCHECKS_OFF} while no check is on, C{balancer_health}
        whether the healthy addresses carry the upstream's C{threshold}
        percent of the weight.
        """
        balancer = self._balancers.get(str(upstream["id"]))
        if balancer is None:
            return None
        report = balancer.balancer_health()
        verdict = HEALTHY if balancer.healthy else UNHEALTHY
        return {"health": report["balancer_health"], "balancer_health": verdict,
                "id": upstream["id"], "details": report["details"]}


def with_health(target: Mapping[str, Any], found: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    C{target} as C{GET /upstreams/{u}/health} lists it: with C{health}
    and C{data} from what the L{HealthView} C{found} for all targets.
    """
    entry = (found or {}).get(target["id"])
    if not isinstance(entry, Mapping):
        return {**target, "health": DNS_ERROR, "data": None}
    data = {key: value for key, value in entry.items() if key != "health"}
    return {**target, "health": entry.get("health", HEALTHCHECKS_OFF), "data": data}


def health_override(upstream_id: str, target_id: str, address: str | None,
                    healthy: bool, now: int) -> dict[str, Any]:
    """
    The stored record of a manual health change: one per target and
    address (its id is derived from both, so that a later change replaces
    it).

    @param address: the normalised C{ip:port} of one of the target's
        addresses, or C{None} for all of them.
    @param now: the time, integer seconds (C{created_at} and
        C{updated_at}: when the health was last set).
    """
    key = f"{target_id}|{address or ''}"
    return {
        "id": str(uuid.uuid5(_OVERRIDE_NAMESPACE, key)),
        "created_at": now,
        "updated_at": now,
        "upstream": {"id": upstream_id},
        "target": {"id": target_id},
        "address": address,
        "health": HEALTHY if healthy else UNHEALTHY,
        "tags": None,
    }

