"""
Tests for plugin discovery in L{echogate.registry}: modules dropped into a
C{twisted/plugins/} directory on C{sys.path}, found by C{getPlugins}, and
the ways such a module can fail to provide a plugin.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

from twisted.plugin import pluginPackagePaths
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import twisted.plugins
from echogate.registry import (
    PluginLoadError,
    discover,
    is_bundled,
    load_plugins,
)


class DropIns:
    """
    A temporary directory holding C{twisted/plugins/}, put on C{sys.path}
    and into C{twisted.plugins.__path__} the way Twisted does at import
    time; everything is undone when the test ends.
    """

    def __init__(self, case: SynchronousTestCase):
        self._case = case
        self.base = FilePath(case.mktemp())
        self.plugins = self.base.child("twisted").child("plugins")
        self.plugins.makedirs()
        self._modules: list[str] = []
        sys.path.insert(0, self.base.path)
        added = [p for p in pluginPackagePaths(twisted.plugins.__name__)
                 if p not in twisted.plugins.__path__]
        case.assertIn(self.plugins.path, added)
        twisted.plugins.__path__.extend(added)
        importlib.invalidate_caches()

        def cleanup() -> None:
            sys.path.remove(self.base.path)
            for path in added:
                twisted.plugins.__path__.remove(path)
            for module in self._modules:
                sys.modules.pop(f"twisted.plugins.{module}", None)

        case.addCleanup(cleanup)

    def write(self, module: str, source: str) -> None:
        """
        Write C{twisted/plugins/<module>.py}.
        """
        self._modules.append(module)
        self.plugins.child(module + ".py").setContent(textwrap.dedent(source).encode("utf-8"))
        importlib.invalidate_caches()


DROP_IN = """
    from echogate.schema.fields import String
    from echogate.plugin import GatewayPlugin
    from echogate.schema import Record

    class {cls}(GatewayPlugin):
        name = "{name}"
        version = "2.0.0"
        priority = 7
        config_schema = Record({{"greeting": String(default="hi")}})

    {instance} = {cls}()
"""


class DropInDiscoveryTests(SynchronousTestCase):
    """
    A module dropped into any C{twisted/plugins/} directory on C{sys.path}
    makes its plugins available.
    """

    def test_found(self) -> None:
        """
        A plugin in a drop-in module is discovered, by name.
        """
        drops = DropIns(self)
        drops.write("eg_test_dropin_found", DROP_IN.format(cls="Greeter", name="greeter", instance="greeter"))
        available, failures = discover()
        self.assertEqual(failures, [])
        self.assertEqual(available["greeter"].version, "2.0.0")
        self.assertFalse(is_bundled(available["greeter"]))
        self.assertIn("header-echo", available)

    def test_enabledByName(self) -> None:
        """
        C{--plugins bundled,<name>} enables the drop-in's plugin next to
        the bundled ones.
        """
        drops = DropIns(self)
        drops.write("eg_test_dropin_enabled", DROP_IN.format(cls="Greeter", name="greeter2", instance="g"))
        enabled = load_plugins("bundled,greeter2")
        self.assertEqual(enabled["greeter2"].priority, 7)
        self.assertIn("header-echo", enabled)

    def test_bundledLeavesDropInsOut(self) -> None:
        """
        C{--plugins bundled} does not enable a third-party plugin that is
        merely available.
        """
        drops = DropIns(self)
        drops.write("eg_test_dropin_left_out", DROP_IN.format(cls="Greeter", name="greeter3", instance="g"))
        enabled = load_plugins("bundled")
        self.assertNotIn("greeter3", enabled)
        self.assertTrue(all(is_bundled(p) for p in enabled.values()))

    def test_onlyTheNamedOnes(self) -> None:
        """
        C{--plugins <name>} enables that plugin and no bundled one.
        """
        drops = DropIns(self)
        drops.write("eg_test_dropin_only", DROP_IN.format(cls="Greeter", name="greeter4", instance="g"))
        self.assertEqual(list(load_plugins("greeter4")), ["greeter4"])

    def test_providedTwice(self) -> None:
        """
        Two drop-in modules providing the same plugin name stop start-up,
        naming both modules.
        """
        drops = DropIns(self)
        drops.write("eg_test_twice_a", DROP_IN.format(cls="A", name="twice", instance="a"))
        drops.write("eg_test_twice_b", DROP_IN.format(cls="B", name="twice", instance="b"))
        error = self.assertRaises(PluginLoadError, discover)
        self.assertIn(
            str(error),
            [
                "plugin 'twice' is provided twice: by twisted.plugins.eg_test_twice_a"
                " and by twisted.plugins.eg_test_twice_b",
                "plugin 'twice' is provided twice: by twisted.plugins.eg_test_twice_b"
                " and by twisted.plugins.eg_test_twice_a",
            ],
        )

    def test_importFailureNamesTheModule(self) -> None:
        """
        When a configured plugin is missing and a drop-in module failed to
        import, the one-line message names that module and its error.
        """
        drops = DropIns(self)
        drops.write("eg_test_broken_dropin", "import echogate_no_such_dependency\n")
        error = self.assertRaises(PluginLoadError, load_plugins, "bundled,broken-thing")
        self.flushLoggedErrors(ImportError)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(
            "plugin 'broken-thing' is enabled in --plugins but was not found ("), message)
        self.assertIn("No module named 'echogate_no_such_dependency'", message)
        self.assertIn("eg_test_broken_dropin", message)

    def test_importFailureOfAnExceptionNamesTheModule(self) -> None:
        """
        A drop-in that raises while importing is named too.
        """
        drops = DropIns(self)
        drops.write("eg_test_raising_dropin", "raise RuntimeError('misconfigured')\n")
        error = self.assertRaises(PluginLoadError, load_plugins, "raising-thing")
        self.flushLoggedErrors(RuntimeError)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn("misconfigured", message)
        self.assertIn("eg_test_raising_dropin", message)

    def test_importFailureReported(self) -> None:
        """
        L{discover} reports a drop-in's import failure (one line) and still
        finds every other plugin.
        """
        drops = DropIns(self)
        drops.write("eg_test_broken_reported", "import echogate_no_such_dependency\n")
        available, failures = discover()
        self.flushLoggedErrors(ImportError)
        self.assertIn("header-echo", available)
        self.assertEqual(len(failures), 1)
        self.assertNotIn("\n", failures[0])
        self.assertIn("No module named 'echogate_no_such_dependency'", failures[0])

    def test_unrelatedImportFailureDoesNotStopStartUp(self) -> None:
        """
        A broken drop-in does not matter when every configured plugin is
        found.
        """
        drops = DropIns(self)
        drops.write("eg_test_broken_unrelated", "import echogate_no_such_dependency\n")
        self.assertIn("header-echo", load_plugins("bundled"))
        self.flushLoggedErrors(ImportError)
