"""
The C{twistd echogate} service: wires the store, the live configuration,
the proxy and the Admin API together.

Start-up order: settings and plugins are checked before the reactor runs
(a bad value stops start-up with one line); the listeners are bound in
C{privilegedStartService} but do not accept until the gateway is ready;
then the database (embedded or DSN) is reached, retrying while it is down,
the configuration is loaded, plugins' C{init} runs, and the listeners
start accepting.
"""
from __future__ import annotations

import os
import socket
import sys
import uuid
from typing import Any, Callable

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate._version import __version__
from echogate.settings import Options, Settings, redact_dsn, with_backlog
from echogate.heap import settle_heap, tune
from echogate.registry import PluginLoadError, load_plugins
from echogate.proxy.runner import as_deferred

__all__ = ["Options", "makeService", "GatewayService"]

_log = Logger(namespace="echogate")


def node_id(data_dir: str) -> str:
    """
    This node's id: kept in C{data_dir/node_id} so it survives restarts.
    """
    path = os.path.join(data_dir, "node_id")
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
        uuid.UUID(value)
        return value
    except (OSError, ValueError):
        pass
    value = str(uuid.uuid4())
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(value + "\n")
    except OSError:
        pass
    return value


@attrs.frozen
class PluginNode:
    """
    What a plugin's optional C{node_service(node)} method receives once the
    node is connected to its database: it returns an C{IService} (or
    C{None}) that runs with the node and is stopped with it, for
    background work such as flushing counters or log queues.

    @ivar reactor: the node's reactor.
    @ivar dsn: the node's PostgreSQL DSN (the embedded server's when none
        was configured).
    @ivar node_id: this node's id.
    """

    reactor: Any
    dsn: str
    node_id: str


