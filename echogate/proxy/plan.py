"""
Which plugin configs apply to a request.

L{PluginIndex} is built once per configuration snapshot from the stored
plugin records and the enabled plugin objects. For a (route, service) pair
it compiles, once, the ordered L{Step}s that may apply (higher priority
first, ties by name); a step whose plugin also has consumer-scoped configs
is resolved again once a consumer is known.

A stored config of a plugin this node has not loaded (a drop-in missing
from the path, a typo in C{--plugins}) is, by default (C{missing_plugins =
refuse}), a L{MissingPlugin} step wherever the config would have applied:
it answers the request 500 before the upstream sees it, so that an
authentication plugin left out fails closed. With C{missing_plugins =
skip} such configs are left out.
"""
from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any, Callable, Generator, Iterable, Mapping

import attrs

PHASES = ("init", "configure", "rewrite", "access", "header_filter", "body_filter", "log")


REFUSE = "refuse"
SKIP = "skip"
#: Plugin configs indexed in one step of L{PluginIndex.building}.
STEP = 500


def not_loaded_message(name: str) -> str:
    """
    What a request refused for plugin C{name}'s config is answered.
    """
    return f"plugin {name!r} is configured but not loaded on this node"


@attrs.frozen
class MissingPlugin:
    """
    Stands in for a plugin that has stored configs but is not loaded on
    this node: its C{rewrite} and C{access} phases answer the request 500
    (C{{"message": "plugin 'NAME' is configured but not loaded on this
    node"}}), so the upstream never sees it.

    @ivar name: the missing plugin's name.
    """

    name: str
    priority: int = 0
    version: str = "0.0.0"
    # The refusal needs nothing of the body: a request with one is refused
    # on its head.
    reads_body = False

    def rewrite(self, kong: Any, config: Any) -> None:
        kong.exit(500, {"message": not_loaded_message(self.name)})

    access = rewrite


