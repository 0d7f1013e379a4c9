"""
Tests for C{echogate plugin new} (L{echogate.scaffold}): the names it
refuses, and the project it writes, whose tests pass as written and whose
wheel, installed, gives a plugin that a real gateway runs.
"""
from __future__ import annotations

import io
import os
import sys
import zipfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from echogate import cli
from echogate.scaffold import PluginProject, ScaffoldError, check_name, write_project
from tests.postgres import fresh_database
from tests.test_startup import ROOT, StartupTestCase, _env, _free_port
from tests.upstream_server import start_upstream

BIN = Path(sys.executable).parent

#: The plugin the end-to-end tests make (a name nothing else uses).
PROBE = "scaffold-probe"


def _can_build_wheels() -> bool:
    """
    Whether C{pip wheel --no-build-isolation} can build with what is
    installed: setuptools, and the C{wheel} package (setuptools before
    70.1 needs it for C{bdist_wheel}).
    """
    if find_spec("setuptools") is None:
        return False
    if find_spec("wheel") is not None:
        return True
    from setuptools import __version__ as setuptools_version

    return tuple(int(part) for part in setuptools_version.split(".")[:2]) >= (70, 1)


class NameTests(SynchronousTestCase):
    """
    L{check_name} refuses names that would not make a working, distinct
    plugin, in one line that says why.
    """

    def assertRefused(self, name: str, *said: str, taken: dict[str, str] | None = None) -> None:
        with self.assertRaises(ScaffoldError) as caught:
            check_name(name, taken or {})
        for words in said:
            self.assertIn(words, str(caught.exception))

    def test_accepted(self) -> None:
        """
        Lower-case words joined by dashes or underscores are accepted.
        """
        for name in ("my-plugin", "my_plugin2", "probe", "a-b_c"):
            check_name(name, {"key-auth": "a bundled plugin"})

    def test_badShapes(self) -> None:
        """
        Upper case, leading digits or separators, doubled separators,
        spaces and dots are refused.
        """
        for name in ("My-plugin", "2fa", "-x", "x-", "a--b", "a b", "a.b", ""):
            self.assertRefused(name, "is not a plugin name")

    def test_bundledName(self) -> None:
        """
        A taken name is refused, with what holds it.
        """
        self.assertRefused("key-auth", "'key-auth'", "a bundled plugin", taken={"key-auth": "a bundled plugin"})

    def test_underscoreSpelling(self) -> None:
        """
        A taken name spelt with underscores for dashes is refused too.
        """
        self.assertRefused("key_auth", "'key-auth'", taken={"key-auth": "a bundled plugin"})

    def test_settingWords(self) -> None:
        """
        C{bundled} and C{off} are words of C{--plugins}.
        """
        self.assertRefused("bundled", "--plugins")
        self.assertRefused("off", "--plugins")

    def test_takenPackage(self) -> None:
        """
        A name whose package would be a standard module, the project's own
        C{tests}, or an importable package is refused.
        """
        self.assertRefused("json", "package 'json'")
        self.assertRefused("tests", "package 'tests'")
        self.assertRefused("treq", "already importable")

    def test_takenDropin(self) -> None:
        """
        A name whose drop-in module exists in a C{twisted/plugins/} folder
        (Twisted's own C{twisted_web}) is refused.
        """
        self.assertRefused("twisted_web", "twisted/plugins/twisted_web.py")


class ProjectFilesTests(SynchronousTestCase):
    """
    The files of L{PluginProject}.
    """

    def test_layout(self) -> None:
        """
        The package, the drop-in (and no C{__init__.py} in C{twisted/}),
        the tests, the pyproject and the README.
        """
        files = PluginProject("my-plugin").files()
        self.assertEqual(sorted(files), [
            ".gitignore", "README.md", "my_plugin/__init__.py", "my_plugin/plugin.py", "my_plugin/py.typed",
            "pyproject.toml", "tests/__init__.py", "tests/test_my_plugin.py", "twisted/plugins/my_plugin.py"])

    def test_readme(self) -> None:
        """
        The README says how to develop with --dev, test, build, regenerate
        the drop-in cache, and publish.
        """
        readme = PluginProject("my-plugin").files()["README.md"]
        for words in ("--dev --plugins bundled,my-plugin", "PYTHONPATH=. trial tests", "pip wheel",
                      "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))",
                      "twine upload"):
            self.assertIn(words, readme)

    def test_refusesExistingDirectory(self) -> None:
        """
        An existing directory is refused and left as it was.
        """
        target = Path(self.mktemp())
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        with self.assertRaises(ScaffoldError) as caught:
            write_project("my-plugin", target, {})
        self.assertIn("exists", str(caught.exception))
        self.assertEqual([p.name for p in target.iterdir()], ["keep.txt"])

    def test_nothingLeftOnRefusal(self) -> None:
        """
        A refused name writes nothing.
        """
        parent = Path(self.mktemp())
        parent.mkdir()
        self.assertRaises(ScaffoldError, write_project, "Bad", parent / "bad", {})
        self.assertEqual(list(parent.iterdir()), [])