class GatewayService(MultiService):
    """
    One echogate node.

    @param settle: what the node runs once configuration changes have been
        quiet for a second (L{echogate.heap.settle_heap}, the default,
        followed by the collector's young threshold,
        C{gc_young_threshold}, and the C heap's trim threshold,
        C{malloc_trim_threshold}; tests that run many nodes in one process
        pass C{None}: a node owns its process's heap).
    """

    def __init__(self, reactor: Any, settings: Settings, plugins: dict[str, Any], *,
                 settle: Callable[[], object] | None = settle_heap):
        super().__init__()
        self._reactor = reactor
        self._settle = settle
        self._trim_unsupported_said = False
        self.settings = settings
        self.plugins = plugins
        self.node_id = node_id(settings.data_dir)
        self._ports: list[Any] = []
        self._pending_listens: list[tuple[str, str, Any]] = []
        self.store: Any = None
        self.live: Any = None
        self.embedded: Any = None
        self.upstream: Any = None
        self.ready: Deferred = Deferred()
        self._starting: Deferred | None = None
        self._stopping = False
        self._bound = False
        self.workers: Any = None
        worker_of = os.environ.get("ECHOGATE_WORKER_OF")
        self.is_worker = worker_of is not None
        self._parent = int(worker_of) if worker_of else None

    # -- listeners ------------------------------------------------------------

    def _factories(self) -> tuple[Any, Any]:
        from echogate.admin import AdminAPI, NodeInfo
        from echogate.proxy.gateway import Gateway, GatewayResource
        from echogate.batching import WriteBatcher
        from echogate.proxy.request import UnparsedRequest
        from echogate.proxy.site import Counters, GatewaySite
        from echogate.proxy.forwarding import TrustedNetworks
        from echogate.upstream.agent import UpstreamClient
        from twisted.web.server import Site

        # The listener's connections and the lean client's send their writes
        # in one flush per reactor iteration.
        batcher = WriteBatcher(self._reactor)
        if self.settings.upstream_client == "lean":
            from echogate.upstream.lean import LeanUpstreamClient

            self.upstream = LeanUpstreamClient(self._reactor,
                                               max_idle_per_host=self.settings.upstream_keepalive_pool_size,
                                               idle_timeout=self.settings.upstream_keepalive_idle_timeout,
                                               write_batcher=batcher)
        else:
            self.upstream = UpstreamClient(self._reactor, max_per_host=self.settings.upstream_keepalive_pool_size,
                                           idle_timeout=self.settings.upstream_keepalive_idle_timeout)
        self.counters = Counters()
        self.gateway = Gateway(
            clock=self._reactor,
            snapshot=lambda: self.live.current,
            upstream=self.upstream,
            trusted=TrustedNetworks(self.settings.trusted_ips),
            counters=self.counters,
        )
        self.proxy_site = GatewaySite(
            GatewayResource(self.gateway),
            reactor=self._reactor,
            max_body_size=self.settings.client_max_body_size,
            access_log=self.settings.access_log,
            write_batcher=batcher,
        )
        self.proxy_site.noisy = False
        self.admin = AdminAPI(
            store=_LateStore(self),
            plugins=self.plugins,
            clock=self._reactor,
            node=NodeInfo(node_id=self.node_id, hostname=socket.gethostname(), version=__version__,
                          configuration=self.settings.public()),
            on_change=lambda: self.live.catch_up() if self.live is not None else None,
            status=lambda: self.counters.as_dict([self.proxy_site]),
        )
        admin_site = Site(self.admin.resource(), requestFactory=UnparsedRequest)
        admin_site.noisy = False
        admin_site.displayTracebacks = False
        return self.proxy_site, admin_site

    def privilegedStartService(self) -> None:
        if not self._bound:
            self.bind()
        super().privilegedStartService()

    def bind(self) -> None:
        """
        Bind every listener (not accepting yet). Called by L{makeService}
        before the reactor runs, so that a port that cannot be had stops
        start-up with one line.

        @raise SystemExit: a listener cannot be bound.
        """
        self._bound = True
        proxy_site, admin_site = self._factories()
        shared = self.settings.workers > 1
        listeners = [("proxy", self.settings.proxy_listen, proxy_site)]
        if not self.is_worker:
            listeners.append(("admin", self.settings.admin_listen, admin_site))
        for kind, descriptions, factory in listeners:
            for description in descriptions:
                if shared and kind == "proxy":
                    from echogate.workers import listen_shared

                    d = maybeDeferred(listen_shared, self._reactor, description, factory)
                else:
                    d = endpoints.serverFromString(self._reactor, with_backlog(description)).listen(factory)
                outcome: list[Any] = []
                d.addBoth(outcome.append)
                if not outcome:
                    self._pending_listens.append((kind, description, d))
                    continue
                if isinstance(outcome[0], Failure):
                    self._close_ports()
                    raise SystemExit(f"echogate: cannot listen on {description} ({kind}): "
                                     f"{outcome[0].getErrorMessage()}")
                port = outcome[0]
                if hasattr(port, "stopReading"):
                    port.stopReading()
                self._ports.append((kind, description, port))

    def _close_ports(self) -> Deferred:
        ports, self._ports = self._ports, []
        return DeferredList([maybeDeferred(port.stopListening) for _, _, port in ports])

    def addresses(self, kind: str) -> list[Any]:
        """
        The bound addresses of the C{kind} (C{"proxy"} or C{"admin"}) listeners.
        """
        return [port.getHost() for k, _, port in self._ports if k == kind]

    # -- start-up ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if not self._bound:
            self.bind()
        self._starting = ensureDeferred(self._start())
        self._starting.addCallbacks(self.ready.callback, self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        if self._stopping:
            return
        _log.critical("echogate could not start: {why}", why=failure.getErrorMessage(), log_failure=failure)
        self.ready.errback(failure)
        if self._reactor.running:
            self._reactor.stop()

    async def _start(self) -> None:
        from echogate.proxy.snapshot import LiveConfiguration, build_in_thread
        from echogate.store.postgres import PostgresStore, SchemaOutdated

        for kind, description, d in self._pending_listens:
            port = await d
            self._ports.append((kind, description, port))
        self._pending_listens = []
        dsn = self.settings.database
        if not dsn:
            from echogate.store.embedded import EmbeddedPostgres

            self.embedded = EmbeddedPostgres(os.path.abspath(self.settings.data_dir))
            _log.info("starting the embedded PostgreSQL server in {dir}", dir=self.settings.data_dir)
            await self.embedded.start()
            dsn = self.embedded.dsn
        self.store = PostgresStore(self._reactor, dsn, query_timeout=self.settings.db_query_timeout)
        delay = 0.5
        while True:
            try:
                await self.store.start()
                await self.store.check_schema()
                break
            except SchemaOutdated:
                raise
            except Exception as e:
                if self._stopping:
                    return
                _log.warn("database {dsn} is unreachable ({why}); retrying in {delay:.1f}s",
                          dsn=redact_dsn(dsn), why=str(e) or type(e).__name__, delay=delay)
                await maybeDeferred(self.store.stop)
                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, 10.0)
        self.live = LiveConfiguration(store=self.store, plugins=self.plugins, clock=self._reactor,
                                      check_interval=self.settings.config_check_interval,
                                      build=build_in_thread(self._reactor),
                                      settle=self._settle_heap if self._settle is not None else None)
        await self.live.start()
        await self._init_plugins()
        for _, _, port in self._ports:
            if hasattr(port, "startReading"):
                port.startReading()
        if self.settings.workers > 1 and not self.is_worker:
            from echogate.workers import WorkerPool

            self.workers = WorkerPool(self._reactor, self.settings, dsn,
                                      [a.port for a in self.addresses("proxy")])
            self.workers.start()
        if self.is_worker:
            self._watch_parent()
        for kind in ("proxy", "admin"):
            for address in self.addresses(kind):
                _log.info("echogate {version} {kind} listening on {address}", version=__version__,
                          kind=kind, address=address)
        _log.info("echogate ready: node {node}, configuration version {v}, plugins: {plugins}",
                  node=self.node_id, v=self.live.current.version, plugins=", ".join(self.plugins) or "none")

    def _watch_parent(self) -> None:
        """
        A worker stops when the main process that started it is gone.
        """
        from twisted.internet.task import LoopingCall

        def check() -> None:
            if os.getppid() != self._parent and self._reactor.running:
                _log.info("the main process {pid} is gone; worker stopping", pid=self._parent)
                self._reactor.stop()

        self._parent_watch = LoopingCall(check)
        self._parent_watch.clock = self._reactor
        self._parent_watch.start(1.0, now=False)

    def _settle_heap(self) -> None:
        """
        Once configuration changes are quiet: C{settle} (the heap), then
        the collector's young threshold (C{gc_young_threshold}) and the C
        heap's trim threshold (C{malloc_trim_threshold}).
        """
        self._settle()
        size = self.settings.malloc_trim_threshold
        if not tune(self.settings.gc_young_threshold, size) and size and not self._trim_unsupported_said:
            self._trim_unsupported_said = True
            _log.info("malloc_trim_threshold: this C library has no glibc mallopt; its own threshold stays")

    async def _init_plugins(self) -> None:
        index = self.live.current.plugins
        for name, plugin in self.plugins.items():
            init = getattr(plugin, "init", None)
            if callable(init):
                await maybeDeferred(lambda: as_deferred(init([e.config for e in index.entries(name)])))
            node_service = getattr(plugin, "node_service", None)
            if callable(node_service):
                child = node_service(PluginNode(reactor=self._reactor, dsn=self.store.dsn, node_id=self.node_id))
                if child is not None:
                    child.setServiceParent(self)

    # -- stopping ---------------------------------------------------------------

    def stopService(self) -> Deferred:
        self._stopping = True
        steps: list[Deferred] = [maybeDeferred(super().stopService), self._close_ports()]
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        if self.live is not None:
            self.live.stop()
        d = DeferredList(steps)

        async def rest(_: Any) -> None:
            if self.workers is not None:
                await self.workers.stop()
            if self.upstream is not None:
                await self.upstream.close()
            if self.store is not None:
                await maybeDeferred(self.store.stop)
            if self.embedded is not None:
                await maybeDeferred(self.embedded.stop)

        return d.addCallback(lambda r: ensureDeferred(rest(r)))


