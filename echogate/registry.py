"""
Plugin discovery: C{getPlugins(IGatewayPlugin)} turned into a name to
plugin mapping, once, at start-up.

Everything below this module takes that mapping, so tests hand plugins in
directly.
"""
from __future__ import annotations

import inspect
import re
import sys
from types import ModuleType
from typing import Any, Iterable, Mapping

from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.plugin import getPlugins
from zope.interface import provider
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from echogate.interfaces import IGatewayPlugin

BUNDLED_MODULE_PREFIX = "echogate.bundled."
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")

#: The methods the node calls on a plugin, with the arguments it passes
#: (positionally): the phases of L{echogate.interfaces.IPluginPhases}, and
#: the optional C{node_service(node)} hook (L{echogate.interfaces.IPluginNode}).
CALLED = {
    "init": ("configs",),
    "configure": ("configs",),
    "rewrite": ("ctx", "config"),
    "access": ("ctx", "config"),
    "header_filter": ("ctx", "config"),
    "body_filter": ("ctx", "config", "chunk"),
    "log": ("ctx", "config"),
    "node_service": ("node",),
}

#: Public names one edit from a phase's but documented as something else.
_NOT_MISSPELT = frozenset({"reads_body", "no_consumer"})


class PluginLoadError(Exception):
    """
    A configured plugin cannot be used; the message names it and says why.
    """


def is_bundled(plugin: object) -> bool:
    """
    Whether C{plugin} ships with echogate.
    """
    return type(plugin).__module__.startswith(BUNDLED_MODULE_PREFIX)


def check_plugin(plugin: object) -> None:
    """
    Raise L{PluginLoadError} unless C{plugin} provides L{IGatewayPlugin}
    properly: the interface verifies, the version reads x.y.z, the priority
    is an integer, and the object is immutable.
    """
    label = getattr(plugin, "name", None) or repr(plugin)
    try:
        verifyObject(IGatewayPlugin, plugin)
    except Invalid as e:
        detail = " ".join(str(e).split())
        raise PluginLoadError(f"plugin {label!r} does not provide IGatewayPlugin: {detail}") from None
    name = plugin.name  # type: ignore[attr-defined]
    if not isinstance(name, str) or not name:
        raise PluginLoadError(f"plugin {plugin!r} has no name")
    if not isinstance(plugin.priority, int) or isinstance(plugin.priority, bool):  # type: ignore[attr-defined]
        raise PluginLoadError(f"plugin {name!r}: priority must be an integer")
    if not isinstance(plugin.version, str) or not _VERSION.match(plugin.version):  # type: ignore[attr-defined]
        raise PluginLoadError(f"plugin {name!r}: version must read x.y.z")
    from echogate.schema import Record

    if not isinstance(plugin.config_schema, Record):  # type: ignore[attr-defined]
        raise PluginLoadError(f"plugin {name!r}: config_schema must be an echogate.schema.Record")
    check_methods(plugin, name)
    probes = ["_echogate_mutability_probe"] + _slots(plugin)
    if not any(_assignable(plugin, attribute) for attribute in probes):
        return
    raise PluginLoadError(
        f"plugin {name!r} is mutable: plugin objects are shared by every request,"
        " so subclass echogate.plugin.GatewayPlugin or use a frozen attrs class"
        " and keep request state on ctx.plugin"
    )


def check_methods(plugin: object, name: str) -> None:
    """
    Raise L{PluginLoadError} when a method the node calls on C{plugin}
    (a phase, or C{node_service}) cannot take the arguments it is called
    with (L{CALLED}; C{*args} and C{**kwargs} will do), or when a public
    method's name is one edit (a letter added, dropped or changed; case
    aside) from one of theirs, such as C{acess} or C{header_filters}: a
    misspelt phase would never run.
    """
    for method_name, arguments in CALLED.items():
        method = getattr(plugin, method_name, None)
        if method is None:
            continue
        if not callable(method):
            raise PluginLoadError(f"plugin {name!r}: {method_name} must be a method, not {type(method).__name__}")
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            continue  # a builtin without a signature: nothing to check
        try:
            signature.bind(*arguments)
        except TypeError:
            raise PluginLoadError(
                f"plugin {name!r}: {method_name}{signature} cannot be called as"
                f" {method_name}({', '.join(arguments)})"
            ) from None
    for attribute in dir(plugin):
        if attribute.startswith("_") or attribute in CALLED or attribute in _NOT_MISSPELT:
            continue
        near = [known for known in CALLED if _one_edit(attribute.lower(), known)]
        if near and callable(getattr(plugin, attribute, None)):
            raise PluginLoadError(
                f"plugin {name!r}: method {attribute!r} looks like a misspelt {near[0]!r},"
                f" which the gateway would call; rename it (a helper's name starts with _)"
            )


