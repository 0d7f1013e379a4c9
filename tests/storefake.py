"""
The in-memory L{IStore} of the tests: L{echogate.testing.MemoryStore}
(defined in L{echogate.store.memory}), under the names the tests have
always imported.
"""
from __future__ import annotations

from echogate.store.memory import ENDPOINT_KEYS, FOREIGN, UNIQUE, MemoryStore, encode_offset

__all__ = ["MemoryStore", "encode_offset", "UNIQUE", "ENDPOINT_KEYS", "FOREIGN"]
