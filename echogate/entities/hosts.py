"""
Host addresses as Kong writes them (C{name}, C{name:port}, C{ipv4},
C{ipv4:port}, C{ipv6} or C{[ipv6]:port}), parsed by L{parse_host} for the
host fields of services and routes (L{echogate.entities.schemas}).
"""
from __future__ import annotations

import re

__all__ = ["parse_host"]

_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::(\d+))?\Z")
_HOSTNAME = re.compile(r"^[A-Za-z0-9\-._]+\Z")
_IPV6_HEX = re.compile(r"^[0-9A-Fa-f]{1,4}\Z")


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if int(text) > 65535:
        raise ValueError("invalid port number")
    return int(text)


def _is_ipv6(text: str) -> bool:
    if text.count("::") > 1:
        return False
    head, double, tail = text.partition("::")
    groups = [g for g in (head.split(":") if head else [])] + [
        g for g in (tail.split(":") if tail else [])
    ]
    if not all(_IPV6_HEX.match(g) for g in groups):
        return False
    return len(groups) < 8 if double else len(groups) == 8


def parse_host(address: str) -> tuple[str, str, int | None]:
    """
    Parse C{name}, C{name:port}, C{ipv4}, C{ipv4:port}, C{ipv6} or
    C{[ipv6]:port}, as Kong's C{normalize_ip} does.

    @return: C{(kind, host, port)}: C{kind} is C{"name"}, C{"ipv4"} or
        C{"ipv6"}; C{port} is C{None} when not given.
    @raise ValueError: with Kong's message when C{address} is not valid.
    """
    if address.count(":") > 1:
        bracketed = re.match(r"^\[([^\]]*)\](.*)\Z", address)
        if bracketed:
            host, rest = bracketed.groups()
            if rest and not re.match(r"^:\d+\Z", rest):
                raise ValueError("invalid ipv6 address")
            port = _port(rest[1:] if rest else None)
        else:
            host, port = address, None
        if not _is_ipv6(host):
            raise ValueError(f"invalid ipv6 address: {address}")
        return "ipv6", host, port
    if re.match(r"^[\d.]+\Z", address.replace(":", "")):
        m = _IPV4.match(address)
        if m is None or any(int(octet) > 255 for octet in m.group(1, 2, 3, 4)):
            raise ValueError(f"invalid ipv4 address: {address}")
        return "ipv4", address.rsplit(":", 1)[0], _port(m.group(5))
    m = re.search(r":(\d+)\Z", address)
    name = address[: m.start()] if m else address
    port = _port(m.group(1) if m else None)
    labels = name.split(".")
    if _HOSTNAME.match(name) is None or any(
        label.endswith("-") or (label == "" and i != len(labels) - 1)
        for i, label in enumerate(labels)
    ):
        raise ValueError(f"invalid hostname: {address}")
    return "name", name, port