class CommandTests(SynchronousTestCase):
    """
    C{echogate plugin new} through L{cli.main}.
    """

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return cli.main(list(argv)), out.getvalue(), err.getvalue()

    def test_writes(self) -> None:
        """
        The project is written into C{--dir}, and the command says where.
        """
        target = Path(self.mktemp()) / "project"
        code, out, err = self.run_cli("plugin", "new", "my-plugin", "--dir", str(target))
        self.assertEqual((code, err), (0, ""))
        self.assertIn(str(target), out)
        self.assertTrue((target / "twisted" / "plugins" / "my_plugin.py").is_file())
        self.assertFalse((target / "twisted" / "plugins" / "__init__.py").exists())
        self.assertFalse((target / "twisted" / "__init__.py").exists())

    def test_defaultDirectory(self) -> None:
        """
        Without C{--dir}, the project is C{./NAME}.
        """
        here = Path(self.mktemp()).resolve()
        here.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(here)
        code, _, _ = self.run_cli("plugin", "new", "my-plugin")
        self.assertEqual(code, 0)
        self.assertTrue((here / "my-plugin" / "pyproject.toml").is_file())

    def test_bundledName(self) -> None:
        """
        The name of a bundled plugin: one line, exit 2, nothing written.
        """
        target = Path(self.mktemp())
        code, out, err = self.run_cli("plugin", "new", "key-auth", "--dir", str(target))
        self.assertEqual(code, cli.USAGE_ERROR)
        self.assertEqual(err, "echogate: 'key-auth' is already the name of a bundled plugin; choose another name\n")
        self.assertFalse(target.exists())

    def test_existingDirectory(self) -> None:
        """
        An existing C{--dir}: one line, exit 2.
        """
        target = Path(self.mktemp())
        target.mkdir()
        code, out, err = self.run_cli("plugin", "new", "my-plugin", "--dir", str(target))
        self.assertEqual(code, cli.USAGE_ERROR)
        self.assertEqual(err, f"echogate: {target} exists; remove it or pass another --dir\n")


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value.exitCode if reason.value.signal is None else -reason.value.signal)


class GeneratedProjectTests(StartupTestCase):
    """
    A generated project, used as its README says.
    """

    timeout = 300

    async def run_process(self, *argv: str, env: dict[str, str], cwd: str | None = None) -> str:
        """
        Run C{argv} (killed if the test ends first); it must exit 0. Return
        its output.
        """
        protocol = _Process()
        transport = reactor.spawnProcess(protocol, argv[0], argv, env=env, path=cwd)
        self.addCleanup(lambda: None if protocol.ended.called else transport.signalProcess("KILL"))
        code = await protocol.ended
        output = protocol.output.decode(errors="replace")
        self.assertEqual(code, 0, f"{argv}:\n{output}")
        return output

    def project(self) -> Path:
        target = Path(self.mktemp()).resolve() / PROBE
        write_project(PROBE, target, {})
        return target

    async def test_generatedTestsPass(self) -> None:
        """
        The project's own tests pass as generated.
        """
        project = self.project()
        output = await self.run_process(str(BIN / "trial"), "tests", env=_env(PYTHONPATH=str(project)),
                                        cwd=str(project))
        self.assertIn("PASSED (successes=4)", output)

    async def test_wheelInstalledRunsInGateway(self) -> None:
        """
        The project's wheel holds the package and the drop-in; installed
        into a folder (with the drop-in cache regenerated as the README
        says), it gives a plugin that twistd finds, the Admin API
        configures, and that adds its header to a proxied request.
        """
        if not _can_build_wheels():
            if os.environ.get("CI"):
                self.fail("no wheel package in CI: the test extra installs it (setup.py)")
            self.skipTest("no wheel package (or setuptools >= 70.1) in this environment")
        project = self.project()
        dist, target = Path(self.mktemp()).resolve(), Path(self.mktemp()).resolve()
        build_env = dict(os.environ)
        await self.run_process(str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                       "-q", "-w", str(dist), str(project), env=build_env)
        [wheel] = dist.glob("*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/scaffold_probe.py", names)
        self.assertIn("scaffold_probe/plugin.py", names)
        self.assertFalse([n for n in names if n.startswith(("twisted/__init__", "twisted/plugins/__init__",
                                                           "tests/"))], names)
        await self.run_process(str(BIN / "pip"), "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                       str(wheel), env=build_env)
        path = f"{ROOT}:{target}"
        await self.run_process(str(BIN / "python"), "-c",
                       "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))",
                       env=_env(PYTHONPATH=path), cwd=str(target))
        self.assertTrue((target / "twisted" / "plugins" / "dropin.cache").is_file())

        upstream, upstream_port = start_upstream(self)
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port = _free_port(), _free_port()
        args = ["--database", dsn, "--plugins", f"bundled,{PROBE}",
                "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        await self.start(args, _env(PYTHONPATH=path), self.mktemp_dir(), admin_port)
        admin = f"http://127.0.0.1:{admin_port}"
        info: Any = await (await treq.get(f"{admin}/", pool=self.pool)).json()
        self.assertIn(PROBE, info["plugins"]["available_on_server"])
        response = await treq.post(f"{admin}/services", data={
            "name": "s", "url": f"http://127.0.0.1:{upstream_port}"}, pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        response = await treq.post(f"{admin}/services/s/routes", data={"paths[]": "/p"}, pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        response = await treq.post(f"{admin}/services/s/plugins", data={
            "name": PROBE, "config.header": "X-Probe", "config.value": "installed"}, pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        proxied = await treq.get(f"http://127.0.0.1:{proxy_port}/p", pool=self.pool)
        self.assertEqual(proxied.code, 200)
        self.assertEqual(proxied.headers.getRawHeaders("X-Probe"), ["installed"])
        await proxied.content()
        self.assertEqual(upstream.seen[-1]["headers"].get("x-probe"), ["installed"])
