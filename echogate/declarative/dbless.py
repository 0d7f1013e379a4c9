"""
DB-less mode (C{database = off}): the node's entities are those of one
declarative configuration, read from C{declarative_config} at start-up and
on SIGHUP, or posted to the Admin API's C{/config}.

L{DBlessConfiguration} loads a configuration as a DB-less node must (see
L{dbless_plugins}) and makes it the content of the node's
L{DeclaredStore <echogate.store.declared.DeclaredStore>}, whose change
notification makes the live configuration build and swap in the new
snapshot.

Loading (parsing and validating, which hashes basic-auth passwords) only
reads the text and the plugins' schemas, so the node runs it in its
reactor's thread pool (the C{run_in_thread} it gives
L{DBlessConfiguration}): the proxy keeps answering while a large
configuration loads. Applying it stays on the reactor thread.

Plugins whose configurations need a database (rate-limiting's C{cluster}
policy) say so with an optional C{dbless_config_schema} attribute: the
C{config_schema} configurations are validated with on a DB-less node.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred

from echogate.declarative.config import Declarative
from echogate.declarative.exporting import export
from echogate.declarative.layout import ENTITY_ORDER
from echogate.declarative.loading import load, load_data
from echogate.declarative.problems import DeclarativeError
from echogate.store.declared import DeclaredStore

__all__ = ["DBlessConfiguration", "dbless_plugins", "error_lines", "run_in_line"]


def run_in_line(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    """
    Call C{f(*args, **kwargs)} now, in the caller's thread: the
    C{run_in_thread} of a L{DBlessConfiguration} given none (unit tests'
    configurations load synchronously).

    @return: a L{Deferred} already fired with C{f}'s result or exception.
    """
    return maybeDeferred(f, *args, **kwargs)


class _DBlessPlugin:
    """
    A plugin as a DB-less node validates its configurations: its
    C{dbless_config_schema} as its C{config_schema}, everything else its own.
    """

    def __init__(self, plugin: Any, schema: Any):
        self._plugin = plugin
        self.config_schema = schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)


def dbless_plugins(plugins: Mapping[str, Any]) -> dict[str, Any]:
    """
    C{plugins} (name to plugin) as a DB-less node validates configurations
    with: a plugin with a C{dbless_config_schema} is seen with that schema
    as its C{config_schema} (rate-limiting's refuses the C{cluster}
    policy); the others as they are.
    """
    seen: dict[str, Any] = {}
    for name, plugin in plugins.items():
        schema = getattr(plugin, "dbless_config_schema", None)
        seen[name] = plugin if schema is None else _DBlessPlugin(plugin, schema)
    return seen


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for position, value in enumerate(node):
            if value is not None:
                yield from _leaves(value, f"{prefix}[{position}]")
    elif node is not None:
        yield prefix, str(node)


def error_lines(error: DeclarativeError) -> list[str]:
    """
    One line per error of C{error}, for a log: C{"service 'example':
    url: ..."}, C{"plugin 'rate-limiting': config.policy: ..."}, or the
    place in the file of an error that belongs to no entity
    (C{"services[2]: expected a record"}).
    """
    lines: list[str] = []
    for entry in error.flattened_errors:
        who = str(entry.get("entity_type", "entity"))
        if "entity_name" in entry:
            who += f" {entry['entity_name']!r}"
        elif "entity_id" in entry:
            who += f" {entry['entity_id']}"
        for problem in entry.get("errors", ()):
            field = problem.get("field")
            lines.append(f"{who}: {field}: {problem['message']}" if field else f"{who}: {problem['message']}")
    lines.extend(f"{place}: {message}" if place != "error" else message
                 for place, message in _leaves(error.remaining, ""))
    return lines or [error.message]


class DBlessConfiguration:
    """
    The configuration of a DB-less node.

    @ivar store: the node's store, whose content L{apply} replaces.
    @ivar path: the C{declarative_config} file (C{None}: none; the node
        starts empty and waits for C{POST /config}).
    @ivar current: the configuration applied last, or C{None}.
    @ivar updating: a L{DeferredLock} held from the start of a load
        (L{load_off_reactor}, L{read_file_off_reactor}) to its L{apply}, so
        that configurations are applied in the order they arrived, whichever
        loads faster.
    """

    def __init__(self, store: DeclaredStore, plugins: Mapping[str, Any], path: str | None = None,
                 run_in_thread: Callable[..., Deferred[Any]] | None = None):
        """
        @param run_in_thread: calls a function with arguments elsewhere than
            the reactor thread (the node's reactor thread pool) and returns
            a L{Deferred} of its result, fired on the reactor thread; what
            L{load_off_reactor} and L{read_file_off_reactor} load with.
            Without one, L{run_in_line}: they load in the caller's thread.
        """
        self.store = store
        self.path = os.path.abspath(path) if path else None
        self.current: Declarative | None = None
        self.updating = DeferredLock()
        self._plugins = dbless_plugins(plugins)
        self._run_in_thread = run_in_thread if run_in_thread is not None else run_in_line

    @property
    def config_hash(self) -> str | None:
        """
        The hash of the applied configuration (L{Declarative.config_hash}),
        or C{None} before the first.
        """
        return self.current.config_hash if self.current is not None else None

    def load(self, text: str | bytes) -> Declarative:
        """
        Load C{text} (YAML or JSON) as this node would apply it.

        @raise DeclarativeError: every error in it.
        """
        return load(text, self._plugins)

    def load_data(self, data: Mapping[str, Any]) -> Declarative:
        """
        Load already parsed data as this node would apply it.

        @raise DeclarativeError: every error in it.
        """
        return load_data(data, self._plugins)

    def read_file(self) -> Declarative:
        """
        Load the C{declarative_config} file.

        @raise OSError: it cannot be read.
        @raise DeclarativeError: every error in it.
        @raise ValueError: there is no such file configured.
        """
        if self.path is None:
            raise ValueError("no declarative_config file is set")
        with open(self.path, "rb") as f:
            text = f.read()
        return self.load(text)

    def load_off_reactor(self, given: str | bytes | Mapping[str, Any]) -> Deferred[Declarative]:
        """
        Load C{given}, text (L{load}) or already parsed data (L{load_data}),
        with C{run_in_thread}: off the reactor thread on a node.

        @return: a L{Deferred} of the L{Declarative}, or failing with the
            L{DeclarativeError} of every error in it.
        """
        if isinstance(given, Mapping):
            return self._run_in_thread(self.load_data, given)
        return self._run_in_thread(self.load, given)

    def read_file_off_reactor(self) -> Deferred[Declarative]:
        """
        L{read_file} with C{run_in_thread}: off the reactor thread on a node.

        @return: a L{Deferred} of the L{Declarative}, or failing as
            L{read_file} raises.
        """
        return self._run_in_thread(self.read_file)

    def apply(self, declarative: Declarative) -> int:
        """
        Make C{declarative} the node's configuration: the store's records
        are replaced in one step and its subscribers (the live
        configuration) told.

        @return: the store's new configuration version.
        """
        self.current = declarative
        return self.store.replace(declarative.records, declarative.config_hash)

    def export(self, format: str = "yaml") -> str:
        """
        The applied configuration in the declarative format (an empty one
        before the first).
        """
        if self.current is None:
            return export({entity: () for entity in ENTITY_ORDER}, format=format)
        return self.current.export(format)
