"""
Run a whole echogate node in the test process: real listeners on
127.0.0.1 (ephemeral ports), the real PostgreSQL (a fresh database on the
suite's server, or the embedded server in a temporary data directory), and
treq as the client.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from echogate.registry import load_plugins
from echogate.service import GatewayService
from echogate.settings import resolve
from tests.postgres import fresh_database


class Answer:
    """
    A response, read whole.
    """

    def __init__(self, code: int, headers: Any, body: bytes):
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Answer {self.code} {self.body[:200]!r}>"


class RunningGateway:
    def __init__(self, service: GatewayService, pool: HTTPConnectionPool):
        self.service = service
        self.pool = pool
        self.proxy_port = service.addresses("proxy")[0].port
        self.admin_port = service.addresses("admin")[0].port
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    async def _call(self, base: str, method: str, path: str, **kw: Any) -> Answer:
        kw.setdefault("pool", self.pool)
        response = await treq.request(method, base + path, **kw)
        body = await response.content()
        return Answer(response.code, response.headers, body)

    async def admin(self, method: str, path: str, **kw: Any) -> Answer:
        """
        Call the Admin API (C{json=}, C{data=} as in treq).
        """
        return await self._call(self.admin_url, method, path, **kw)

    async def proxy(self, method: str, path: str, **kw: Any) -> Answer:
        """
        Send a request through the proxy.
        """
        return await self._call(self.proxy_url, method, path, **kw)


async def start_gateway(testcase: Any, *, database: str | None = None, embedded_dir: str | None = None,
                        plugins: str = "bundled", settings: Mapping[str, str] | None = None,
                        plugin_objects: Mapping[str, Any] | None = None,
                        settle: Any = None) -> RunningGateway:
    """
    Start a gateway node for C{testcase} (stopped at its end). With
    neither C{database} nor C{embedded_dir}, a fresh database on the
    suite's server. The node does not settle the heap (the test process's,
    shared by many nodes) unless given C{settle}.
    """
    if database is None and embedded_dir is None:
        database = await fresh_database(migrated=True)
    flags = {
        "proxy_listen": "tcp:0:interface=127.0.0.1",
        "admin_listen": "tcp:0:interface=127.0.0.1",
        "database": database or "",
        "data_dir": embedded_dir or testcase.mktemp(),
        "plugins": plugins,
        "config_check_interval": "1",
        "db_query_timeout": "3",
    }
    flags.update(settings or {})
    config = resolve(flags, {}, None)
    enabled = dict(plugin_objects) if plugin_objects is not None else load_plugins(config.plugins)
    service = GatewayService(reactor, config, enabled, settle=settle)
    service.privilegedStartService()
    service.startService()
    testcase.addCleanup(service.stopService)
    await service.ready
    pool = HTTPConnectionPool(reactor, persistent=True)
    testcase.addCleanup(pool.closeCachedConnections)
    return RunningGateway(service, pool)