class _LateStore:
    """
    The store as the Admin API sees it: the gateway's store once it is
    connected (until then every call fails with L{DatabaseUnavailable}).
    """

    def __init__(self, service: GatewayService):
        self._service = service

    def __getattr__(self, name: str) -> Any:
        store = self._service.store
        if store is None:
            from echogate.errors import DatabaseUnavailable

            def unavailable(*a: Any, **kw: Any) -> Deferred:
                from twisted.internet.defer import fail

                return fail(DatabaseUnavailable("The database is not connected yet"))

            return unavailable
        return getattr(store, name)


def makeService(options: Options) -> GatewayService:
    """
    Build the service from parsed options (called by twistd before the
    reactor runs). Bad plugin settings stop start-up with one line.
    """
    from twisted.internet import reactor

    settings: Settings = options.settings
    try:
        plugins = load_plugins(settings.plugins)
    except PluginLoadError as e:
        raise SystemExit(f"echogate: {e}")
    if settings.database:
        from echogate.store.postgres import SchemaOutdated, check_schema_blocking

        try:
            check_schema_blocking(settings.database)
        except SchemaOutdated as e:
            raise SystemExit(f"echogate: {e}")
        except Exception as e:  # unreachable now: start anyway and retry
            print(f"echogate: database not reachable yet ({e}); will retry", file=sys.stderr)
    service = GatewayService(reactor, settings, plugins)
    service.bind()
    return service