def _one_edit(a: str, b: str) -> bool:
    """
    Whether C{a} and C{b} are at most one edit apart (Levenshtein
    distance: one character added, dropped or replaced).
    """
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def _failing_dropin(failure: Any) -> str | None:
    """
    The drop-in module (C{twisted.plugins.<name>}) whose import raised
    C{failure}, from the deepest traceback frame in a C{twisted/plugins/}
    directory.
    """
    for frame in reversed(getattr(failure, "frames", None) or []):
        filename: str = frame[1].replace("\\", "/")
        if "/twisted/plugins/" in filename and filename.endswith(".py"):
            return "twisted.plugins." + filename.rsplit("/", 1)[1][:-3]
    return None


def _slots(plugin: object) -> list[str]:
    names: list[str] = []
    for cls in type(plugin).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(n for n in slots if not n.startswith("__"))
    return names


def _assignable(plugin: object, attribute: str) -> bool:
    """
    Whether C{attribute} can be assigned on C{plugin} (restoring it after).
    """
    missing = object()
    before = getattr(plugin, attribute, missing)
    try:
        setattr(plugin, attribute, None if before is missing else before)
    except (AttributeError, TypeError):
        return False
    if before is missing:
        try:
            delattr(plugin, attribute)
        except (AttributeError, TypeError):
            pass
    return True


def discover(package: ModuleType | None = None) -> tuple[dict[str, object], list[str]]:
    """
    Find every L{IGatewayPlugin} in C{package} (C{twisted.plugins} by
    default).

    @return: the plugins by name, and the import failures that
        C{getPlugins} reported (one line each).
    """
    failures: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        failure = event.get("log_failure") or event.get("failure")
        if failure is not None:
            module = _failing_dropin(failure)
            where = f"module {module} failed to import: " if module else ""
            failures.append(f"{where}{failure.type.__name__}: {failure.getErrorMessage()}")
            return
        text = event.get("log_text") or event.get("log_format") or ""
        if "while loading" in text or "Traceback" in text:
            failures.append(text.strip().splitlines()[-1])

    globalLogPublisher.addObserver(observe)
    try:
        found = list(getPlugins(IGatewayPlugin, package))
    finally:
        globalLogPublisher.removeObserver(observe)
    plugins: dict[str, object] = {}
    for plugin in found:
        name = getattr(plugin, "name", None)
        if not isinstance(name, str):
            continue
        existing = plugins.get(name)
        if existing is not None and existing is not plugin:
            raise PluginLoadError(
                f"plugin {name!r} is provided twice: by {type(existing).__module__}"
                f" and by {type(plugin).__module__}"
            )
        plugins[name] = plugin
    return plugins, failures


def dropin_of(plugin: object, package: ModuleType | None = None) -> tuple[str, str] | None:
    """
    Where C{getPlugins} found C{plugin}: the drop-in module (already
    imported, C{twisted.plugins.<name>}) and the name of the global that
    holds it, or C{None}.
    """
    prefix = (package.__name__ if package is not None else "twisted.plugins") + "."
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(prefix):
            continue
        for attribute, value in list(vars(module).items()):
            if value is plugin:
                return module_name, attribute
    return None


def plugins_in(module: ModuleType) -> dict[str, object]:
    """
    The L{IGatewayPlugin} providers among C{module}'s globals, by name:
    what C{getPlugins} finds in one drop-in.
    """
    found: dict[str, object] = {}
    for value in list(vars(module).values()):
        name = getattr(value, "name", None) if IGatewayPlugin.providedBy(value) else None
        if isinstance(name, str):
            found[name] = value
    return found


def parse_setting(setting: str | Iterable[str]) -> list[str]:
    """
    Split a C{--plugins} value (C{"bundled,my-plugin"}) into names.
    """
    if isinstance(setting, str):
        setting = setting.split(",")
    return [part.strip() for part in setting if part.strip()]


def enabled_plugins(
    setting: str | Iterable[str],
    available: Mapping[str, object],
    import_failures: Iterable[str] = (),
) -> dict[str, object]:
    """
    The plugins that C{--plugins} enables, checked.

    @param setting: C{"bundled"}, plugin names, or C{"off"}, comma-separated.
    @param available: every plugin found, by name (L{discover}).
    @raise PluginLoadError: a named plugin is missing or does not provide
        the interface properly.
    """
    names = parse_setting(setting)
    if names == ["off"]:
        return {}
    chosen: dict[str, object] = {}
    for name in names:
        if name == "off":
            raise PluginLoadError("'off' cannot be combined with other plugin names")
        if name == "bundled":
            for plugin_name, plugin in available.items():
                if is_bundled(plugin):
                    chosen[plugin_name] = plugin
            continue
        plugin = available.get(name)
        if plugin is None:
            failures = list(import_failures)
            why = "; ".join(failures) if failures else "no module in twisted/plugins/ on sys.path provides it"
            raise PluginLoadError(f"plugin {name!r} is enabled in --plugins but was not found ({why})")
        chosen[name] = plugin
    for plugin in chosen.values():
        check_plugin(plugin)
    return dict(sorted(chosen.items()))


def load_plugins(setting: str | Iterable[str], package: ModuleType | None = None) -> dict[str, object]:
    """
    Discover and enable plugins in one step: what start-up calls.
    """
    available, failures = discover(package)
    return enabled_plugins(setting, available, failures)
