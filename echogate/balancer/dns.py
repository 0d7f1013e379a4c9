"""
Target names to addresses, asynchronously, with C{twisted.names}.

L{TargetResolver} answers from its cache at once (L{TargetResolver.current})
and never waits: a name asked for the first time is looked up in the
background, and its watchers are told when the answer arrives or changes.
A name is looked up as SRV first (only the records of the lowest priority
count; each brings its own port, its weight splits the target's), then as
A and AAAA together. Answers are kept for their smallest TTL (at least
C{min_ttl}); a L{LoopingCall} on the injected clock looks again those that
expire. A name with no records, or that does not exist, resolves to no
addresses (the balancer's C{DNS_ERROR}) and is asked again after
C{error_ttl}; when the servers fail to answer, the last good answer stays.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.names import client, dns, error, hosts, resolve
from twisted.names.common import ResolverBase
from twisted.python.failure import Failure

_log = Logger(namespace="echogate.balancer")


def is_ip(host: str) -> bool:
    """
    Whether C{host} is an IPv4 or IPv6 literal (brackets allowed).
    """
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@attrs.frozen
class Resolved:
    """
    One address of a name.

    @ivar address: the IP address.
    @ivar port: the port an SRV record gives, else C{None} (the target's).
    @ivar share: this address's share of the target's weight (all shares
        of a name add up to 1).
    """

    address: str
    port: int | None
    share: float


@attrs.frozen
class Resolution:
    """
    What a name resolves to now: C{addresses} is empty when it does not
    resolve (C{error} says why).
    """

    addresses: tuple[Resolved, ...]
    expires: float
    error: str | None = None


class _ReadOnce(client.Resolver):
    """
    The system's name servers, read from C{resolv.conf} once, at start-up
    (as Kong does): Twisted's resolver would set a timer to read it again
    every minute.
    """

    def maybeParseConfig(self) -> None:
        if self.resolv is None:
            return
        try:
            conf = self._openFile(self.resolv)
        except OSError:
            self.parseConfig(())  # a missing resolv.conf is an empty one
            return
        with conf:
            self.parseConfig(conf)


def make_resolver(servers: Sequence[str] = (), hosts_file: str | None = None,
                  reactor: Any = None, timeout: Sequence[int] = (1, 3)) -> ResolverBase:
    """
    A C{twisted.names} resolver from settings: the hosts file first (like
    Kong's C{dns_hostsfile}), then the C{host:port} name servers (Kong's
    C{dns_resolver}; none means those of C{/etc/resolv.conf}, read once).
    """
    chain: list[Any] = []
    if hosts_file:
        chain.append(hosts.Resolver(file=hosts_file.encode()))
    addresses = []
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host:
            host, port = port, "53"
        addresses.append((host.strip("[]"), int(port)))
    if addresses:
        chain.append(client.Resolver(servers=addresses, reactor=reactor, timeout=tuple(timeout)))
    else:
        chain.append(_ReadOnce(resolv="/etc/resolv.conf", reactor=reactor, timeout=tuple(timeout)))
    return resolve.ResolverChain(chain)


def _split(records: list[tuple[str, int | None, float]]) -> tuple[Resolved, ...]:
    total = sum(weight for _, _, weight in records)
    if total <= 0:
        return tuple(Resolved(address, port, 1 / len(records)) for address, port, _ in records)
    return tuple(Resolved(address, port, weight / total) for address, port, weight in records)


class TargetResolver:
    """
    A cache of target names' addresses, refreshed in the background.

    @param resolver: the C{twisted.names} resolver to ask.
    @param clock: the clock of the TTLs and of the refresh loop.
    @param refresh_interval: how often to look for expired names.
    @param min_ttl: the least time an answer is kept.
    @param error_ttl: how soon a name that did not resolve is asked again.
    """

    def __init__(self, resolver: Any, clock: IReactorTime, *, refresh_interval: float = 1.0,
                 min_ttl: float = 1.0, error_ttl: float = 1.0) -> None:
        self._resolver = resolver
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._min_ttl = min_ttl
        self._error_ttl = error_ttl
        self._cache: dict[str, Resolution] = {}
        self._pending: dict[str, Deferred[Resolution]] = {}
        self._waiting: dict[str, list[Deferred[Resolution]]] = {}
        self._watchers: list[Callable[[str], None]] = []
        self._loop: LoopingCall | None = None

    def watch(self, callback: Callable[[str], None]) -> None:
        """
        Call C{callback(name)} whenever C{name}'s addresses change.
        """
        self._watchers.append(callback)

    def current(self, name: str) -> Resolution | None:
        """
        What C{name} resolves to now, or C{None} while its first look-up
        is under way (this starts it).
        """
        found = self._cache.get(name)
        if found is None and name not in self._pending:
            self.lookup(name)
            found = self._cache.get(name)
        return found

    def lookup(self, name: str) -> Deferred[Resolution]:
        """
        Look C{name} up now; fires with its new L{Resolution}.
        """
        pending = self._pending.get(name)
        if pending is not None:
            waiting: Deferred[Resolution] = Deferred()
            self._waiting.setdefault(name, []).append(waiting)
            return waiting
        looking = self._resolve(name).addBoth(self._resolved, name)
        if not looking.called:
            self._pending[name] = looking
        return looking

    def _resolved(self, result: Resolution | Failure, name: str) -> Resolution:
        self._pending.pop(name, None)
        waiting = self._waiting.pop(name, [])
        before = self._cache.get(name)
        now = self._clock.seconds()
        if isinstance(result, Failure):
            if before is not None and before.addresses and not result.check(_NoRecords):
                _log.warn("DNS look-up of {name} failed, keeping its addresses: {why}",
                          name=name, why=result.getErrorMessage())
                result = attrs.evolve(before, expires=now + self._error_ttl)
            else:
                result = Resolution((), now + self._error_ttl, result.getErrorMessage())
        self._cache[name] = result
        if before is None or before.addresses != result.addresses:
            for watcher in list(self._watchers):
                watcher(name)
        for waiter in waiting:
            waiter.callback(result)
        return result

    def _ttl(self, ttl: int) -> float:
        return self._clock.seconds() + max(float(ttl), self._min_ttl)

    def _resolve(self, name: str) -> Deferred[Resolution]:
        def services(result: tuple[list[dns.RRHeader], Any, Any]) -> Deferred[Resolution]:
            answers, _, additional = result
            records = [rr for rr in answers if rr.type == dns.SRV]
            if records:
                return self._from_srv(records, additional)
            return self._from_addresses(name)

        looking: Deferred[Any] = self._resolver.lookupService(name)
        return looking.addCallbacks(services, lambda _: self._from_addresses(name))

    def _from_addresses(self, name: str) -> Deferred[Resolution]:
        def combine(results: list[tuple[bool, Any]]) -> Resolution:
            found: list[str] = []
            ttls: list[int] = []
            failures: list[Failure] = []
            for ok, result in results:
                if not ok:
                    failures.append(result)
                    continue
                for rr in result[0]:
                    if rr.type == dns.A:
                        found.append(rr.payload.dottedQuad())
                    elif rr.type == dns.AAAA:
                        found.append(socket.inet_ntop(socket.AF_INET6, rr.payload.address))
                    else:
                        continue
                    ttls.append(rr.ttl)
            if not found:
                missing = [f for f in failures if f.check(error.DNSNameError)]
                if missing or not failures:
                    raise _NoRecords(name)
                failures[0].raiseException()
            unique = list(dict.fromkeys(found))
            return Resolution(_split([(address, None, 1.0) for address in unique]),
                              self._ttl(min(ttls)))

        return defer.DeferredList(
            [self._resolver.lookupAddress(name), self._resolver.lookupIPV6Address(name)],
            consumeErrors=True).addCallback(combine)

    def _from_srv(self, records: list[dns.RRHeader], additional: list[dns.RRHeader]
                  ) -> Deferred[Resolution]:
        lowest = min(_payload(rr).priority for rr in records)
        chosen = [rr for rr in records if _payload(rr).priority == lowest]
        glue: dict[str, list[str]] = {}
        for rr in additional:
            if rr.type == dns.A:
                glue.setdefault(str(rr.name), []).append(_payload(rr).dottedQuad())
        ttl = min(rr.ttl for rr in chosen)

        def address_of(rr: dns.RRHeader) -> Deferred[list[str]]:
            target = str(_payload(rr).target)
            if is_ip(target):
                return defer.succeed([target])
            if target in glue:
                return defer.succeed(glue[target])
            known = self._cache.get(target)
            if known is not None and known.addresses:
                return defer.succeed([found.address for found in known.addresses])
            return self._from_addresses(target).addCallbacks(
                lambda resolution: [found.address for found in resolution.addresses],
                lambda _: [])

        def combine(addresses: list[list[str]]) -> Resolution:
            found: list[tuple[str, int | None, float]] = []
            for rr, ips in zip(chosen, addresses):
                record = _payload(rr)
                port = record.port or None
                for ip in ips:
                    found.append((ip, port, float(record.weight) / len(ips)))
            if not found:
                raise _NoRecords(str(chosen[0].name))
            return Resolution(_split(found), self._ttl(ttl))

        return defer.gatherResults([address_of(rr) for rr in chosen]).addCallback(combine)

    def refresh(self) -> None:
        """
        Look up again every cached name whose answer expired.
        """
        now = self._clock.seconds()
        for name, resolution in list(self._cache.items()):
            if resolution.expires <= now and name not in self._pending:
                self.lookup(name)

    def forget(self, keep: Sequence[str]) -> None:
        """
        Drop every cached name not in C{keep}.
        """
        wanted = set(keep)
        for name in [name for name in self._cache if name not in wanted]:
            del self._cache[name]

    def start(self) -> None:
        """
        Start refreshing expired names every C{refresh_interval}.
        """
        if self._loop is None:
            self._loop = LoopingCall(self.refresh)
            self._loop.clock = self._clock
            self._loop.start(self._refresh_interval, now=False).addErrback(
                lambda failure: _log.failure("DNS refresh", failure))

    def stop(self) -> None:
        """
        Stop refreshing (look-ups under way still finish).
        """
        if self._loop is not None:
            self._loop.stop()
            self._loop = None


def _payload(rr: dns.RRHeader) -> Any:
    return rr.payload


class _NoRecords(Exception):
    """
    A name exists but has no address records.
    """
