"""
The names plugin authors import keep working wherever the modules behind
them live (the shape of Klein's C{test_exports}), and the example plugin
project in C{docs/example-plugin} passes its own tests against this tree.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

#: Module to the names a plugin author may import from it.
PUBLIC = {
    "echogate.interfaces": ["IGatewayPlugin", "IPluginPhases", "IPluginNode", "IStore", "IUpstreamClient",
                            "IUpstreamResponse"],
    "echogate.plugin": ["GatewayPlugin", "ImmutablePluginError", "NodeBinding", "NodeNotBound", "PluginEntity"],
    "echogate.schema": ["String", "Integer", "Number", "Boolean", "Array", "Set", "Map", "Record", "Foreign",
                        "at_least_one_of", "only_one_of", "ENTITY", "Field", "Invalid", "NO_DEFAULT"],
    "echogate.context": ["PluginContext", "PluginLogger", "RequestContext", "ClientRequest", "Exit",
                         "HeaderEditor", "HeaderPairs", "ResponseState", "UpstreamRequest", "encode_exit_body"],
    "echogate.pdk.context": ["PluginContext", "PluginLogger", "RequestContext"],
    "echogate.pdk.messages": ["ClientRequest", "Exit", "HeaderEditor", "ResponseState", "UpstreamRequest",
                              "headers_of"],
    "echogate.pdk.bodies": ["parse_body", "InvalidBody", "UnsupportedMediaType"],
    "echogate.pdk.credentials": ["ConsumerIndex", "CredentialIndex", "UnknownEntity"],
    "echogate.pdk.entities": ["PluginEntity", "EntityIndex"],
    "echogate.pdk.cache": ["Cache", "Caches", "CacheConflict"],
    "echogate.pdk.http": ["HTTPClient", "HTTPResponse", "CallFailed"],
    "echogate.errors": ["GatewayError", "SchemaViolation", "ProxyError", "NotFound", "DatabaseUnavailable",
                        "BodyNotRead"],
    "echogate.testing": ["GatewayHarness", "HarnessResponse", "UpstreamAnswer", "UpstreamRequestSeen",
                         "FunctionUpstream", "echo_upstream", "ROUTE_ID", "SERVICE_ID", "HarnessNode", "NODE_ID",
                         "run_inline", "MemoryStore"],
}


class PublicNamesTests(SynchronousTestCase):
    """
    Every public name is importable from its documented module.
    """

    def test_names(self) -> None:
        """
        Each module of L{PUBLIC} has each of its names.
        """
        missing = [f"{module}.{name}" for module, names in PUBLIC.items()
                   for name in names if not hasattr(importlib.import_module(module), name)]
        self.assertEqual(missing, [])

    def test_allListsExisting(self) -> None:
        """
        A public module's C{__all__}, where it has one, names only what it
        has.
        """
        broken = []
        for module in PUBLIC:
            mod = importlib.import_module(module)
            broken += [f"{module}.{name}" for name in getattr(mod, "__all__", ()) if not hasattr(mod, name)]
        self.assertEqual(broken, [])

    def test_contextIsThePDK(self) -> None:
        """
        C{echogate.context} names the PDK's own classes, not copies.
        """
        from echogate import context
        from echogate.pdk import context as pdk_context

        self.assertIs(context.PluginContext, pdk_context.PluginContext)
        self.assertIs(context.RequestContext, pdk_context.RequestContext)

    def test_pluginEntityIdentity(self) -> None:
        """
        C{echogate.plugin.PluginEntity} is the PDK's class, and a record
        lookup (C{ctx.credentials.entities(name)}) is an
        L{echogate.pdk.entities.EntityIndex}.
        """
        from echogate.pdk import entities
        from echogate.pdk.credentials import CredentialIndex
        from echogate.plugin import PluginEntity
        from echogate.schema import Record, String
        from echogate.store.data import ConfigurationData

        self.assertIs(PluginEntity, entities.PluginEntity)
        declared = PluginEntity(name="api_things", schema=Record({"thing": String()}), endpoint="things")
        index = CredentialIndex.build(ConfigurationData(version=1), [declared]).entities("api_things")
        self.assertIsInstance(index, entities.EntityIndex)

    def test_interfaceIdentity(self) -> None:
        """
        C{echogate.plugin.GatewayPlugin} provides the interface that
        C{echogate.interfaces} names.
        """
        from echogate.interfaces import IGatewayPlugin
        from echogate.plugin import GatewayPlugin

        self.assertTrue(IGatewayPlugin.implementedBy(GatewayPlugin))


class ExamplePluginTests(SynchronousTestCase):
    """
    The example plugin project, unchanged, passes its own trial tests.
    """

    def test_examplePluginSuite(self) -> None:
        """
        C{PYTHONPATH=. trial tests} in C{docs/example-plugin}, as its README
        says, passes.
        """
        project = ROOT / "docs" / "example-plugin"
        env = dict(os.environ, PYTHONPATH=f"{project}{os.pathsep}{ROOT}")
        result = subprocess.run([sys.executable, "-m", "twisted.trial", "--temp-directory",
                                 os.path.abspath(self.mktemp()), "tests"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        self.assertIn("PASSED", result.stdout)


class EntityExampleTests(SynchronousTestCase):
    """
    The example plugin with its own entity passes its own trial tests.
    """

    def test_entityExampleSuite(self) -> None:
        """
        C{PYTHONPATH=. trial tests} in C{docs/examples/entity-plugin}
        passes.
        """
        project = ROOT / "docs" / "examples" / "entity-plugin"
        env = dict(os.environ, PYTHONPATH=f"{project}{os.pathsep}{ROOT}")
        result = subprocess.run([sys.executable, "-m", "twisted.trial", "--temp-directory",
                                 os.path.abspath(self.mktemp()), "tests"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        self.assertIn("PASSED", result.stdout)


class IntrospectionExampleTests(SynchronousTestCase):
    """
    The introspection example (cache, configure, outbound HTTP) passes its
    own trial tests.
    """

    def test_introspectionExampleSuite(self) -> None:
        """
        C{PYTHONPATH=. trial tests} in C{docs/examples/introspection-plugin}
        passes.
        """
        project = ROOT / "docs" / "examples" / "introspection-plugin"
        env = dict(os.environ, PYTHONPATH=f"{project}{os.pathsep}{ROOT}")
        result = subprocess.run([sys.executable, "-m", "twisted.trial", "--temp-directory",
                                 os.path.abspath(self.mktemp()), "tests"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        self.assertIn("PASSED", result.stdout)
