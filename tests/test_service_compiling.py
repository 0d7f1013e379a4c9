"""
Where a node compiles its configuration snapshots: on the reactor thread,
in slices (L{echogate.proxy.compiling.build_in_slices}).
"""
from __future__ import annotations

import threading
from typing import Any, Generator

from twisted.trial import unittest

from echogate.proxy.snapshot import Snapshot
from tests.gateway import start_gateway


class CompilingTests(unittest.TestCase):
    timeout = 60

    async def test_onReactorThreadInSlices(self) -> None:
        """
        A change made through the Admin API is compiled on the reactor's
        thread, step by step (L{Snapshot.building}), and served once the
        write has answered.
        """
        gateway = await start_gateway(self)
        threads: list[threading.Thread] = []
        building = Snapshot.building.__func__  # type: ignore[attr-defined]

        def recording(cls: type, *args: Any, **kwargs: Any) -> Generator[None, None, Snapshot]:
            threads.append(threading.current_thread())
            built: Snapshot = yield from building(cls, *args, **kwargs)
            return built

        self.patch(Snapshot, "building", classmethod(recording))
        await gateway.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:1"})
        await gateway.admin("POST", "/services/s/routes", json={"name": "r", "paths": ["/r"]})
        self.assertEqual(threads, [threading.main_thread()] * 2)
        self.assertIsNotNone(gateway.service.live.current.router.match("GET", None, "/r", {}))
