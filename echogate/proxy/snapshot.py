"""
The gateway's view of its configuration: an immutable snapshot built from
the stored entities, swapped in one assignment when the configuration
changes, so that no request ever sees half a table.
"""
from __future__ import annotations

from typing import Any, Callable, Generator, Mapping

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate.pdk.entities import declare_storage
from echogate.proxy.reusing import Sources
from echogate.store.data import ConfigurationData

_log = Logger(namespace="echogate.configuration")


@attrs.frozen
class Snapshot:
    """
    One compiled configuration: the router, the plugin index, the consumers
    and credentials (an L{echogate.pdk.credentials.CredentialIndex}), and
    load balancing's records as stored (C{upstreams}, C{targets},
    C{target_health_overrides}), which the node's L{echogate.balancer.Balancers}
    takes when the snapshot is swapped in. Never changed: a change builds a new one.
    """

    version: int
    router: Any
    plugins: Any
    rewrite_steps: tuple[Any, ...]
    credentials: Any = None
    upstreams: tuple[dict[str, Any], ...] = ()
    targets: tuple[dict[str, Any], ...] = ()
    target_health_overrides: tuple[dict[str, Any], ...] = ()
    #: The TLS records as stored: certificates, their SNI names, CA certificates.
    certificates: tuple[dict[str, Any], ...] = ()
    snis: tuple[dict[str, Any], ...] = ()
    ca_certificates: tuple[dict[str, Any], ...] = ()
    #: How each https service's certificate is verified (an
    #: L{echogate.upstream.tls.TLSPolicies} over the records above).
    tls_policies: Any = None
    sources: Sources | None = None  # what the plugin and credential indexes were built from

    @classmethod
    def build(cls, data: ConfigurationData, plugins: Mapping[str, Any],
              previous: "Snapshot | None" = None, missing_plugins: str = "refuse",
              regex_timeout: float | None = 0.005) -> "Snapshot":
        """
        Compile C{data} with the enabled C{plugins}.

        @param previous: the snapshot this one replaces: routes that did
            not change are taken from its router, not compiled again (see
            L{echogate.routing.router.Router.build}).
        @param missing_plugins: C{"refuse"} (requests that a stored config
            of a plugin not in C{plugins} applies to are answered 500) or
            C{"skip"} (they run without it); see
            L{echogate.proxy.plan.PluginIndex}.
        @param regex_timeout: the time budget of one regex match in
            routing, in seconds (C{regex_match_timeout}; C{None}: none).
        """
        from echogate.routing.router import finish

        return finish(cls.building(data, plugins, previous, missing_plugins, regex_timeout))

    @classmethod
    def building(cls, data: ConfigurationData, plugins: Mapping[str, Any],
                 previous: "Snapshot | None" = None, missing_plugins: str = "refuse",
                 regex_timeout: float | None = 0.005) -> Generator[None, None, "Snapshot"]:
        """
        L{build}, in steps: a generator that yields (C{None}) between short
        pieces of the work, the routes a hundred at a time (see
        L{echogate.routing.router.Router.building}), and returns the
        L{Snapshot}. It only reads its arguments, so its caller may pause
        it between steps and serve requests from C{previous} meanwhile
        (L{echogate.proxy.compiling.build_in_slices}).
        """
        from echogate.routing.router import Router
        from echogate.upstream.tls import TLSPolicies

        services = {s["id"]: s for s in data.services}
        sources = Sources.of(data, plugins, missing_plugins)
        index = yield from sources.plugin_index(previous)
        yield None
        router = yield from Router.building(data.routes, services,
                                            previous=previous.router if previous is not None else None,
                                            regex_timeout=regex_timeout)
        yield None
        credentials = yield from sources.credential_index(data, previous)
        return cls(
            version=data.version,
            router=router,
            plugins=index,
            rewrite_steps=index.global_steps.rewrite_steps,
            credentials=credentials,
            sources=sources,
            upstreams=data.upstreams,
            targets=data.targets,
            target_health_overrides=data.target_health_overrides,
            certificates=data.certificates,
            snis=data.snis,
            ca_certificates=data.ca_certificates,
            tls_policies=TLSPolicies(data.ca_certificates, data.certificates),
        )


