"""
What plugins see of load balancing (C{ctx.balancer}): the peer the
request went to, and every try, as Kong's C{balancer_data} and the log
record's C{tries} have them.
"""
from __future__ import annotations

import typing
from typing import Any


class PickedPeer(typing.Protocol):
    """
    A peer the balancer picked (L{echogate.balancer.Peer} is one).
    """

    @property
    def address(self) -> str:
        """The IP address connected to."""

    @property
    def port(self) -> int:
        """The port connected to."""

    @property
    def target_id(self) -> str:
        """The id of the target the address belongs to."""

    @property
    def hostname(self) -> str:
        """The target's host name (or address)."""


class BalancerState:
    """
    The load balancing of one request to an upstream's targets.

    @ivar tries: each try, in order, as Kong's log record has them:
        C{ip}, C{port}, C{target_id}, C{balancer_start} (ms since the
        epoch), C{balancer_latency} (ms until the service's head, or
        until the try failed) and C{code} (the service's status, C{None}
        when the try failed).
    """

    __slots__ = ("_tries", "_peer")

    def __init__(self) -> None:
        # (ip, port, target_id, started, latency, code) per try: the dicts
        # of tries are made only when asked for, in the log phase.
        self._tries: list[list[Any]] = []
        self._peer: PickedPeer | None = None

    @property
    def tries(self) -> list[dict[str, Any]]:
        """
        Each try, in order (see the class docstring).
        """
        return [{"ip": ip, "port": port, "target_id": target_id, "balancer_start": int(started * 1000),
                 "balancer_latency": None if latency is None else int(latency * 1000), "code": code}
                for ip, port, target_id, started, latency, code in self._tries]

    def tried(self, peer: PickedPeer, started: float) -> None:
        """
        A try begins: to C{peer}, at C{started} (seconds).
        """
        self._peer = peer
        self._tries.append([peer.address, peer.port, peer.target_id, started, None, None])

    def answered(self, code: int | None, latency: float) -> None:
        """
        The try under way ended: the service answered C{code}, or failed
        (C{None}), after C{latency} seconds.
        """
        if self._tries:
            last = self._tries[-1]
            last[4] = latency
            last[5] = code

    @property
    def attempt(self) -> int:
        """
        The number of the try under way (or last made): 1 for the first.
        """
        return len(self._tries)

    @property
    def address(self) -> str | None:
        """
        The address of the peer of the last try.
        """
        return self._peer.address if self._peer is not None else None

    @property
    def port(self) -> int | None:
        """
        The port of the peer of the last try.
        """
        return self._peer.port if self._peer is not None else None

    @property
    def hostname(self) -> str | None:
        """
        The target's host name (or address) of the last try.
        """
        return self._peer.hostname if self._peer is not None else None

    @property
    def target_id(self) -> str | None:
        """
        The id of the target of the last try.
        """
        return self._peer.target_id if self._peer is not None else None