def _fk(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if isinstance(value, Mapping):
        return value.get("id")
    return None


def freeze(value: Any) -> Any:
    """
    A read-only copy of a config: mappings become read-only proxies and
    lists become tuples, so a plugin cannot change the config it was given.
    """
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


@attrs.frozen
class PluginEntry:
    """
    One enabled plugin record, ready to run.
    """

    plugin: Any
    id: str
    config: Mapping[str, Any]
    route: str | None
    service: str | None
    consumer: str | None


@attrs.frozen
class Step:
    """
    One plugin in a request's plan, with its phases looked up once.

    @ivar entry: the config that applies without a consumer, or C{None}.
    @ivar by_consumer: whether a consumer-scoped config may apply instead.
    @ivar config: C{entry}'s config (C{None} without an entry): the config
        of every step of a C{static} L{Plan}, looked up once.
    """

    name: str
    plugin: Any
    entry: PluginEntry | None
    by_consumer: bool
    rewrite: Callable[..., Any] | None
    access: Callable[..., Any] | None
    header_filter: Callable[..., Any] | None
    body_filter: Callable[..., Any] | None
    log: Callable[..., Any] | None
    config: Mapping[str, Any] | None = attrs.field(
        init=False, eq=False, repr=False,
        default=attrs.Factory(lambda self: self.entry.config if self.entry is not None else None, takes_self=True))


class PhaseSteps(tuple):
    """
    The steps of a L{Plan} that have one phase, in order, with what
    L{echogate.proxy.runner.run_phase} calls for each worked out once:
    C{calls}, a C{(name, method, config)} triple per step (the step's
    phase method and its entry's config).

    @ivar phase: the phase.
    """

    phase: str
    calls: tuple[tuple[str, Callable[..., Any], Mapping[str, Any] | None], ...]

    def __new__(cls, phase: str, steps: Iterable[Step] = ()) -> "PhaseSteps":
        found = super().__new__(cls, steps)
        found.phase = phase
        found.calls = tuple((step.name, getattr(step, phase), step.config) for step in found)
        return found


class Plan(tuple):
    """
    The steps for one (route, service), in order, with the steps of each
    phase picked out once when the plan is compiled, so that a request
    runs through only the plugins that have the phase.

    @ivar static: no step depends on the consumer, so every step's config
        is its C{entry}'s for every request.
    """

    static: bool
    rewrite_steps: PhaseSteps
    access_steps: PhaseSteps
    header_filter_steps: PhaseSteps
    body_filter_steps: PhaseSteps
    log_steps: PhaseSteps

    def __new__(cls, steps: Iterable[Step] = ()) -> "Plan":
        plan = super().__new__(cls, steps)
        plan.static = not any(step.by_consumer for step in plan)
        plan.rewrite_steps = PhaseSteps("rewrite", (step for step in plan if step.rewrite is not None))
        plan.access_steps = PhaseSteps("access", (step for step in plan if step.access is not None))
        plan.header_filter_steps = PhaseSteps("header_filter",
                                              (step for step in plan if step.header_filter is not None))
        plan.body_filter_steps = PhaseSteps("body_filter", (step for step in plan if step.body_filter is not None))
        plan.log_steps = PhaseSteps("log", (step for step in plan if step.log is not None))
        return plan


EMPTY_PLAN = Plan()


def phases_of(plugin: Any) -> dict[str, Callable | None]:
    """
    The phase methods C{plugin} defines (C{None} for the others).
    """
    return {phase: getattr(plugin, phase, None) if callable(getattr(plugin, phase, None)) else None
            for phase in PHASES}


def idle_phases(plugin: Any, config: Mapping[str, Any]) -> frozenset[str]:
    """
    The phases of C{plugin} that do nothing with C{config}, by its
    optional C{idle_phases(config)} method: a plan leaves them out of a
    step whose config is always C{config} (not resolved again per
    consumer). None when the method is missing or raises.
    """
    method = getattr(plugin, "idle_phases", None)
    if method is None:
        return frozenset()
    try:
        return frozenset(method(config))
    except Exception:
        return frozenset()


#: A config's scope: its (route, service, consumer) ids, C{None} for any.
_Scope = tuple[str | None, str | None, str | None]


def _precedence(route: str | None, service: str | None, consumer: str | None) -> list[_Scope]:
    """
    Scope keys from the most specific to the global one (Kong's order).
    """
    keys: list[_Scope] = []
    if consumer is not None:
        keys += [(route, service, consumer), (route, None, consumer), (None, service, consumer)]
    keys.append((route, service, None))
    if consumer is not None:
        keys.append((None, None, consumer))
    keys += [(route, None, None), (None, service, None), (None, None, None)]
    return keys


class PluginIndex:
    """
    The enabled plugin configs of one configuration snapshot.

    @ivar skipped: the name of each enabled config whose plugin is not
        loaded on this node (one per config).
    @ivar missing: the names of those plugins, sorted, once each.
    @ivar refusing: whether requests that those configs apply to are
        refused (C{missing_plugins = refuse}) rather than run without them.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], plugins: Mapping[str, Any],
                 missing: str = REFUSE):
        for _ in self._fill(records, plugins, missing, None):
            pass

    @classmethod
    def building(cls, records: Iterable[Mapping[str, Any]], plugins: Mapping[str, Any], missing: str = REFUSE,
                 previous: "PluginIndex | None" = None) -> Generator[None, None, "PluginIndex"]:
        """
        The index, in steps: a generator that yields (C{None}) after every
        L{STEP} records and returns the index, so that a node serves
        requests between them. An entry of C{previous} whose record is the
        same (or equal) and whose plugin is the same object is taken as it
        is, its config not frozen again.
        """
        index = cls.__new__(cls)
        yield from index._fill(records, plugins, missing, previous)
        return index

    def _fill(self, records: Iterable[Mapping[str, Any]], plugins: Mapping[str, Any], missing: str,
              previous: "PluginIndex | None") -> Generator[None, None, None]:
        if missing not in (REFUSE, SKIP):
            raise ValueError(f"missing must be {REFUSE!r} or {SKIP!r}, not {missing!r}")
        self._plugins = dict(plugins)
        self._phases = {name: phases_of(p) for name, p in self._plugins.items()}
        self._by_name: dict[str, dict[_Scope, PluginEntry]] = {}
        self._consumer_scoped: set[str] = set()
        #: Each record's entry by its id, for the next index (L{building}).
        self._records: dict[Any, tuple[Mapping[str, Any], PluginEntry]] = {}
        self.skipped: list[str] = []
        self.refusing = missing == REFUSE
        earlier = previous._records if previous is not None else {}
        stand_ins: dict[str, MissingPlugin] = {}
        for done, record in enumerate(records, 1):
            if not done % STEP:
                yield None
            if not record.get("enabled", True):
                continue
            name = record["name"]
            plugin = self._plugins.get(name)
            if plugin is None:
                self.skipped.append(name)
                if not self.refusing:
                    continue
                plugin = stand_ins.get(name)
                if plugin is None:
                    plugin = stand_ins[name] = MissingPlugin(name)
            kept = earlier.get(record["id"])
            if kept is not None and kept[1].plugin is plugin and (kept[0] is record or kept[0] == record):
                entry = kept[1]
            else:
                entry = PluginEntry(
                    plugin=plugin,
                    id=record["id"],
                    config=freeze(record.get("config") or {}),
                    route=_fk(record, "route"),
                    service=_fk(record, "service"),
                    consumer=_fk(record, "consumer"),
                )
            self._records[entry.id] = (record, entry)
            self._by_name.setdefault(name, {})[(entry.route, entry.service, entry.consumer)] = entry
            if entry.consumer is not None:
                self._consumer_scoped.add(name)
        self.missing = sorted(set(self.skipped))
        self._stand_ins = stand_ins
        self._refusals = sorted(stand_ins)
        self._phases.update((name, phases_of(p)) for name, p in stand_ins.items())
        self._order = sorted(self._by_name.keys() - stand_ins.keys(), key=lambda n: (-self._plugins[n].priority, n))
        self._plans: dict[tuple, Plan] = {}
        self.global_steps = self._plan(None, None, global_only=True)

    def entries(self, name: str) -> list[PluginEntry]:
        """
        Every enabled config of plugin C{name}.
        """
        return list(self._by_name.get(name, {}).values())

    def names_in_use(self) -> list[str]:
        """
        The loaded plugins that have an enabled config.
        """
        return sorted(self._by_name.keys() - self._stand_ins.keys())

    def resolve(self, name: str, route: str | None, service: str | None,
                consumer: str | None) -> PluginEntry | None:
        """
        The most specific config of plugin C{name} for this scope.
        """
        scoped = self._by_name.get(name)
        if not scoped:
            return None
        for key in _precedence(route, service, consumer):
            entry = scoped.get(key)
            if entry is not None:
                return entry
        return None

    def fresh(self) -> "PluginIndex":
        """
        This index for the next snapshot, when its plugin configs did not
        change (L{echogate.proxy.reusing}): the same entries, and no plans
        yet (a route's plan is made again on its first request, so those
        of routes since deleted are not kept from one snapshot to the next).
        """
        index = copy.copy(self)
        index._plans = {}
        return index

    def plan(self, route: str | None, service: str | None) -> Plan:
        """
        The steps that may apply to requests on this route and service,
        compiled once per snapshot.
        """
        key = (route, service)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(route, service)
        return plan

    def _plan(self, route: str | None, service: str | None, global_only: bool = False) -> Plan:
        steps = []
        for name in self._order:
            step = self._step(name, route, service, global_only)
            if step is not None:
                steps.append(step)
        # A missing plugin's config refuses the request: first, before any
        # plugin runs, when it applies whoever the consumer is; after every
        # other plugin (those that may authenticate the consumer) when only
        # a consumer-scoped config may apply.
        first: list[Step] = []
        last: list[Step] = []
        for name in self._refusals:
            step = self._step(name, route, service, global_only)
            if step is not None:
                (last if step.entry is None else first).append(step)
        return Plan(first + steps + last)

    def _step(self, name: str, route: str | None, service: str | None, global_only: bool) -> Step | None:
        """
        The step of plugin C{name} in the plan of C{route} and C{service},
        or C{None} when no config of it may apply there.
        """
        entry = self.resolve(name, route, service, None)
        by_consumer = False
        # (A missing plugin's config that applies without a consumer refuses
        # whoever the consumer is: nothing to resolve again.)
        if (not global_only and name in self._consumer_scoped
                and (entry is None or name not in self._stand_ins)):
            by_consumer = any(
                e.consumer is not None and e.route in (None, route) and e.service in (None, service)
                for e in self._by_name[name].values()
            )
        if global_only and (entry is None or (entry.route, entry.service, entry.consumer) != (None, None, None)):
            return None
        if entry is None and not by_consumer:
            return None
        plugin = self._stand_ins.get(name) or self._plugins[name]
        phases = self._phases[name]
        if entry is not None and not by_consumer:
            idle = idle_phases(plugin, entry.config)
            if idle:
                phases = {phase: None if phase in idle else method for phase, method in phases.items()}
        return Step(name=name, plugin=plugin, entry=entry, by_consumer=by_consumer,
                    rewrite=phases["rewrite"], access=phases["access"],
                    header_filter=phases["header_filter"], body_filter=phases["body_filter"],
                    log=phases["log"])
