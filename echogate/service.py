"""
The C{twistd echogate} service: wires the store, the live configuration,
the proxy and the Admin API together.

Start-up order: settings and plugins are checked before the reactor runs
(a bad value stops start-up with one line); the listeners are bound in
C{privilegedStartService} but do not accept until the gateway is ready;
then the database (embedded or DSN) is reached, retrying while it is down,
the configuration is loaded, each plugin's C{node_service(node)} hook and
C{init} run, and the listeners start accepting.
"""
from __future__ import annotations

import atexit
import os
import socket
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from echogate._version import __version__
from echogate.heap import ReleaseInSlices, settle_heap, tune
from echogate.interfaces import IPluginNode, IStore
from echogate.proxy.limits import throttle_accept_errors
from echogate.proxy.runner import as_deferred
from echogate.registry import PluginLoadError, load_plugins
from echogate.settings import (
    Options,
    Settings,
    offers_http2,
    redact_dsn,
    split_listener,
    unknown_environment,
    with_backlog,
)

if TYPE_CHECKING:
    from echogate.proxy.site import GatewaySite

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


def _local_caches(node: Any) -> Any:
    """
    Caches of a node made without any: invalidations stay on it.
    """
    from echogate.pdk.cache import Caches

    return Caches(node.reactor, node.node_id)


