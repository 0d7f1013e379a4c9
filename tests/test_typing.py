"""
Types as a gate: mypy (with mypy-zope) passes on the tree with the
checkout's C{mypy.ini}, whose list of exempted modules may only shrink,
and the installed package carries C{py.typed} so that plugin authors' type
checks see echogate's annotations. See C{docs/testing.md}.
"""
from __future__ import annotations

import configparser
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mypy.ini"

#: The modules C{mypy.ini} may exempt (its C{[mypy-echogate...]}
#: sections), frozen: an exemption not listed here fails
#: L{ExemptionTests}. Remove a line when its module passes; never add one.
EXEMPT: frozenset[str] = frozenset()

#: The flags the C{[mypy]} section must keep on (Klein's).
STRICT = ("disallow_untyped_defs", "check_untyped_defs", "warn_unused_ignores", "warn_return_any",
          "warn_unreachable")


def require_mypy(environ: Mapping[str, str] = os.environ,
                 find_spec: Callable[[str], object] = importlib.util.find_spec) -> None:
    """
    Return when mypy and mypy-zope are installed. Otherwise skip the
    calling test, except under CI (C{CI=true}), where a missing type
    checker is a failure: the gate must not pass by not running.

    @raise SkipTest: when they are missing outside CI.
    @raise AssertionError: when they are missing under CI.
    """
    missing = [name for name in ("mypy", "mypy_zope") if find_spec(name) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (pip install -e '.[test]')"
    if environ.get("CI", "").lower() == "true":
        raise AssertionError(message)
    raise SkipTest(message)


def read_config(path: Path = CONFIG) -> configparser.ConfigParser:
    """
    C{mypy.ini}, parsed as mypy parses it.
    """
    config = configparser.ConfigParser()
    with path.open() as f:
        config.read_file(f)
    return config


def module_sections(config: configparser.ConfigParser) -> dict[str, str]:
    """
    Each module pattern of C{config}'s per-module sections (a section may
    name several, comma-separated), to its section.
    """
    patterns = {}
    for section in config.sections():
        if section.startswith("mypy-"):
            for pattern in section[len("mypy-"):].split(","):
                patterns[pattern.strip()] = section
    return patterns


def exemptions(config: configparser.ConfigParser) -> set[str]:
    """
    The echogate module patterns C{config} has a section for: every such
    section relaxes the global flags for its modules.
    """
    return {p for p in module_sections(config) if p == "echogate" or p.startswith("echogate.")}


class MypyTests(SynchronousTestCase):
    """
    mypy finds no error in the tree.
    """

    def test_clean(self) -> None:
        """
        C{mypy} with C{mypy.ini} exits 0; on any error the test fails with
        mypy's report.
        """
        require_mypy()
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(CONFIG)],
            cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            self.fail(f"mypy found errors (exit {result.returncode}):\n{result.stdout}{result.stderr}")


class RequireMypyTests(SynchronousTestCase):
    """
    L{require_mypy} skips only outside CI.
    """

    def test_installed(self) -> None:
        """
        With both packages found it returns, under CI or not.
        """
        for environ in ({}, {"CI": "true"}):
            require_mypy(environ, lambda name: object())

    def test_missingLocally(self) -> None:
        """
        A missing mypy skips the test outside CI.
        """
        with self.assertRaises(SkipTest):
            require_mypy({}, lambda name: None)
        with self.assertRaises(SkipTest):
            require_mypy({"CI": "false"}, lambda name: None)

    def test_missingUnderCI(self) -> None:
        """
        Under C{CI=true} a missing mypy (or mypy-zope) fails the test.
        """
        with self.assertRaises(AssertionError) as raised:
            require_mypy({"CI": "true"}, lambda name: None if name == "mypy_zope" else object())
        self.assertIn("mypy_zope not installed", str(raised.exception))


class ExemptionTests(SynchronousTestCase):
    """
    C{mypy.ini}'s exemptions may only shrink, and it keeps its strict flags.
    """

    def test_onlyShrinks(self) -> None:
        """
        Every echogate module pattern with a section in C{mypy.ini} is in
        L{EXEMPT}.
        """
        added = exemptions(read_config()) - EXEMPT
        self.assertEqual(added, set(),
                         "mypy.ini exempts modules that tests/test_typing.py EXEMPT does not list:"
                         " make them pass instead")

    def test_exemptionsFound(self) -> None:
        """
        L{exemptions} reads each pattern of a comma-separated section, and
        only echogate's.
        """
        config = configparser.ConfigParser()
        config.read_string("[mypy]\nfiles = echogate\n"
                           "[mypy-echogate.a, echogate.b.*]\nignore_errors = True\n"
                           "[mypy-echogate]\ndisallow_untyped_defs = False\n"
                           "[mypy-txpostgres.*]\nignore_missing_imports = True\n")
        self.assertEqual(exemptions(config), {"echogate.a", "echogate.b.*", "echogate"})

    def test_strictFlags(self) -> None:
        """
        The global section keeps Klein's flags on, the mypy-zope plugin,
        and checks the whole package; it ignores no errors or imports.
        """
        main = read_config()["mypy"]
        self.assertEqual({flag: main.getboolean(flag) for flag in STRICT}, dict.fromkeys(STRICT, True))
        self.assertIn("mypy_zope:plugin", main.get("plugins", ""))
        self.assertIn("echogate", [f.strip() for f in main.get("files", "").split(",")])
        self.assertFalse(main.getboolean("ignore_errors", False))
        self.assertFalse(main.getboolean("ignore_missing_imports", False))

    def test_thirdPartyOnlyMissingImports(self) -> None:
        """
        A section for a third-party module only says its imports may be
        missing (it has no stubs); nothing else is relaxed there.
        """
        config = read_config()
        relaxed = {section: sorted(set(config[section]) - {"ignore_missing_imports"})
                   for pattern, section in module_sections(config).items()
                   if pattern not in exemptions(config)}
        self.assertEqual({s: keys for s, keys in relaxed.items() if keys}, {})


class TypedPackageTests(SynchronousTestCase):
    """
    echogate ships C{py.typed} (PEP 561).
    """

    def test_marker(self) -> None:
        """
        The package has a C{py.typed} file.
        """
        self.assertTrue(importlib.resources.files("echogate").joinpath("py.typed").is_file())

    def test_packageData(self) -> None:
        """
        C{setup.py} puts C{echogate/py.typed} in the built package (the
        data files setuptools' C{build_py} copies).
        """
        script = (
            "import setuptools, distutils.core, json\n"
            "dist = distutils.core.run_setup('setup.py', stop_after='init')\n"
            "build = dist.get_command_obj('build_py')\n"
            "build.ensure_finalized()\n"
            "print(json.dumps({p: names for p, _, _, names in build.data_files}))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        data = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertIn("py.typed", data.get("echogate", []))
