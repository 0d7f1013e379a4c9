"""
Plugin discovery: C{getPlugins(IGatewayPlugin)} turned into a name to
plugin mapping, once, at start-up.

Everything below this module takes that mapping, so tests hand plugins in
directly.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from types import ModuleType
from typing import Any, Iterable, Iterator, Mapping

import twisted.plugin
from twisted.logger import ILogObserver, LogEvent, Logger, globalLogPublisher
from twisted.plugin import getCache, getPlugins
from twisted.python import log as twisted_log
from twisted.python.failure import Failure
from zope.interface import provider
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from echogate.interfaces import IGatewayPlugin

_log = Logger(namespace="echogate.registry")

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


def dropin_failure(failure: Failure) -> str:
    """
    One line for a drop-in module whose import raised C{failure}: the file
    and line in the C{twisted/plugins/} directory where it went wrong, and
    the error (a C{SyntaxError} names its own file and line).
    """
    error = f"{getattr(failure.type, '__name__', 'Error')}: {failure.getErrorMessage()}"
    value = failure.value
    if isinstance(value, SyntaxError) and value.filename:
        return f"{value.filename}:{value.lineno}: drop-in failed to import: {value.msg}"
    for frame in reversed(failure.frames or []):
        filename, line = str(frame[1]), frame[2]
        if "/twisted/plugins/" in filename.replace("\\", "/") and filename.endswith(".py"):
            return f"{filename}:{line}: drop-in failed to import: {error}"
    return f"a drop-in failed to import: {error}"


class _CapturingLog:
    """
    Stands in for C{twisted.python.log} in C{twisted.plugin} while
    L{discover} runs: the failures C{getPlugins} reports with a bare
    C{log.err()} (a drop-in that does not import, an adapter that raises)
    are kept instead of logged as tracebacks; everything else goes on to
    the real log.
    """

    def __init__(self) -> None:
        self.failures: list[Failure] = []

    def err(self, _stuff: object = None, _why: str | None = None, **kw: Any) -> None:
        if _why is None and not kw and (_stuff is None or isinstance(_stuff, (Failure, BaseException))):
            self.failures.append(_stuff if isinstance(_stuff, Failure) else Failure(_stuff))
            return
        twisted_log.err(_stuff, _why, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(twisted_log, name)


class _ImportFailures:
    """
    A context manager that puts a L{_CapturingLog} in C{twisted.plugin}
    (the module logs through its C{log} global) and gives it back.
    """

    def __enter__(self) -> list[Failure]:
        self._capturing = _CapturingLog()
        self._before = twisted.plugin.__dict__.get("log")
        vars(twisted.plugin)["log"] = self._capturing
        return self._capturing.failures

    def __exit__(self, *exc: object) -> None:
        vars(twisted.plugin)["log"] = self._before


def _captured_import_failures() -> _ImportFailures:
    return _ImportFailures()


def _twisted_directories() -> Iterator[tuple[str, str]]:
    """
    Each C{twisted} directory on C{sys.path} that is not Twisted's own
    package: (the directory, the C{sys.path} entry it is in).
    """
    real = os.path.realpath(os.path.dirname(twisted.__file__ or ""))
    seen: set[str] = set()
    for entry in sys.path:
        candidate = os.path.join(os.path.abspath(entry or os.curdir), "twisted")
        resolved = os.path.realpath(candidate)
        if resolved == real or resolved in seen or not os.path.isdir(candidate):
            continue
        seen.add(resolved)
        yield candidate, entry


def layout_problems() -> list[str]:
    """
    The C{twisted/} directories on C{sys.path}, besides Twisted's own, laid
    out so that their drop-ins are not found or Twisted breaks, one line
    each with the fix: a C{twisted/plugins/__init__.py} makes Twisted skip
    the directory (only directories that are not packages are added to
    C{twisted.plugins}); a C{twisted/__init__.py} makes a package that,
    first on C{sys.path}, hides Twisted itself (twistd then fails with
    C{No module named 'twisted.scripts'}).
    """
    problems: list[str] = []
    for directory, _ in _twisted_directories():
        package = os.path.join(directory, "__init__.py")
        plugins = os.path.join(directory, "plugins", "__init__.py")
        if os.path.exists(plugins):
            problems.append(
                f"{plugins} makes twisted/plugins a package, so Twisted skips that directory and"
                " finds none of its drop-ins: delete it (twisted/ and twisted/plugins/ must have no __init__.py)")
        if os.path.exists(package):
            problems.append(
                f"{package} makes a 'twisted' package that hides Twisted's own when it comes first on"
                " sys.path (twistd: No module named 'twisted.scripts'): delete it")
    return problems


def without_instances(package: ModuleType | None = None) -> list[str]:
    """
    Drop-in modules that define a plugin class (one implementing
    L{IGatewayPlugin}) but no instance of it, one line each, starting with
    C{plugin 'NAME':} (the class's C{name}): C{getPlugins} finds instances
    only.
    """
    if package is None:
        import twisted.plugins as package
    lines: list[str] = []
    with _captured_import_failures():
        cache = getCache(package)
    for _, dropin in sorted(cache.items()):
        if dropin.plugins:
            continue
        try:
            module = sys.modules.get(dropin.moduleName) or importlib.import_module(dropin.moduleName)
        except Exception as e:
            # A drop-in that fails to import is reported, in one line, by
            # the capture above; this scan only looks for missing instances.
            _log.debug("drop-in {module} skipped in the instance scan: {error!r}", module=dropin.moduleName, error=e)
            continue
        for value in list(vars(module).values()):
            if not (isinstance(value, type) and value.__module__ == module.__name__
                    and IGatewayPlugin.implementedBy(value)):
                continue
            name = getattr(value, "name", None)
            label = f"plugin {name!r}" if isinstance(name, str) and name else f"class {value.__name__}"
            where = getattr(module, "__file__", None) or module.__name__
            lines.append(
                f"{label}: {where} defines class {value.__name__} but no instance of it, and the gateway"
                f" finds instances: add '{value.__name__.lower()} = {value.__name__}()' at the end of the module")
    return lines


class EnabledPlugins(dict[str, object]):
    """
    The enabled plugins by name (what L{load_plugins} returns), knowing
    the names of every plugin installed: the Admin API tells a plugin that
    is not installed from one that is but is not enabled.

    @ivar installed: every plugin name found, enabled or not.
    @ivar problems: what discovery found wrong with drop-ins that provide
        no enabled plugin, one line each (L{discover}): start-up warns of
        them.
    """

    installed: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()


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
    failures: list[str] = layout_problems()

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
        with _captured_import_failures() as captured:
            found = list(getPlugins(IGatewayPlugin, package))
    finally:
        globalLogPublisher.removeObserver(observe)
    failures += [dropin_failure(failure) for failure in captured]
    failures += without_instances(package)
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
            for line in failures:
                if line.startswith(f"plugin {name!r}: "):
                    raise PluginLoadError(line)
            why = "; ".join(failures) if failures else "no module in twisted/plugins/ on sys.path provides it"
            near = difflib.get_close_matches(name, list(available), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise PluginLoadError(f"plugin {name!r} is enabled in --plugins but was not found ({why}){hint}")
        chosen[name] = plugin
    for plugin in chosen.values():
        check_plugin(plugin)
    return dict(sorted(chosen.items()))


def load_plugins(setting: str | Iterable[str], package: ModuleType | None = None) -> EnabledPlugins:
    """
    Discover and enable plugins in one step: what start-up calls.
    """
    available, failures = discover(package)
    enabled = EnabledPlugins(enabled_plugins(setting, available, failures))
    enabled.installed = frozenset(available)
    enabled.problems = tuple(failures)
    return enabled