@implementer(IPluginNode)
@attrs.frozen
class PluginNode:
    """
    What a plugin's optional C{node_service(node)} hook receives once the
    node is connected to its database, before C{init} and before the
    listeners accept: it returns an C{IService} (or C{None}) that runs with
    the node and is stopped with it, for background work such as flushing
    counters or log queues.

    @ivar reactor: the node's reactor.
    @ivar dsn: the node's PostgreSQL DSN (the embedded server's when none
        was configured).
    @ivar node_id: this node's id.
    @ivar balancers: the node's L{echogate.balancer.Balancers} (the health
        of upstreams' targets, read by the prometheus plugin), or C{None}.
    """

    reactor: IReactorTime
    dsn: str | None
    node_id: str
    balancers: Any = None
    #: The node's L{echogate.pdk.http.HTTPClient} (over its upstream client).
    http: Any = None
    #: The node's L{echogate.pdk.cache.Caches} (L{cache}).
    caches: Any = attrs.field(default=attrs.Factory(_local_caches, takes_self=True))

    def cache(self, name: str, ttl: float | None = 60.0, neg_ttl: float | None = None,
              max_size: int = 1000) -> Any:
        """
        The node's cache called C{name} (see L{IPluginNode.cache}).
        """
        return self.caches.cache(name, ttl=ttl, neg_ttl=neg_ttl, max_size=max_size)

    def run_in_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        Call C{f(*args, **kwargs)} in the reactor's thread pool.
        """
        # (a running node's reactor has threads too: IReactorTime is what
        # every node, the harness's included, is typed with)
        reactor: Any = self.reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kwargs)


def _init_call(init: Callable[[list[Any]], Any], configs: list[Any]) -> Any:
    """
    A plugin's C{init} with its configs, a coroutine made a Deferred.
    """
    return as_deferred(init(configs))


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
        self.clients: Any = None
        self.ready: Deferred = Deferred()
        self.exit_code = 0
        self._starting: Deferred | None = None
        self._stopping = False
        self._bound = False
        self.workers: Any = None
        #: A DB-less node's configuration (L{echogate.declarative.dbless.DBlessConfiguration}),
        #: or C{None} with a database.
        self.dbless: Any = None
        self._shared_config: str | None = None
        if settings.dbless:
            self._make_dbless()
        #: The proxy's L{echogate.proxy.tls.SNICertificates} once an ssl
        #: listener is bound: the choosers of the ssl listeners, by whether
        #: they offer h2.
        self.tls: dict[bool, Any] = {}
        worker_of = os.environ.get("ECHOGATE_WORKER_OF")
        self.is_worker = worker_of is not None
        self._parent = int(worker_of) if worker_of else None
        #: The plugins' C{configure} phase (L{echogate.proxy.configure.ConfigurePhase}),
        #: once they are initialised.
        self.configure_phase: Any = None
        #: What the plugins' C{node_service} hooks received (L{PluginNode}),
        #: and the services they returned, by plugin name.
        self.plugin_node: Any = None
        self.plugin_services: dict[str, Any] = {}
        #: With C{--dev}: the L{echogate.reloading.PluginReloader} watching
        #: the plugins' files, once the node is started; else C{None}.
        self.reloader: Any = None
        self._make_balancers()

    # -- DB-less mode -----------------------------------------------------------

    def _make_dbless(self) -> None:
        """
        C{database = off}: the store is a L{echogate.store.declared.DeclaredStore}
        whose records are the declarative configuration's (L{dbless}): no
        PostgreSQL at all.
        """
        from echogate.declarative.dbless import DBlessConfiguration
        from echogate.store.declared import DeclaredStore

        self.store = DeclaredStore()
        self.dbless = DBlessConfiguration(self.store, self.plugins, self.settings.declarative_config or None,
                                          run_in_thread=self._run_in_thread)
        self.store.subscribe(self._forward_to_workers)

    def _run_in_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Call C{f(*args, **kwargs)} in the reactor's thread pool (a DB-less
        node loads its configurations there: the proxy keeps answering).
        """
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args, **kwargs)

    def load_declarative(self) -> None:
        """
        Apply the C{declarative_config} file, if one is set and nothing is
        applied yet (L{makeService} calls it before the reactor runs, so
        that a bad file stops start-up).

        @raise OSError: the file cannot be read.
        @raise echogate.declarative.DeclarativeError: it is invalid.
        """
        if self.dbless is not None and self.dbless.path is not None and self.dbless.current is None:
            self.dbless.apply(self.dbless.read_file())

    def reload_declarative(self) -> Deferred[bool]:
        """
        Read the C{declarative_config} file again (SIGHUP) and apply it. A
        file that cannot be read or is invalid changes nothing: the node
        keeps serving its configuration, and each error is logged on a line
        of its own. The file is loaded in the reactor's thread pool (the
        proxy keeps answering) and applied on the reactor thread, after any
        configuration loading already (L{echogate.declarative.dbless.DBlessConfiguration.updating}).

        @return: a L{Deferred} of whether the file was applied.
        """
        return Deferred.fromCoroutine(self._reload_declarative())

    async def _reload_declarative(self) -> bool:
        if self.dbless is None or self.dbless.path is None:
            _log.warn("reload: no declarative_config file to read (database = off and declarative_config set)")
            return False
        async with self.dbless.updating:
            return await self._reload_declarative_file()

    async def _reload_declarative_file(self) -> bool:
        from echogate.declarative import DeclarativeError
        from echogate.declarative.dbless import error_lines

        try:
            declarative = await self.dbless.read_file_off_reactor()
        except OSError as e:
            _log.error("reload: cannot read {path} ({why}); the configuration is unchanged",
                       path=self.dbless.path, why=e.strerror or str(e))
            return False
        except DeclarativeError as e:
            lines = error_lines(e)
            _log.error("reload: {path} is invalid ({count} errors); the configuration is unchanged",
                       path=self.dbless.path, count=len(lines))
            for line in lines:
                _log.error("reload: {path}: {error}", path=self.dbless.path, error=line)
            return False
        if declarative.config_hash == self.dbless.config_hash:
            _log.info("reload: {path} is unchanged", path=self.dbless.path)
            return True
        version = self.dbless.apply(declarative)
        _log.info("reload: {path} applied (configuration version {version})", path=self.dbless.path,
                  version=version)
        return True

    def _forward_to_workers(self, version: int | None) -> None:
        """
        A DB-less main process's configuration changed: write it where its
        workers read theirs (L{_shared_config}) and tell them to read it
        again (SIGHUP).
        """
        if self.workers is None or self._shared_config is None:
            return
        self._write_shared_config()
        self.workers.signal("HUP")

    def _write_shared_config(self) -> None:
        path = self._shared_config
        assert path is not None
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(self.dbless.export("json"))
        os.replace(temporary, path)

    # -- load balancing -------------------------------------------------------

    def _make_balancers(self) -> None:
        """
        The node's load balancers (L{balancers}), with their DNS resolver
        (C{dns_resolver}, C{dns_hostsfile}, C{dns_error_ttl}), their
        active health checks' probe, and the Admin API's health overrides
        (L{echogate.balancer.overrides.HealthOverrides}); they follow the
        live configuration once it starts (L{_configuration_switched}).
        """
        from echogate.balancer import Balancers, TargetResolver, make_resolver
        from echogate.balancer.overrides import HealthOverrides
        from echogate.balancer.probe import Prober

        settings = self.settings
        self.prober = Prober(self._reactor)
        self.resolver = TargetResolver(
            make_resolver(settings.dns_resolver, settings.dns_hostsfile or None, self._reactor),
            self._reactor, error_ttl=settings.dns_error_ttl)
        #: The node's L{echogate.balancer.Balancers}: one balancer per
        #: upstream of the current configuration.
        self.balancers = Balancers(self._reactor, self.resolver, self.prober)
        self.health_overrides = HealthOverrides(self.balancers)
        # After the balancers' own watcher rebuilt them: overrides of
        # addresses that were not resolved yet.
        self.resolver.watch(lambda name: self.health_overrides.retry())

    def _configuration_switched(self, snapshot: Any) -> None:
        """
        A new configuration snapshot is current: rebuild the balancers
        from its upstreams and targets, then apply its new health
        overrides.
        """
        self.balancers.update(snapshot.upstreams, snapshot.targets)
        self.health_overrides.update(snapshot.target_health_overrides)
        if self.configure_phase is not None:
            self.configure_phase.switched(snapshot.plugins)

    # -- listeners ------------------------------------------------------------

    def _factories(self) -> tuple[Any, Any]:
        from twisted.web.server import Site

        from echogate.admin import AdminAPI, NodeInfo
        from echogate.admin.health import BalancerHealth
        from echogate.batching import WriteBatcher
        from echogate.proxy.forwarding import TrustedNetworks
        from echogate.proxy.gateway import Gateway, GatewayResource
        from echogate.proxy.heads import HeadLimits
        from echogate.proxy.request import UnparsedRequest
        from echogate.proxy.site import Counters, GatewaySite
        from echogate.settings import connection_limit
        from echogate.upstream.agent import UpstreamClient

        # The listener's connections and the lean client's send their writes
        # in one flush per reactor iteration.
        batcher = WriteBatcher(self._reactor)
        if self.settings.upstream_client == "lean":
            from echogate.upstream.lean import LeanUpstreamClient

            self.upstream = LeanUpstreamClient(self._reactor,
                                               max_idle_per_host=self.settings.upstream_keepalive_pool_size,
                                               idle_timeout=self.settings.upstream_keepalive_idle_timeout,
                                               write_batcher=batcher,
                                               tls_verify=self.settings.upstream_tls_verify)
        else:
            self.upstream = UpstreamClient(self._reactor, max_per_host=self.settings.upstream_keepalive_pool_size,
                                           idle_timeout=self.settings.upstream_keepalive_idle_timeout,
                                           tls_verify=self.settings.upstream_tls_verify)
        from echogate.upstream.byprotocol import ByProtocol

        #: What the gateway sends through: the HTTP/1.1 client, and the
        #: HTTP/2 one for gRPC services.
        self.clients = ByProtocol(self.upstream, self._reactor,
                                  idle_timeout=self.settings.upstream_keepalive_idle_timeout,
                                  tls_verify=self.settings.upstream_tls_verify)
        self.counters = Counters()
        self.gateway = Gateway(
            clock=self._reactor,
            snapshot=lambda: self.live.current,
            upstream=self.clients,
            trusted=TrustedNetworks(self.settings.trusted_ips),
            counters=self.counters,
            real_ip_header=self.settings.real_ip_header,
            real_ip_recursive=self.settings.real_ip_recursive,
            underscores=self.settings.headers_with_underscores,
            max_buffered_response=self.settings.max_buffered_response,
            balancers=self.balancers,
        )
        self.proxy_site = GatewaySite(
            GatewayResource(self.gateway),
            reactor=self._reactor,
            max_body_size=self.settings.client_max_body_size,
            access_log=self.settings.access_log,
            write_batcher=batcher,
            timeout=self.settings.keepalive_timeout,
            max_connections=self.settings.max_connections or connection_limit(),
            max_connections_per_ip=self.settings.max_connections_per_ip,
        )
        self.proxy_site.head_limits = HeadLimits(
            request_line=self.settings.max_request_line,
            header_line=self.settings.max_header_line,
            headers=self.settings.max_headers,
            header_timeout=self.settings.client_header_timeout,
            body_timeout=self.settings.client_body_timeout,
            send_timeout=self.settings.send_timeout,
            reject_underscores=self.settings.headers_with_underscores == "reject",
        )
        self.proxy_site.noisy = False
        self.admin = AdminAPI(
            store=_LateStore(self),
            plugins=self.plugins,
            clock=self._reactor,
            node=NodeInfo(node_id=self.node_id, hostname=socket.gethostname(), version=__version__,
                          configuration=self.settings.public()),
            on_change=lambda: self.live.catch_up() if self.live is not None else None,
            status=self._status,
            ready=self._readiness,
            token=self.settings.admin_token,
            server_names=self.settings.admin_server_names,
            health=BalancerHealth(self.balancers),
            dbless=self.dbless,
        )
        if not self.is_worker:
            from echogate.settings import exposure_warnings

            for warning in exposure_warnings(self.settings.admin_listen, self.settings.admin_token):
                _log.warn("{admin_exposed}", admin_exposed=warning)
        admin_site = Site(self.admin.resource(), requestFactory=UnparsedRequest)
        admin_site.noisy = False
        admin_site.displayTracebacks = False
        return self.proxy_site, admin_site

    def _status(self) -> dict[str, Any]:
        """
        What C{GET /status} shows of this node: the proxy's counters and
        C{missing_plugins}, the plugins that stored configs name but this
        node has not loaded.
        """
        status: dict[str, Any] = dict(self.counters.as_dict([self.proxy_site]))
        status["missing_plugins"] = self.live.missing if self.live is not None else []
        return status

    def _readiness(self) -> str | None:
        """
        Why this node should not get traffic (C{GET /status/ready} answers
        503 with it), or C{None} when it serves: not before the first
        configuration is loaded, not once it is draining.
        """
        if self._stopping:
            return "draining"
        if self.dbless is not None and self.dbless.current is None:
            return "no configuration available (empty configuration present)"
        if self.live is None or not self.ready.called:
            return "no configuration loaded yet"
        return None

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
        for kind, descriptions, site in listeners:
            for description in descriptions:
                endpoint, tls = split_listener(description) if kind == "proxy" else (description, False)
                factory = site
                if kind == "proxy" and offers_http2(description):
                    from echogate.proxy.negotiating import HTTP2Listener

                    factory = HTTP2Listener(site, tls, self.settings.http2_max_concurrent_streams)
                if tls:
                    factory = self._tls_factory(factory, offers_http2(description))
                if shared and kind == "proxy":
                    from echogate.workers import listen_shared

                    d = maybeDeferred(listen_shared, self._reactor, endpoint, factory)
                else:
                    d = endpoints.serverFromString(self._reactor, with_backlog(endpoint)).listen(factory)
                d.addCallback(throttle_accept_errors, self._reactor)
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

    def _tls_factory(self, site: Any, http2: bool = False) -> Any:
        """
        The factory of an C{ssl} proxy listener: TLS over C{site}'s
        connections, the certificate chosen by SNI from the current
        snapshot (L{echogate.proxy.tls.SNICertificates}, one for all such
        listeners with the same ALPN choice: L{tls}), the default one being
        C{ssl_cert} or the node's self-signed one in C{data_dir}; with
        C{http2}, ALPN offers C{h2}.

        @raise SystemExit: the default certificate cannot be read or made.
        """
        from echogate.proxy.tls import SNICertificates, TLSListenerFactory, TLSPolicy, default_certificate

        if http2 not in self.tls:
            settings = self.settings
            try:
                if settings.ssl_cert:
                    with open(settings.ssl_cert, "rb") as cert, open(settings.ssl_cert_key, "rb") as key:
                        default = cert.read(), key.read()
                else:
                    default = default_certificate(settings.data_dir)
                policy = TLSPolicy(protocols=settings.ssl_protocols, ciphers=settings.cipher_list,
                                   session_tickets=settings.ssl_session_tickets,
                                   session_timeout=settings.ssl_session_timeout, http2=http2)
                self.tls[http2] = SNICertificates(lambda: self.live.current if self.live is not None else None,
                                           default, policy)
            except (OSError, ValueError) as e:
                self._close_ports()
                raise SystemExit(f"echogate: the default TLS certificate cannot be had: {e}") from None
        return TLSListenerFactory(self.tls[http2], False, site)

    def listening(self, kind: str) -> list[tuple[str, Any]]:
        """
        The C{kind} (C{"proxy"} or C{"admin"}) listeners: each one's
        resolved description (a proxy one ending in C{" ssl"} is HTTPS) and
        bound address.
        """
        return [(description, port.getHost()) for k, description, port in self._ports if k == kind]

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
        """
        Start-up failed once the reactor ran (the embedded server would not
        start, the disk is full or read-only, the schema is outdated): say
        why in one line (with the traceback only for an unexpected error),
        stop the reactor, and leave L{exit_code} at 1 for L{exit_on_failure}.
        """
        if self._stopping:
            return
        from echogate.declarative import DeclarativeError
        from echogate.store.embedded import EmbeddedStartFailed
        from echogate.store.postgres import SchemaOutdated

        self.exit_code = 1
        if failure.check(EmbeddedStartFailed, SchemaOutdated, OSError, DeclarativeError):
            _log.critical("echogate could not start: {why}", why=failure.getErrorMessage())
        else:
            _log.critical("echogate could not start: {why}", why=failure.getErrorMessage(), log_failure=failure)
        self.ready.errback(failure)
        if self._reactor.running:
            self._reactor.stop()

    async def _start(self) -> None:
        from echogate.proxy.compiling import build_in_slices
        from echogate.proxy.snapshot import LiveConfiguration

        for kind, description, d in self._pending_listens:
            port = await d
            self._ports.append((kind, description, port))
        self._pending_listens = []
        dsn: str | None = None
        if self.dbless is not None:
            self.load_declarative()
        else:
            dsn = await self._connect()
            if dsn is None:
                return
        self.live = LiveConfiguration(store=self.store, plugins=self.plugins, clock=self._reactor,
                                      check_interval=self.settings.config_check_interval,
                                      build=build_in_slices(self._reactor,
                                                            regex_timeout=self.settings.regex_match_timeout),
                                      settle=self._settle_heap if self._settle is not None else None,
                                      missing_plugins=self.settings.missing_plugins,
                                      release=ReleaseInSlices(self._reactor))
        self.live.on_switch(self._configuration_switched)
        await self.live.start()
        self.balancers.start()
        await self._init_plugins()
        if self.settings.dev:
            self._watch_plugins()
        for _, _, port in self._ports:
            if hasattr(port, "startReading"):
                port.startReading()
        if self.settings.workers > 1 and not self.is_worker:
            from echogate.workers import WorkerPool

            if self.dbless is not None:
                # Each worker loads the main process's configuration from a
                # file of its own, written again (and the workers signalled)
                # on every change: see _forward_to_workers.
                self._shared_config = os.path.join(os.path.abspath(self.settings.data_dir),
                                                   f"declarative-config.{os.getpid()}.json")
                os.makedirs(os.path.dirname(self._shared_config), exist_ok=True)
                self._write_shared_config()
            self.workers = WorkerPool(self._reactor, self.settings, dsn or "off",
                                      [a.port for a in self.addresses("proxy")],
                                      declarative_config=self._shared_config or "")
            self.workers.start()
        if self.is_worker:
            self._watch_parent()
        for kind in ("proxy", "admin"):
            for address in self.addresses(kind):
                _log.info("echogate {version} {kind} listening on {address}", version=__version__,
                          kind=kind, address=address)
        _log.info("echogate ready: node {node}, configuration version {v}, plugins: {plugins}",
                  node=self.node_id, v=self.live.current.version, plugins=", ".join(self.plugins) or "none")

    async def _connect(self) -> str | None:
        """
        Reach the database (starting the embedded server when no DSN is
        set), retrying while it is down.

        @return: its DSN, or C{None} when the node was stopped meanwhile.
        """
        from echogate.store.postgres import PostgresStore, SchemaOutdated

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
                    return None
                _log.warn("database {dsn} is unreachable ({why}); retrying in {delay:.1f}s",
                          dsn=redact_dsn(dsn), why=str(e) or type(e).__name__, delay=delay)
                await maybeDeferred(self.store.stop)
                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, 10.0)
        return dsn

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
        if self._settle is not None:
            self._settle()
        size = self.settings.malloc_trim_threshold
        if not tune(self.settings.gc_young_threshold, size) and size and not self._trim_unsupported_said:
            self._trim_unsupported_said = True
            _log.info("malloc_trim_threshold: this C library has no glibc mallopt; its own threshold stays")

    async def _init_plugins(self) -> None:
        from echogate.pdk.cache import Caches
        from echogate.pdk.http import HTTPClient
        from echogate.proxy.configure import ConfigurePhase

        index = self.live.current.plugins
        # (a DB-less node's store has no notices: its invalidations stay on it)
        caches = Caches(self._reactor, self.node_id, publish=getattr(self.store, "notify_nodes", None),
                        listen=getattr(self.store, "subscribe_notices", None))
        node = PluginNode(reactor=self._reactor, dsn=getattr(self.store, "dsn", None), node_id=self.node_id,
                          balancers=self.balancers, http=HTTPClient(self.upstream, self._reactor),
                          caches=caches)
        self.plugin_node = node
        for name, plugin in self.plugins.items():
            # The node first: init and every phase may use its reactor.
            node_service = getattr(plugin, "node_service", None)
            if callable(node_service):
                child = node_service(node)
                if child is not None:
                    child.setServiceParent(self)
                    self.plugin_services[name] = child
            init = getattr(plugin, "init", None)
            if callable(init):
                configs = [e.config for e in index.entries(name)]
                await maybeDeferred(_init_call, init, configs)
        # After every init: configure with the configs current now, then
        # after each switch that changes them (_configuration_switched).
        self.configure_phase = ConfigurePhase(self.plugins)
        await self.configure_phase.start(self.live.current.plugins)

    def _watch_plugins(self) -> None:
        """
        C{--dev}: watch the plugins' files and reload a plugin when one
        changes (L{echogate.reloading.PluginReloader}, a child service).
        """
        from echogate.reloading import PluginReloader

        self.reloader = PluginReloader(self, self._reactor, switched=self._configuration_switched)
        self.reloader.setServiceParent(self)

    # -- stopping ---------------------------------------------------------------

    def stopService(self) -> Deferred:
        """
        Stop gracefully: stop accepting proxy connections, close idle ones,
        let requests in flight finish for up to C{shutdown_timeout} seconds
        (cutting what is left then), while C{GET /status/ready} answers
        503; then stop the admin listener, plugins' services, the workers,
        the upstream pool, the store and the embedded server.
        """
        self._stopping = True
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        proxy_ports = [entry for entry in self._ports if entry[0] == "proxy"]
        self._ports = [entry for entry in self._ports if entry[0] != "proxy"]
        stopped = DeferredList([maybeDeferred(port.stopListening) for _, _, port in proxy_ports])

        def drain(_: Any) -> Deferred:
            site: GatewaySite | None = getattr(self, "proxy_site", None)
            if site is None or not self.ready.called:
                return succeed(None)
            _log.info("stopping: draining requests in flight (up to {timeout} s)",
                      timeout=self.settings.shutdown_timeout)
            return site.drain(self.settings.shutdown_timeout, self._reactor)

        drained = stopped.addCallback(drain)

        def after_drain(_: Any) -> Deferred:
            if self.live is not None:
                self.live.stop()
            self.balancers.stop()
            return DeferredList([maybeDeferred(super(GatewayService, self).stopService), self._close_ports()])

        d = drained.addCallback(after_drain)

        async def rest(_: Any) -> None:
            if self.workers is not None:
                await self.workers.stop()
            if self.clients is not None:
                await self.clients.close()
            await self.prober.close()
            if self._shared_config is not None and os.path.exists(self._shared_config):
                os.remove(self._shared_config)
            stop_store = getattr(self.store, "stop", None)
            if stop_store is not None:
                await maybeDeferred(stop_store)
            if self.embedded is not None:
                await maybeDeferred(self.embedded.stop)

        return d.addCallback(lambda r: ensureDeferred(rest(r)))