class LiveConfiguration:
    """
    The current L{Snapshot} of a running gateway, kept up to date from the
    store: on every change notification (LISTEN/NOTIFY), after the
    notification connection comes back (full reload), and by a cheap
    periodic version check that catches anything a notification missed.

    Requests read L{current} once each; a reload swaps it in one
    assignment, once the new snapshot is built whole by C{build} (by
    default here, at once; the gateway builds in short slices of the
    reactor thread, L{echogate.proxy.compiling.build_in_slices}, so that a
    large configuration does not stop the proxy while it compiles). C{build}
    is called with the loaded data, the plugins and the current snapshot
    (whose compiled routes and unchanged indexes it reuses) and
    C{missing_plugins=}, and may return a Deferred. A build that fails is
    logged, and the current snapshot stays; changes notified while a load
    or build is under way are loaded once more after it (one more load for
    all of them).

    While the current snapshot has configs of plugins this node has not
    loaded and C{missing_plugins} is C{"refuse"}, an error naming them is
    logged at once and then every C{missing_interval} seconds; with
    C{"skip"}, a warning after each load.

    L{on_switch} callbacks are called, on the reactor thread, with each
    new snapshot once it is current.

    @param release: called with each snapshot once another has replaced
        it (the gateway's is an L{echogate.heap.ReleaseInSlices}, which
        frees it a slice at a time once requests are done with it); its
        C{stop()}, if it has one, is called by L{stop}.
    @ivar missing_plugins: C{"refuse"} or C{"skip"} (see L{Snapshot.build}).
    """

    def __init__(self, *, store: Any, plugins: Mapping[str, Any], clock: IReactorTime,
                 check_interval: float = 5.0,
                 build: Callable[..., Any] | None = None,
                 settle: Callable[[], object] | None = None, settle_delay: float = 1.0,
                 missing_plugins: str = "refuse", missing_interval: float = 60.0,
                 release: Callable[[Snapshot], object] | None = None):
        self._store = store
        self._plugins = plugins
        # The entities the plugins declare, kept in the store's generic table.
        declare_storage(store, plugins)
        self.missing_plugins = missing_plugins
        self._missing_interval = missing_interval
        self._missing_said: list[str] = []
        self._missing_reminder: LoopingCall | None = None
        self._clock = clock
        self._check_interval = check_interval
        self._build = build or Snapshot.build
        # settle (the gateway's is settle_heap, a full collection: about
        # 80 ms with 10,000 routes, during which nothing else runs) runs
        # once changes have been quiet for settle_delay, not after each of
        # a burst of them.
        self._settle = settle
        self._settle_delay = settle_delay
        self._settling: Any = None
        self._release = release
        self._stopped = False
        self.current = Snapshot.build(ConfigurationData(version=-1), plugins, missing_plugins=missing_plugins)
        self._loading: Deferred | None = None
        self._again = False
        self._waiters: list[Deferred] = []
        # Callers of catch_up waiting on the load under way: (version, waiter).
        self._riders: list[tuple[int, Deferred]] = []
        self._unsubscribe: Any = None
        self._checker: LoopingCall | None = None
        self._switched: list[Callable[[Snapshot], object]] = []

    def on_switch(self, callback: Callable[[Snapshot], object]) -> None:
        """
        Call C{callback(snapshot)} each time a new snapshot becomes
        L{current} (not for the empty one made at construction). What it
        raises is logged, and the snapshot stays current.
        """
        self._switched.append(callback)

    def reload(self) -> Deferred:
        """
        Load everything from the store and swap in a new snapshot. Calls
        made while a load runs are coalesced into one more load after it.

        @return: a Deferred that fires once a load that started after this
            call has finished.
        """
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        if self._loading is not None:
            self._again = True
        else:
            self._load()
        return waiter

    def catch_up(self) -> Deferred:
        """
        After a write to the store has been committed: make sure the
        snapshot serves it. The store's version now is at least the
        write's; a load that reaches it will do, and the notification of
        the write has usually started one already, so the write waits for
        that load instead of for one more after it (with 10,000 routes,
        each load of the whole configuration took 100 to 450 ms under
        load, and every Admin API write used to wait for two).

        @return: a Deferred that fires once the current snapshot's version
            is at least the store's at this call, or once a load that
            started after this call has finished (should the store's
            version have gone back meanwhile).
        """
        return maybeDeferred(self._store.version).addCallbacks(self._reach, lambda _: self.reload())

    def _reach(self, version: int) -> Deferred:
        """
        A snapshot of at least C{version}: the current one, the one the load
        under way makes if it gets there, else one more load's.
        """
        if self.current.version >= version >= 0:
            return succeed(None)
        if self._loading is None:
            return self.reload()
        waiter: Deferred = Deferred()
        self._riders.append((version, waiter))
        return waiter

    def _load(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._again = False
        self._loading = d = maybeDeferred(self._store.load)

        def loaded(data: ConfigurationData) -> Deferred | None:
            if data.version == self.current.version and self.current.version >= 0:
                return None
            return maybeDeferred(self._build, data, self._plugins, self.current,
                                 missing_plugins=self.missing_plugins).addCallbacks(
                built, unbuilt, callbackArgs=(data,), errbackArgs=(data,))

        def unbuilt(failure: Failure, data: ConfigurationData) -> Failure:
            _log.failure("could not build the snapshot of configuration version {version};"
                         " still serving version {current}", failure, version=data.version,
                         current=self.current.version)
            return failure

        def built(snapshot: Snapshot, data: ConfigurationData) -> None:
            replaced, self.current = self.current, snapshot
            if self._release is not None:
                self._release(replaced)
            for callback in list(self._switched):
                try:
                    callback(snapshot)
                except Exception:
                    _log.failure("a configuration switch callback failed")
            self._settle_later()
            self._watch_missing(snapshot)

        def done(result: Any) -> None:
            self._loading = None
            riders, self._riders = self._riders, []
            for version, waiter in riders:
                if isinstance(result, Failure) or self.current.version < version:
                    # This load failed, or started before their write was
                    # committed: they wait for the next one, as reload()
                    # calls made during a load do.
                    self._waiters.append(waiter)
                else:
                    waiter.callback(None)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)
            if self._again or self._waiters:
                self._load()

        d.addCallback(loaded)
        d.addBoth(done)

    @property
    def missing(self) -> list[str]:
        """
        The plugins that configs of the current snapshot name but this
        node has not loaded, sorted.
        """
        return list(self.current.plugins.missing)

    def _watch_missing(self, snapshot: Snapshot) -> None:
        """
        Say which configured plugins are missing: with C{skip}, a warning
        after each load; with C{refuse}, an error now when they changed
        and every C{missing_interval} seconds while there are any.
        """
        index = snapshot.plugins
        if not index.refusing:
            if index.missing:
                _log.warn("plugins configured but not loaded on this node: {names};"
                          " requests run without them (missing_plugins = skip)",
                          names=", ".join(index.missing))
            return
        missing = list(index.missing)
        if missing == self._missing_said:
            return
        self._missing_said = missing
        self._stop_missing_reminder()
        if missing and not self._stopped:
            self._missing_reminder = LoopingCall(self._say_missing)
            self._missing_reminder.clock = self._clock
            self._missing_reminder.start(self._missing_interval, now=True)

    def _say_missing(self) -> None:
        names = self.current.plugins.missing
        if names:
            _log.error(
                "plugins configured but not loaded on this node: {names}; requests their configs apply to"
                " are refused with 500 until they are loaded (--plugins, PYTHONPATH) or their configs removed",
                names=", ".join(names), missing_plugins=list(names))

    def _stop_missing_reminder(self) -> None:
        if self._missing_reminder is not None and self._missing_reminder.running:
            self._missing_reminder.stop()
        self._missing_reminder = None

    def _cancel_settling(self) -> None:
        if self._settling is not None and self._settling.active():
            self._settling.cancel()
        self._settling = None

    def _settle_later(self) -> None:
        self._cancel_settling()
        if self._settle is not None and not self._stopped:
            self._settling = self._clock.callLater(self._settle_delay, self._settle)

    def _notified(self, version: int | None) -> None:
        """
        A change notification (C{version} is the stored version it made,
        C{None} when unknown). Versions only grow, so one that is not newer
        than the current snapshot's is stale: a burst of writes delivers its
        notifications after the node has loaded the last of them, and each
        would otherwise read the whole configuration again. (Should the
        stored version go back, a restored database, the periodic check
        still reloads.) A newer version that the load under way reaches
        needs no load of its own.
        """
        if version is None:
            self.reload().addErrback(self._reload_failed)
        elif version > self.current.version:
            self._reach(version).addErrback(self._reload_failed)

    def _reload_failed(self, failure: Failure) -> None:
        _log.warn("could not reload the configuration ({why}); still serving version {version}",
                  why=failure.getErrorMessage(), version=self.current.version)

    def _check(self) -> Deferred:
        d = maybeDeferred(self._store.version)

        def compare(version: int) -> None:
            if version != self.current.version:
                self._notified(None)

        d.addCallback(compare)
        d.addErrback(self._check_failed)
        return d

    def _check_failed(self, failure: Failure) -> None:
        # The next check (or a change notification) tries again.
        _log.warn("could not check the configuration version ({why}); still serving version {version}",
                  why=failure.getErrorMessage(), version=self.current.version)

    def start(self) -> Deferred:
        """
        Subscribe to changes, load once, and start the periodic check.
        """
        self._unsubscribe = self._store.subscribe(self._notified)
        self._checker = LoopingCall(self._check)
        self._checker.clock = self._clock
        self._checker.start(self._check_interval, now=False)
        return self.reload()

    def stop(self) -> None:
        self._stopped = True
        self._cancel_settling()
        stop_release = getattr(self._release, "stop", None)
        if stop_release is not None:
            stop_release()
        self._stop_missing_reminder()
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
