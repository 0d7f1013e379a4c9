"""
ip-restriction: allow or deny requests by the client's address, as Kong's
ip-restriction does.

C{allow} and C{deny} list IPv4 and IPv6 addresses and CIDR ranges; a
request whose client is in C{deny}, or not in a non-empty C{allow}, is
answered with C{status} (403) and C{{"message": message}} (C{"IP address
not allowed: <ip>"}).

The client's address is C{ctx.request.client_ip}: the peer's address,
unless the peer is in the gateway's C{trusted_ips} setting, when it is
taken from X-Real-IP or X-Forwarded-For. Headers sent by an untrusted peer
never change the decision.
"""
from __future__ import annotations

import functools
import ipaddress
from typing import Any, Iterable, Mapping

import attrs

from echogate.plugin import GatewayPlugin
from echogate.schema import ENTITY, Array, Integer, Record, String

UNKNOWN_CLIENT = "Cannot identify the client IP address"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip_or_cidr(value: str) -> Network:
    """
    An address (a one-address network) or a CIDR range; host bits may be
    set (C{10.1.2.3/8} is C{10.0.0.0/8}).

    @raise ValueError: it is neither.
    """
    address, slash, prefix = value.partition("/")
    parsed = ipaddress.ip_address(address)
    if not slash:
        return ipaddress.ip_network(parsed)
    if not prefix.isdigit() or len(prefix) > 3 or int(prefix) > parsed.max_prefixlen:
        raise ValueError(f"invalid prefix in {value!r}")
    return ipaddress.ip_network(f"{parsed}/{int(prefix)}", strict=False)


def ip_or_cidr(value: str) -> str | None:
    """
    Kong's check for an IP address or CIDR range (C{typedefs.ip_or_cidr}).
    """
    try:
        parse_ip_or_cidr(value)
    except ValueError:
        return f"invalid ip or cidr range: '{value}'"
    return None


@attrs.frozen
class AddressSet:
    """
    Addresses and ranges, compiled for matching: single addresses in a set,
    ranges in a list.
    """

    addresses: frozenset[Address]
    networks: tuple[Network, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> "AddressSet":
        addresses = set()
        networks = []
        for entry in entries:
            network = _ipv4_form(parse_ip_or_cidr(entry))
            if network.num_addresses == 1:
                addresses.add(network.network_address)
            else:
                networks.append(network)
        return cls(frozenset(addresses), tuple(networks))

    def __contains__(self, address: Address) -> bool:
        if address in self.addresses:
            return True
        return any(address.version == n.version and address in n for n in self.networks)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _ipv4_form(network: Network) -> Network:
    """
    An IPv4-mapped IPv6 entry (C{::ffff:10.0.0.1}, C{::ffff:10.0.0.0/104})
    as the IPv4 one: clients are matched in their IPv4 form, so both
    spellings in a config match the same clients.
    """
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        first = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network(f"{first}/{network.prefixlen - 96}")
    return network


@functools.lru_cache(maxsize=512)
def _compiled(entries: tuple[str, ...]) -> AddressSet:
    return AddressSet.of(entries)


def client_address(text: str | None) -> Address | None:
    """
    The client's address, an IPv4-mapped IPv6 address as the IPv4 one, or
    C{None} when C{text} is not an address.
    """
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _one_list(config: dict[str, Any]) -> Mapping[str, str] | None:
    if config.get("allow") or config.get("deny"):
        return None
    return {ENTITY: "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"}


class IPRestriction(GatewayPlugin):
    """
    Kong's ip-restriction (priority 990).
    """

    name = "ip-restriction"
    version = "1.0.0"
    priority = 990
    config_schema = Record({
        "allow": Array(String(check=ip_or_cidr), description="IPs or CIDR ranges to allow."),
        "deny": Array(String(check=ip_or_cidr), description="IPs or CIDR ranges to deny."),
        "status": Integer(between=(100, 599), description="The status of refused requests (403 by default)."),
        "message": String(description="The message of refused requests."),
    }, checks=(_one_list,))

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        text = ctx.request.client_ip
        address = client_address(text)
        if address is None:
            self._refuse(ctx, 403, UNKNOWN_CLIENT)
            return
        deny = config.get("deny")
        allow = config.get("allow")
        if (deny and address in _compiled(tuple(deny))) or (allow and address not in _compiled(tuple(allow))):
            self._refuse(ctx, config.get("status") or 403,
                         config.get("message") or f"IP address not allowed: {text}")

    @staticmethod
    def _refuse(ctx: Any, status: int, message: str) -> None:
        ctx.log.warn("{message}", message=message)
        ctx.exit(status, {"message": message})