@implementer(IStore)
class _LateStore:
    """
    The store as the Admin API sees it: the gateway's store once it is
    connected (until then every call fails with L{echogate.errors.DatabaseUnavailable},
    and C{subscribe} waits for it).
    """

    def __init__(self, service: GatewayService):
        self._service = service

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Deferred:
        store = self._service.store
        if store is None:
            from twisted.internet.defer import fail

            from echogate.errors import DatabaseUnavailable

            return fail(DatabaseUnavailable("The database is not connected yet"))
        answer: Deferred = getattr(store, name)(*args, **kwargs)
        return answer

    def insert(self, entity: str, record: Mapping[str, Any]) -> Deferred:
        return self._call("insert", entity, record)

    def update(self, entity: str, record: Mapping[str, Any]) -> Deferred:
        return self._call("update", entity, record)

    def upsert(self, entity: str, record: Mapping[str, Any]) -> Deferred:
        return self._call("upsert", entity, record)

    def write(self, operations: list[tuple[str, str, Mapping[str, Any]]]) -> Deferred:
        return self._call("write", operations)

    def delete(self, entity: str, id: str) -> Deferred:
        return self._call("delete", entity, id)

    def get(self, entity: str, key: str) -> Deferred:
        return self._call("get", entity, key)

    def page(self, entity: str, size: int, offset: str | None = None, tags: Iterable[str] | None = None,
             tags_any: bool = False, where: Mapping[str, Any] | None = None) -> Deferred:
        return self._call("page", entity, size, offset, tags, tags_any, where)

    def tagged(self, tag: str | None, size: int, offset: str | None = None) -> Deferred:
        return self._call("tagged", tag, size, offset)

    def load(self) -> Deferred:
        return self._call("load")

    def version(self) -> Deferred:
        return self._call("version")

    def subscribe(self, callback: Callable[[int | None], object]) -> Callable[[], None]:
        """
        Subscribe to the connected store; before it is connected, nothing
        is delivered (the caller reloads once it is: no change is missed
        that a load would not show).
        """
        store = self._service.store
        if store is None:
            return lambda: None
        unsubscribe: Callable[[], None] = store.subscribe(callback)
        return unsubscribe


