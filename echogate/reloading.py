"""
Hot reload of plugins for their authors (C{--dev}, C{dev = on}).

A node in development mode watches the files its plugins came from: the
drop-in module C{twisted/plugins/<name>.py} that C{getPlugins} found each
plugin in, and, when the plugin's class lives in a package of its own, the
modules of that package the process has imported. It polls their
modification times with a L{LoopingCall} on the node's reactor every
L{INTERVAL} seconds, a bounded number of files per tick (no threads, no
inotify). When one changes, L{PluginReloader} reloads the plugin:

  1. a fresh import of the package's modules, the plugin's module, then
     the drop-in (new module objects, as C{importlib.reload} would make
     but with new globals: the old object's functions keep the module
     globals they had, so a request in flight sees none of the new
     version's); the plugin is read again from the drop-in's globals
     (L{echogate.registry.plugins_in});
  2. the registry's start-up checks (L{echogate.registry.check_plugin});
  3. every stored config of the plugin, validated with the new
     C{config_schema};
  4. the new object's C{node_service(node)}, C{init(configs)} and
     C{configure(configs)}, as at start-up;
  5. the swap: the node's plugin mapping (which the Admin API and the
     live configuration read) names the new object, a new snapshot is
     built with it and made current, and the old object's node service is
     stopped.

Requests already in flight hold the snapshot they started with, so they
finish with the old object; the next request gets the new one.

A reload that fails at any step (a syntax error, an import that raises, a
failing check, a stored config the new schema refuses, a failing hook)
changes nothing: the old modules are put back in C{sys.modules}, the old
object keeps serving, and the reason is logged on one line (with the file
and line of a syntax error or failing import; one line per refused
config).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
import traceback
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Protocol

import attrs
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from echogate.errors import SchemaViolation
from echogate.proxy.configure import ConfigurePhase
from echogate.proxy.runner import as_deferred
from echogate.proxy.snapshot import Snapshot
from echogate.registry import PluginLoadError, check_plugin, dropin_of, is_bundled, plugins_in

__all__ = ["INTERVAL", "FileWatch", "PluginReloader", "PluginSources", "ReloadedConfigure", "sources_of"]

_log = Logger(namespace="echogate.reloading")

#: Seconds between two polls of the watched files.
INTERVAL = 0.2

#: Files stat'ed per poll, at most.
PER_TICK = 100


@attrs.frozen
class PluginSources:
    """
    Where one plugin came from.

    @ivar name: the plugin's name.
    @ivar dropin: the drop-in module's name (C{twisted.plugins.<name>}).
    @ivar modules: the modules to reload, in order: the plugin's package's
        modules, the plugin's own module, the drop-in last.
    @ivar files: the source file of each of C{modules}.
    """

    name: str
    dropin: str
    modules: tuple[str, ...]
    files: tuple[str, ...]


def _source(module: ModuleType | None) -> str | None:
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path.endswith(".py"):
        return os.path.abspath(path)
    return None


def sources_of(name: str, plugin: object) -> PluginSources | None:
    """
    The files of C{plugin} to watch, or C{None} for a plugin that ships
    with echogate or whose drop-in is not known.
    """
    if is_bundled(plugin):
        return None
    found = dropin_of(plugin)
    if found is None or _source(sys.modules.get(found[0])) is None:
        return None
    dropin = found[0]
    own = type(plugin).__module__
    modules: list[str] = []
    if own != dropin and not own.startswith(("echogate.", "twisted.")) and _source(sys.modules.get(own)):
        package = own.rpartition(".")[0]
        if package:
            # The modules of the plugin's package, the package first.
            modules.extend(sorted(
                module_name for module_name, module in list(sys.modules.items())
                if (module_name == package or module_name.startswith(package + "."))
                and module_name != own and _source(module) is not None))
        modules.append(own)
    modules.append(dropin)
    files = tuple(str(_source(sys.modules[m])) for m in modules)
    return PluginSources(name=name, dropin=dropin, modules=tuple(modules), files=files)


class FileWatch:
    """
    Polls files' modification times and sizes, C{per_tick} files per call
    of L{tick}, round the list.

    @param changed: called with the path of each file that changed since
        it was last seen (not for the first look at a file).
    """

    def __init__(self, changed: Callable[[str], object], per_tick: int = PER_TICK):
        self._changed = changed
        self._per_tick = per_tick
        self._seen: dict[str, tuple[int, int] | None] = {}
        self._order: list[str] = []
        self._next = 0

    def watch(self, paths: Iterable[str]) -> None:
        """
        Watch C{paths} too, from their state now.
        """
        for path in paths:
            if path not in self._seen:
                self._seen[path] = self._stat(path)
                self._order.append(path)

    @staticmethod
    def _stat(path: str) -> tuple[int, int] | None:
        try:
            status = os.stat(path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def tick(self) -> None:
        """
        Look at the next C{per_tick} files.
        """
        for _ in range(min(self._per_tick, len(self._order))):
            self._next %= len(self._order)
            path = self._order[self._next]
            self._next += 1
            now = self._stat(path)
            if now != self._seen[path]:
                self._seen[path] = now
                self._changed(path)


class _HeldIndex:
    """
    A plugin index as a node's first configure phase sees it once some of
    its plugins were reloaded: their configs as they were at the reload
    (so that it never calls the old objects again), the others' as now.
    """

    def __init__(self, index: Any, held: Mapping[str, Any]):
        self._index = index
        self._held = held

    def entries(self, name: str) -> list[Any]:
        index = self._held.get(name, self._index)
        entries: list[Any] = index.entries(name)
        return entries


class ReloadedConfigure:
    """
    A node's C{configure} phase once plugins were reloaded: the phase it
    started with, for the plugins loaded at start-up, and a
    L{ConfigurePhase} of its own for each reloaded plugin.

    @param before: the node's phase until now.
    """

    def __init__(self, before: Any):
        self._before = before
        self._held: dict[str, Any] = {}
        self._own: dict[str, ConfigurePhase] = {}

    def replace(self, name: str, plugin: object, index: Any) -> Deferred[None]:
        """
        From now on call C{plugin}'s C{configure} for C{name}: now, with its
        configs in C{index}, then after each switch that changes them.
        """
        self._held.setdefault(name, index)
        phase = self._own[name] = ConfigurePhase({name: plugin})
        return phase.start(index)

    def switched(self, index: Any) -> None:
        """
        A new snapshot is current (see L{ConfigurePhase.switched}).
        """
        if self._before is not None:
            self._before.switched(_HeldIndex(index, self._held))
        for phase in self._own.values():
            phase.switched(index)


class ReloadingNode(Protocol):
    """
    What L{PluginReloader} needs of its node (L{echogate.service.GatewayService}).
    """

    plugins: dict[str, Any]
    live: Any
    store: Any
    settings: Any
    plugin_node: Any
    plugin_services: dict[str, IService]
    configure_phase: Any

    def addService(self, service: IService) -> Any: ...


class PluginReloader(Service):
    """
    Watches a node's plugins' files and reloads a plugin when one of its
    files changes (see the module's docstring).

    @param node: the node, started (its plugins initialised).
    @param clock: the node's reactor.
    @param switched: what the node does with a new snapshot once it is
        current (its live configuration's switch callback).
    """

    def __init__(self, node: ReloadingNode, clock: IReactorTime,
                 switched: Callable[[Snapshot], object], interval: float = INTERVAL,
                 per_tick: int = PER_TICK):
        self._node = node
        self._clock = clock
        self._switched = switched
        self._interval = interval
        self.sources: dict[str, PluginSources] = {}
        self._by_file: dict[str, set[str]] = {}
        self._files = FileWatch(self._file_changed, per_tick)
        self._pending: list[str] = []
        self._changed_at: dict[str, float] = {}
        self._running = False
        self._poll: LoopingCall | None = None
        for name, plugin in sorted(node.plugins.items()):
            self._watch(name, plugin)

    def _watch(self, name: str, plugin: object) -> None:
        sources = sources_of(name, plugin)
        if sources is None:
            return
        self.sources[name] = sources
        for path in sources.files:
            self._by_file.setdefault(path, set()).add(name)
        self._files.watch(sources.files)

    def startService(self) -> None:
        super().startService()
        self._poll = LoopingCall(self._files.tick)
        self._poll.clock = self._clock
        self._poll.start(self._interval, now=False)
        _log.info("dev: watching {count} files of plugins {names} every {interval} s for changes",
                  count=len(self._by_file), names=", ".join(sorted(self.sources)) or "none",
                  interval=self._interval)

    def stopService(self) -> None:
        super().stopService()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None

    def _file_changed(self, path: str) -> None:
        for name in sorted(self._by_file.get(path, ())):
            if name not in self._pending:
                self._pending.append(name)
                self._changed_at[name] = time.monotonic()
        if not self._running:
            ensureDeferred(self._drain())

    async def _drain(self) -> None:
        self._running = True
        try:
            while self._pending:
                name = self._pending.pop(0)
                try:
                    await self.reload(name)
                except Exception:
                    _log.failure("dev: reloading plugin {name} failed", name=name)
        finally:
            self._running = False

    async def reload(self, name: str) -> bool:
        """
        Reload plugin C{name} from its files.

        @return: whether the new version now serves.
        """
        sources = self.sources[name]
        node = self._node
        old = node.plugins[name]
        saved = {m: sys.modules.get(m) for m in sources.modules}

        def keep_old(why: str, **fields: Any) -> bool:
            for module_name, module in saved.items():
                _put_back(module_name, module)
            _log.error("dev: " + why + "; plugin {name} {version} keeps serving", name=name,
                       version=getattr(old, "version", "?"), **fields)
            return False

        try:
            importlib.invalidate_caches()
            for module_name in sources.modules:
                module = sys.modules.pop(module_name, None)
                if module is not None:
                    _forget_bytecode(module)
            for module_name in sources.modules:
                importlib.import_module(module_name)
        except Exception as e:
            where = _where(e, sources.files)
            return keep_old("{where}: {error}", where=where, error=_one_line(e))
        new = plugins_in(sys.modules[sources.dropin]).get(name)
        if new is None:
            return keep_old("{file} provides no plugin named {name} any more", file=sources.files[-1])
        try:
            check_plugin(new)
        except PluginLoadError as e:
            return keep_old("{file}: {error}", file=sources.files[-1], error=str(e))
        data = await maybeDeferred(node.store.load)
        refused = _refused_configs(name, new, data.plugins)
        if refused:
            for record_id, error in refused:
                _log.error("dev: plugin {name}: stored config {id} does not validate with the new schema"
                           " ({error})", name=name, id=record_id, error=error)
            return keep_old("{count} stored configs refused by the new schema", count=len(refused))
        index = node.live.current.plugins
        try:
            child = await self._start_new(name, new, index)
        except Exception as e:
            return keep_old("the new version's node_service or init failed: {error}", error=_one_line(e))
        self._swap(name, new, child, index)
        await self._rebuild()
        since = self._changed_at.pop(name, None)
        _log.info("dev: plugin {name} reloaded ({old} -> {new}) from {file}{took}", name=name,
                  old=getattr(old, "version", "?"), new=getattr(new, "version", "?"), file=sources.files[-1],
                  took="" if since is None else f" in {(time.monotonic() - since) * 1000:.0f} ms after the change")
        self._rewatch(name, new)
        return True

    async def _start_new(self, name: str, new: object, index: Any) -> IService | None:
        """
        C{new}'s C{node_service(node)}, then C{init(configs)}, as at
        start-up; the service is started with the node's.
        """
        node = self._node
        child: IService | None = None
        hook = getattr(new, "node_service", None)
        if callable(hook):
            child = hook(node.plugin_node)
            if child is not None:
                child.setServiceParent(node)
        try:
            init = getattr(new, "init", None)
            if callable(init):
                configs = [entry.config for entry in index.entries(name)]
                await maybeDeferred(lambda: as_deferred(init(configs)))
        except Exception:
            if child is not None:
                await maybeDeferred(child.disownServiceParent)
            raise
        return child

    def _swap(self, name: str, new: object, child: IService | None, index: Any) -> None:
        """
        Make C{new} the node's plugin C{name}: in its mapping, its plugin
        services and its configure phase; stop the old object's service.
        """
        node = self._node
        phase = node.configure_phase
        if not isinstance(phase, ReloadedConfigure):
            phase = node.configure_phase = ReloadedConfigure(phase)
        phase.replace(name, new, index)
        node.plugins[name] = new
        old_child = node.plugin_services.pop(name, None)
        if child is not None:
            node.plugin_services[name] = child
        if old_child is not None:
            maybeDeferred(old_child.disownServiceParent).addErrback(
                lambda f: _log.failure("dev: stopping the old node service of {name} failed", f, name=name))

    async def _rebuild(self) -> None:
        """
        Build the next snapshot with the node's plugins as they are now and
        make it current.
        """
        live = self._node.live
        # A load under way may have read the mapping before the swap: let
        # it finish; every load after it reads the new one.
        await live.reload()
        data = await maybeDeferred(self._node.store.load)
        if data.version < live.current.version:
            return  # a newer load, made with the new mapping, is current
        snapshot = Snapshot.build(data, self._node.plugins, live.current, missing_plugins=live.missing_plugins,
                                  regex_timeout=self._node.settings.regex_match_timeout)
        live.current = snapshot
        self._switched(snapshot)

    def _rewatch(self, name: str, plugin: object) -> None:
        """
        Watch what C{plugin} came from now (a reload may import new modules).
        """
        before = self.sources.pop(name, None)
        if before is not None:
            for path in before.files:
                self._by_file.get(path, set()).discard(name)
        self._watch(name, plugin)
        if name not in self.sources and before is not None:
            self.sources[name] = before
            for path in before.files:
                self._by_file.setdefault(path, set()).add(name)


def _refused_configs(name: str, plugin: object, records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """
    The stored configs of plugin C{name} that C{plugin}'s schema refuses:
    each one's id and why.
    """
    schema = getattr(plugin, "config_schema", None)
    refused: list[tuple[str, str]] = []
    for record in records:
        if record.get("name") != name or schema is None:
            continue
        try:
            schema.validate(dict(record.get("config") or {}))
        except SchemaViolation as e:
            refused.append((str(record.get("id")), str(e.args[0]) if e.args else type(e).__name__))
    return refused


def _put_back(name: str, module: ModuleType | None) -> None:
    """
    Make C{module} (the one from before a failed reload) C{name} again, in
    C{sys.modules} and as its package's attribute.
    """
    if module is None:
        sys.modules.pop(name, None)
        return
    sys.modules[name] = module
    package, _, attribute = name.rpartition(".")
    if package in sys.modules:
        setattr(sys.modules[package], attribute, module)


def _forget_bytecode(module: ModuleType) -> None:
    """
    Remove C{module}'s cached bytecode: it is only checked against the
    source's size and modification second, so a file saved twice within
    one second at the same size would reload the stale code.
    """
    source = _source(module)
    if source is None:
        return
    try:
        os.remove(importlib.util.cache_from_source(source))
    except (OSError, NotImplementedError, ValueError):
        pass


def _where(error: BaseException, files: Iterable[str]) -> str:
    """
    C{file:line} of C{error}: a syntax error's own, else the deepest frame
    in one of the watched C{files}, else the deepest frame.
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    watched = set(files)
    for frame in reversed(frames):
        if os.path.abspath(frame.filename) in watched:
            return f"{frame.filename}:{frame.lineno}"
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return "?"


def _one_line(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg}"
    return " ".join(f"{type(error).__name__}: {error}".split())
