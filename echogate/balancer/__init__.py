"""
Load balancing over an upstream's targets (Kong's upstreams and targets).

The proxy asks L{Balancers.get} for the balancer of the upstream a
service's host names; L{Balancer.pick} gives the L{Peer} (address, port,
target) for one attempt, leaving out the peers already tried, and
L{Balancers.report} (or L{Balancer.report}) tells how it went.

Design, in brief:

  - C{algorithms}: smooth weighted round-robin (earliest deadline first)
    and consistent hashing (weighted rendezvous scores over a ring of
    C{slots}, owners found on first use and kept) in C{roundrobin};
    least-connections and latency (decayed EWMA) in C{leastload}, over a
    lazily updated heap (C{entries}, with the L{Entry} and its L{Load}):
    O(log n) a pick, no scan of all entries but when the owner of a hashed
    slot is excluded. C{hashkey} gives a request's hash key by
    C{hash_on}/C{hash_fallback}.
  - C{health}: Kong's health counters and thresholds per address
    (passive reports and active probes), the Admin API's overrides; a
    version number tells a balancer when to look again.
  - C{dns}: target names resolved in the background with
    C{twisted.names}, cached for their TTL; a pick never waits on DNS.
  - C{balancer}: the L{Balancer} of one upstream, rebuilt from every
    configuration snapshot; health, latency and in-flight counts live in an
    L{UpstreamState} that L{Balancers} (C{balancers}) keeps by upstream id
    and address.

Nothing here blocks or locks: it all runs on the reactor thread, with the
clock injected.
"""
from echogate.balancer.balancer import Balancer, Outcome, Peer, UpstreamState, split_target
from echogate.balancer.balancers import Balancers
from echogate.balancer.dns import Resolution, Resolved, TargetResolver, make_resolver
from echogate.balancer.entries import Entry, Load
from echogate.balancer.hashkey import HashCookie, HashKey, RequestView, hash_key
from echogate.balancer.health import (
    DNS_ERROR,
    HEALTHCHECKS_OFF,
    HEALTHY,
    TCP_FAILURE,
    TIMEOUT,
    UNHEALTHY,
    ActiveChecker,
    HealthConfig,
    UpstreamHealth,
)

__all__ = [
    "ActiveChecker", "Balancer", "Balancers", "DNS_ERROR", "Entry", "HEALTHCHECKS_OFF",
    "HEALTHY", "HashCookie", "HashKey", "HealthConfig", "Load", "Outcome", "Peer",
    "RequestView", "Resolution", "Resolved", "TCP_FAILURE", "TIMEOUT", "TargetResolver",
    "UNHEALTHY", "UpstreamHealth", "UpstreamState", "hash_key", "make_resolver",
    "split_target",
]