def check_data_dir(path: str) -> None:
    """
    Make sure C{path} is a directory this process can write to (creating
    it if need be), by writing and removing a small file: the embedded
    server keeps its data there.

    @raise SystemExit: with one line saying why C{path} cannot be used (it
        is a file, a parent is not a directory, the file system is
        read-only or full, permission is denied).
    """
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise SystemExit(f"echogate: data_dir {path} is a file, not a directory") from None
    except NotADirectoryError:
        raise SystemExit(f"echogate: data_dir {path} cannot be made: a parent of it is a file") from None
    except OSError as e:
        raise SystemExit(f"echogate: data_dir {path} cannot be made: {e.strerror or e}") from None
    probe = os.path.join(path, f".echogate-write-check-{os.getpid()}")
    try:
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            if os.path.lexists(probe):
                os.remove(probe)
    except OSError as e:
        raise SystemExit(f"echogate: data_dir {path} is not writable: {e.strerror or e}") from None


def exit_on_failure(service: GatewayService) -> None:
    """
    At exit, end the process with C{service}'s L{GatewayService.exit_code}
    when start-up failed: twistd itself exits 0 once the reactor stopped,
    whatever stopped it. Registered with C{atexit} by L{makeService},
    before the embedded server registers its own clean-up, so that runs
    first (C{atexit} runs the last registered first).
    """
    if service.exit_code:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(service.exit_code)


