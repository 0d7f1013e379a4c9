"""
The upstream clients' contract, where the upstream room's modules and the
gateway look for it: L{IUpstreamClient} and L{IUpstreamResponse}, defined
(with every zope Interface of echogate) in L{echogate.interfaces}.
"""
from __future__ import annotations

from echogate.interfaces import IUpstreamClient, IUpstreamResponse

__all__ = ["IUpstreamClient", "IUpstreamResponse"]
