"""
The C{configure} phase (L{echogate.interfaces.IPluginPhases.configure}):
each plugin that has one is called with all its enabled configs at
start-up, and again whenever a new configuration snapshot changed them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate.proxy.runner import as_deferred

__all__ = ["ConfigurePhase"]

_log = Logger(namespace="echogate.plugins")


class ConfigurePhase:
    """
    Calls the C{configure} phase of a node's plugins: L{start} once, then
    L{switched} with every new snapshot's plugin index
    (L{echogate.proxy.plan.PluginIndex}). A plugin's calls run one after
    the other (a call returning a Deferred is waited for before the next
    one), and its failures are logged.

    @param plugins: the node's plugins, by name.
    """

    def __init__(self, plugins: Mapping[str, Any]):
        self._methods: dict[str, Callable[..., Any]] = {}
        for name, plugin in plugins.items():
            method = getattr(plugin, "configure", None)
            if callable(method):
                self._methods[name] = method
        self._given: dict[str, list[Any]] = {}
        self._last: dict[str, Deferred[None]] = {}
        self.started = False

    def start(self, index: Any) -> Deferred[None]:
        """
        Call every plugin's C{configure} with its configs in C{index}.

        @return: a Deferred firing once they have all returned (failures
            are logged, not passed on).
        """
        self.started = True
        calls = [self._call(name, self._configs(index, name)) for name in self._methods]
        return DeferredList(calls).addCallback(lambda _: None)

    def switched(self, index: Any) -> None:
        """
        A new snapshot is current: call C{configure} of each plugin whose
        configs changed (nothing before L{start}).
        """
        if not self.started:
            return
        for name in self._methods:
            configs = self._configs(index, name)
            if configs != self._given.get(name):
                self._call(name, configs)

    @staticmethod
    def _configs(index: Any, name: str) -> list[Any]:
        return [entry.config for entry in index.entries(name)]

    def _call(self, name: str, configs: list[Any]) -> Deferred[None]:
        self._given[name] = configs
        method = self._methods[name]

        def run(_: object) -> Deferred[None]:
            d: Deferred[None] = maybeDeferred(lambda: as_deferred(method(list(configs))))
            return d.addErrback(failed)

        def failed(failure: Failure) -> None:
            _log.failure("plugin {plugin}'s configure failed", failure, plugin=name)

        done: Deferred[None] = Deferred()

        def finished(_: object) -> None:
            done.callback(None)

        previous = self._last.get(name)
        d = (previous if previous is not None else succeed(None)).addCallback(run)
        # (the chain's result stays None: run's errback logs failures)
        d.addCallback(finished)
        self._last[name] = d
        return done