def makeService(options: Options) -> GatewayService:
    """
    Build the service from parsed options (called by twistd before the
    reactor runs). Bad plugin settings, an outdated schema, and (with the
    embedded server) a data directory that cannot be written stop
    start-up with one line; a failure once the reactor runs makes the
    process exit 1 (L{exit_on_failure}).
    """
    from twisted.internet import reactor

    settings: Settings = options.settings
    try:
        plugins = load_plugins(settings.plugins)
    except PluginLoadError as e:
        raise SystemExit(f"echogate: {e}") from None
    for problem in plugins.problems:
        _log.warn("plugins: {problem}", problem=problem)
    for warning in unknown_environment(options.environ):
        _log.warn("{environment}", environment=warning)
    if settings.dbless:
        if settings.workers > 1:
            check_data_dir(os.path.abspath(settings.data_dir))
    elif settings.database:
        from echogate.store.postgres import SchemaOutdated, check_schema_blocking

        try:
            check_schema_blocking(settings.database)
        except SchemaOutdated as e:
            raise SystemExit(f"echogate: {e}") from None
        except Exception as e:  # unreachable now: start anyway and retry
            print(f"echogate: database not reachable yet ({e}); will retry", file=sys.stderr)
    else:
        check_data_dir(os.path.abspath(settings.data_dir))
    service = GatewayService(reactor, settings, plugins)
    if settings.dbless:
        _start_dbless(service, reactor)
    service.bind()
    atexit.register(exit_on_failure, service)
    return service


def _start_dbless(service: GatewayService, reactor: Any) -> None:
    """
    A DB-less node started by twistd: its C{declarative_config} file is
    loaded before the reactor runs (one that cannot be read or is invalid
    stops start-up, its errors on one line), and SIGHUP reads it again
    (L{GatewayService.reload_declarative}).

    @raise SystemExit: the file cannot be read or is invalid.
    """
    import signal

    from echogate.declarative import DeclarativeError
    from echogate.declarative.dbless import error_lines

    path = service.settings.declarative_config
    try:
        service.load_declarative()
    except OSError as e:
        raise SystemExit(f"echogate: declarative_config: cannot read {path}: {e.strerror or e}") from None
    except DeclarativeError as e:
        raise SystemExit(f"echogate: declarative_config {path} is invalid: " + "; ".join(error_lines(e))) from None

    def hangup(signum: int, frame: Any) -> None:
        reactor.callFromThread(service.reload_declarative)

    signal.signal(signal.SIGHUP, hangup)
