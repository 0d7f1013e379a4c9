"""
What plugins see of a WebSocket connection the gateway passed on
(C{ctx.tunnel}): set once the service answered the handshake with 101,
counted while bytes flow, complete in the C{log} phase, which runs when
the connection closes.
"""
from __future__ import annotations

import attrs

#: Why a tunnel ended (L{TunnelState.closed_by}).
CLIENT = "client"
SERVICE = "service"
IDLE = "idle"
GATEWAY = "gateway"


@attrs.define
class TunnelState:
    """
    One WebSocket connection through the gateway, after its 101.

    @ivar opened: when the 101 went to the client (seconds, on the
        gateway's clock).
    @ivar closed: when the tunnel closed, or C{None} while it is open.
    @ivar bytes_up: bytes passed from the client to the service (frames
        as sent, headers excluded).
    @ivar bytes_down: bytes passed from the service to the client.
    @ivar closed_by: who ended it, once closed: C{"client"}, C{"service"},
        C{"idle"} (nothing passed either way for the service's
        C{read_timeout}) or C{"gateway"} (the node stopped, or a write to
        a side failed); C{None} while open.
    """

    opened: float
    closed: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    closed_by: str | None = None

    @property
    def duration(self) -> float | None:
        """
        How long the tunnel was open (seconds), once closed.
        """
        return None if self.closed is None else self.closed - self.opened


__all__ = ["TunnelState", "CLIENT", "SERVICE", "IDLE", "GATEWAY"]
