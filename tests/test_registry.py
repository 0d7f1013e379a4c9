"""
Tests for L{echogate.registry}: finding plugins with C{getPlugins}, and
every reason start-up refuses a plugin, each with its one-line message.
Drop-in modules in C{twisted/plugins/} are tested in
L{tests.test_registry_dropins}.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.registry import (
    PluginLoadError,
    check_plugin,
    discover,
    enabled_plugins,
    is_bundled,
    load_plugins,
    parse_setting,
)
from echogate.schema import Record
from echogate.schema.fields import String

NOT_FOUND = "no module in twisted/plugins/ on sys.path provides it"


class Valid(GatewayPlugin):
    name = "valid"
    version = "1.2.3"
    priority = 10
    config_schema = Record({"x": String(default="y")})


def plugin(name: str = "valid", **attributes: Any) -> GatewayPlugin:
    """
    A L{GatewayPlugin} like L{Valid} with some class attributes replaced.
    """
    return type("Custom", (Valid,), {"name": name, **attributes})()


@implementer(IGatewayPlugin)
class MutablePlugin:
    name = "mutable"
    version = "1.0.0"
    priority = 0
    config_schema = Record({})


@implementer(IGatewayPlugin)
class SlottedPlugin:
    """
    Refuses new attributes, but its C{echo} slot can be assigned on every
    request: the classic bug, still possible.
    """

    __slots__ = ("echo",)
    name = "slotted"
    version = "1.0.0"
    priority = 0
    config_schema = Record({})


@implementer(IGatewayPlugin)
@attrs.frozen
class FrozenAttrsPlugin:
    name: str = "frozen-attrs"
    version: str = "1.0.0"
    priority: int = 0
    config_schema: Record = Record({})


@implementer(IGatewayPlugin)
class NoSchemaAttribute:
    name = "no-schema"
    version = "1.0.0"
    priority = 0

    def __repr__(self) -> str:
        return "<NoSchemaAttribute>"


class NotAPlugin:
    name = "not-a-plugin"

    def __repr__(self) -> str:
        return "<NotAPlugin>"


class BundledPluginTests(SynchronousTestCase):
    """
    Every plugin shipped with echogate is found and well formed; new
    bundled plugins are covered without changing these tests.
    """

    def setUp(self) -> None:
        available, failures = discover()
        self.assertEqual(failures, [])
        self.bundled = {name: p for name, p in available.items() if is_bundled(p)}

    def test_headerEchoIsBundled(self) -> None:
        """
        header-echo is among the bundled plugins.
        """
        self.assertIn("header-echo", self.bundled)

    def test_everyBundledPluginFound(self) -> None:
        """
        getPlugins finds every plugin echogate ships, by name (a drop-in
        object that is not found, e.g. behind a stale dropin.cache, fails
        here).
        """
        self.assertEqual(sorted(self.bundled), [
            "acl", "basic-auth", "correlation-id", "cors", "file-log", "grpc-web", "header-echo", "http-log",
            "ip-restriction", "jwt", "key-auth", "prometheus", "proxy-cache", "rate-limiting",
            "request-size-limiting", "request-termination", "request-transformer", "response-transformer"])

    def test_verifyObject(self) -> None:
        """
        Every bundled plugin provides L{IGatewayPlugin}.
        """
        for name, p in self.bundled.items():
            self.assertTrue(verifyObject(IGatewayPlugin, p), name)

    def test_passesStartUpChecks(self) -> None:
        """
        Every bundled plugin passes the checks start-up makes (version,
        priority, schema, immutability).
        """
        for p in self.bundled.values():
            check_plugin(p)

    def test_foundByGetPlugins(self) -> None:
        """
        Every bundled plugin is what C{getPlugins(IGatewayPlugin)} yields,
        and also what C{getPlugins(IPlugin)} yields.
        """
        for interface in (IGatewayPlugin, IPlugin):
            found = list(getPlugins(interface))
            for name, p in self.bundled.items():
                self.assertTrue(any(f is p for f in found), (interface, name))

    def test_bundledSettingSelectsThemAll(self) -> None:
        """
        C{--plugins bundled} enables every bundled plugin.
        """
        self.assertEqual(load_plugins("bundled"), dict(sorted(self.bundled.items())))

    def test_immutable(self) -> None:
        """
        No bundled plugin object accepts a new attribute.
        """
        for p in self.bundled.values():
            self.assertRaises(AttributeError, setattr, p, "echo", "value")


class IsBundledTests(SynchronousTestCase):
    """
    L{is_bundled} tells echogate's own plugins from third-party ones.
    """

    def test_bundled(self) -> None:
        """
        A plugin defined in C{echogate.bundled} is bundled.
        """
        from echogate.bundled.header_echo import HeaderEcho

        self.assertTrue(is_bundled(HeaderEcho()))

    def test_thirdParty(self) -> None:
        """
        A plugin defined anywhere else is not.
        """
        self.assertFalse(is_bundled(Valid()))


class EnabledPluginsTests(SynchronousTestCase):
    """
    L{enabled_plugins} turns C{--plugins} into checked plugins, or stops
    start-up with one line saying why.
    """

    def refused(self, setting: str, available: dict[str, Any], failures: list[str] = ()) -> str:
        error = self.assertRaises(PluginLoadError, enabled_plugins, setting, available, failures)
        message = str(error)
        self.assertNotIn("\n", message)
        return message

    def test_notFound(self) -> None:
        """
        A configured name that no drop-in provides.
        """
        self.assertEqual(
            self.refused("bundled,my-plugin", {"valid": Valid()}),
            f"plugin 'my-plugin' is enabled in --plugins but was not found ({NOT_FOUND})",
        )

    def test_notFoundWithImportFailures(self) -> None:
        """
        A configured name that is not found, when some drop-ins failed to
        import: their failures are the likely reason, so they are given.
        """
        self.assertEqual(
            self.refused("my-plugin", {}, ["ImportError: a", "SyntaxError: b"]),
            "plugin 'my-plugin' is enabled in --plugins but was not found (ImportError: a; SyntaxError: b)",
        )

    def test_doesNotProvideInterface(self) -> None:
        """
        An object that does not declare L{IGatewayPlugin}.
        """
        self.assertEqual(
            self.refused("not-a-plugin", {"not-a-plugin": NotAPlugin()}),
            "plugin 'not-a-plugin' does not provide IGatewayPlugin: The object <NotAPlugin> has failed"
            " to implement interface echogate.interfaces.IGatewayPlugin: Does not declaratively"
            " implement the interface The echogate.interfaces.IGatewayPlugin.version attribute was"
            " not provided The echogate.interfaces.IGatewayPlugin.priority attribute was not provided"
            " The echogate.interfaces.IGatewayPlugin.config_schema attribute was not provided",
        )

    def test_missingAttribute(self) -> None:
        """
        An object that declares the interface but lacks one of its
        attributes.
        """
        self.assertEqual(
            self.refused("no-schema", {"no-schema": NoSchemaAttribute()}),
            "plugin 'no-schema' does not provide IGatewayPlugin: The object <NoSchemaAttribute> has"
            " failed to implement interface echogate.interfaces.IGatewayPlugin: The"
            " echogate.interfaces.IGatewayPlugin.config_schema attribute was not provided.",
        )

    def test_mutable(self) -> None:
        """
        A plugin object whose attributes can be assigned.
        """
        self.assertEqual(
            self.refused("mutable", {"mutable": MutablePlugin()}),
            "plugin 'mutable' is mutable: plugin objects are shared by every request, so subclass"
            " echogate.plugin.GatewayPlugin or use a frozen attrs class and keep request state on"
            " ctx.plugin",
        )

    def test_mutableLeavesNoTrace(self) -> None:
        """
        Checking mutability does not leave an attribute behind.
        """
        mutable = MutablePlugin()
        self.refused("mutable", {"mutable": mutable})
        self.assertEqual(vars(mutable), {})

    def test_mutableSlots(self) -> None:
        """
        A plugin with assignable slots is mutable too: refusing only new
        attribute names would let it keep request state in a slot.
        """
        self.assertEqual(
            self.refused("slotted", {"slotted": SlottedPlugin()}),
            "plugin 'slotted' is mutable: plugin objects are shared by every request, so subclass"
            " echogate.plugin.GatewayPlugin or use a frozen attrs class and keep request state on"
            " ctx.plugin",
        )

    def test_frozenAttrsAccepted(self) -> None:
        """
        A frozen attrs class declaring the interface is accepted.
        """
        p = FrozenAttrsPlugin()
        self.assertEqual(enabled_plugins("frozen-attrs", {"frozen-attrs": p}), {"frozen-attrs": p})

    def test_badVersion(self) -> None:
        """
        A version that does not read x.y.z.
        """
        for version in ("1.0", "v1.0.0", "1.0.0-beta", 1, None):
            self.assertEqual(
                self.refused("valid", {"valid": plugin(version=version)}),
                "plugin 'valid': version must read x.y.z",
                f"row version={version!r}"
            )

    def test_nonIntegerPriority(self) -> None:
        """
        A priority that is not an integer (booleans and numeric strings
        included).
        """
        for priority in ("10", 1.5, True, None):
            self.assertEqual(
                self.refused("valid", {"valid": plugin(priority=priority)}),
                "plugin 'valid': priority must be an integer",
                f"row priority={priority!r}"
            )

    def test_negativePriorityAccepted(self) -> None:
        """
        Any integer is a priority, negative ones included.
        """
        p = plugin(priority=-5)
        self.assertEqual(enabled_plugins("valid", {"valid": p}), {"valid": p})

    def test_schemaNotARecord(self) -> None:
        """
        A C{config_schema} that is not an L{echogate.schema.Record}.
        """
        for schema in (None, {"x": String()}, String()):
            self.assertEqual(
                self.refused("valid", {"valid": plugin(config_schema=schema)}),
                "plugin 'valid': config_schema must be an echogate.schema.Record",
                f"row schema={schema!r}"
            )

    def test_noName(self) -> None:
        """
        A plugin with an empty name.
        """
        nameless = plugin(name="")
        message = self.refused("x", {"x": nameless})
        self.assertEqual(message, f"plugin {nameless!r} has no name")

    def test_offCombined(self) -> None:
        """
        C{off} together with names.
        """
        for setting in ("off,valid", "bundled,off", "off,off"):
            self.assertEqual(
                self.refused(setting, {"valid": Valid()}),
                "'off' cannot be combined with other plugin names",
                f"row setting={setting!r}"
            )

    def test_off(self) -> None:
        """
        C{off} alone enables nothing.
        """
        self.assertEqual(enabled_plugins("off", {"valid": Valid()}), {})

    def test_bundledOnlyEchogates(self) -> None:
        """
        C{bundled} selects echogate's own plugins, not every available one.
        """
        from echogate.bundled.header_echo import HeaderEcho

        echo = HeaderEcho()
        self.assertEqual(enabled_plugins("bundled", {"header-echo": echo, "valid": Valid()}),
                         {"header-echo": echo})

    def test_bundledAndNames(self) -> None:
        """
        C{bundled} plus a name: both, sorted by name.
        """
        from echogate.bundled.header_echo import HeaderEcho

        echo, valid = HeaderEcho(), Valid()
        enabled = enabled_plugins("valid, bundled", {"header-echo": echo, "valid": valid})
        self.assertEqual(list(enabled.items()), [("header-echo", echo), ("valid", valid)])

    def test_checksEveryEnabledPlugin(self) -> None:
        """
        The checks apply to plugins enabled through C{bundled} as well.
        """

        class BadBundled(Valid):
            __module__ = "echogate.bundled.bad"
            name = "bad-bundled"
            version = "1"

        self.assertEqual(self.refused("bundled", {"bad-bundled": BadBundled()}),
                         "plugin 'bad-bundled': version must read x.y.z")


class ParseSettingTests(SynchronousTestCase):
    """
    L{parse_setting} splits C{--plugins}.
    """

    def test_commaSeparated(self) -> None:
        """
        Names are split on commas and stripped; empty parts are dropped.
        """
        self.assertEqual(parse_setting(" bundled , my-plugin,,"), ["bundled", "my-plugin"])

    def test_iterable(self) -> None:
        """
        An iterable of names is accepted as well.
        """
        self.assertEqual(parse_setting(["bundled", " a "]), ["bundled", "a"])

    def test_empty(self) -> None:
        """
        An empty setting names nothing.
        """
        self.assertEqual(parse_setting(""), [])


def _method(signature: str) -> Any:
    """
    A function with the given parameters after C{self}, doing nothing.
    """
    namespace: dict[str, Any] = {}
    exec(f"def method(self, {signature}): pass", namespace)
    return namespace["method"]


class PhaseSignatureTests(SynchronousTestCase):
    """
    Start-up refuses a plugin whose phase (or C{node_service}) cannot take
    the arguments the gateway passes it, in one line naming the plugin,
    the method and the call it must accept.
    """

    def refused(self, **attributes: Any) -> str:
        error = self.assertRaises(PluginLoadError, check_plugin, plugin(**attributes))
        message = str(error)
        self.assertNotIn("\n", message)
        return message

    def test_documentedSignaturesAccepted(self) -> None:
        """
        Each phase with its documented parameters, and C{node_service(node)},
        is accepted.
        """
        check_plugin(plugin(init=_method("configs"), rewrite=_method("ctx, config"),
                            access=_method("ctx, config"), header_filter=_method("ctx, config"),
                            body_filter=_method("ctx, config, chunk"), log=_method("ctx, config"),
                            node_service=_method("node")))

    def test_flexibleSignaturesAccepted(self) -> None:
        """
        C{*args}, C{**kwargs}, extra parameters with defaults, other
        parameter names and C{async def} are accepted.
        """
        async def log(self: Any, ctx: Any, config: Any) -> None:
            pass

        check_plugin(plugin(access=_method("*args, **kwargs"), body_filter=_method("c, conf, piece, extra=None"),
                            header_filter=_method("ctx, *rest"), log=log))

    def test_phaseSetToNoneAccepted(self) -> None:
        """
        A phase set to C{None} (turning an inherited one off) is accepted.
        """
        check_plugin(plugin(access=None))

    def test_tooFewParameters(self) -> None:
        """
        A phase missing a parameter: the message shows its signature and the
        call it must take.
        """
        self.assertEqual(self.refused(body_filter=_method("ctx, config")),
                         "plugin 'valid': body_filter(ctx, config) cannot be called as"
                         " body_filter(ctx, config, chunk)")
        self.assertEqual(self.refused(init=_method("")), "plugin 'valid': init() cannot be called as init(configs)")

    def test_tooManyParameters(self) -> None:
        """
        A phase requiring more parameters than the gateway passes.
        """
        self.assertEqual(self.refused(access=_method("ctx, config, chunk")),
                         "plugin 'valid': access(ctx, config, chunk) cannot be called as access(ctx, config)")

    def test_requiredKeywordOnly(self) -> None:
        """
        A required keyword-only parameter cannot be given by a positional
        call.
        """
        self.assertEqual(self.refused(log=_method("ctx, config, *, now")),
                         "plugin 'valid': log(ctx, config, *, now) cannot be called as log(ctx, config)")

    def test_nodeService(self) -> None:
        """
        C{node_service} must take the node.
        """
        self.assertEqual(self.refused(node_service=_method("")),
                         "plugin 'valid': node_service() cannot be called as node_service(node)")

    def test_notCallable(self) -> None:
        """
        A phase that is not a method.
        """
        self.assertEqual(self.refused(access="yes"), "plugin 'valid': access must be a method, not str")

    def test_staticMethod(self) -> None:
        """
        A static method is checked without C{self}.
        """
        check_plugin(plugin(log=staticmethod(lambda ctx, config: None)))
        self.assertEqual(self.refused(log=staticmethod(lambda ctx: None)),
                         "plugin 'valid': log(ctx) cannot be called as log(ctx, config)")


class MisspeltPhaseTests(SynchronousTestCase):
    """
    Start-up refuses a plugin with a public method one edit from a phase's
    (or C{node_service}'s) name, which the gateway would never call.
    """

    def refused(self, **attributes: Any) -> str:
        error = self.assertRaises(PluginLoadError, check_plugin, plugin(**attributes))
        message = str(error)
        self.assertNotIn("\n", message)
        return message

    def test_misspelt(self) -> None:
        """
        A letter dropped, added or changed, or a different case: the
        message names the plugin, the method and the phase it looks like.
        """
        for method, phase in (("acess", "access"), ("header_filters", "header_filter"),
                              ("bodyfilter", "body_filter"), ("rewrote", "rewrite"), ("logs", "log"),
                              ("Access", "access"), ("inits", "init"), ("node_services", "node_service")):
            self.assertEqual(
                self.refused(**{method: _method("ctx, config")}),
                f"plugin 'valid': method {method!r} looks like a misspelt {phase!r}, which the gateway"
                " would call; rename it (a helper's name starts with _)",
                f"row {method}")

    def test_inherited(self) -> None:
        """
        A misspelt method inherited from a base class counts too.
        """
        class Base(Valid):
            def acces(self, ctx: Any, config: Any) -> None:
                pass

        class Derived(Base):
            name = "derived"

        error = self.assertRaises(PluginLoadError, check_plugin, Derived())
        self.assertIn("method 'acces' looks like a misspelt 'access'", str(error))

    def test_notOneEditAway(self) -> None:
        """
        Names two edits away, private helpers, and documented optional
        names are accepted.
        """
        check_plugin(plugin(acces_check=_method("ctx"), _acess=_method("ctx, config"), blogs=_method(""),
                            reads_body=_method("config, request"), no_consumer=True, authorize=_method("ctx")))

    def test_attributesNotMethods(self) -> None:
        """
        A non-callable attribute one edit from a phase is not a method the
        gateway would call: accepted.
        """
        check_plugin(plugin(logs=["a"], acess=3))
