"""
C{echogate plugin new NAME}: the project of a plugin, ready to test, build
and publish.

L{PluginProject} is what a name makes: a package holding the plugin (a
L{echogate.plugin.GatewayPlugin} with a config schema and an C{access}
phase that adds a header), its drop-in in C{twisted/plugins/} (no
C{__init__.py} there), trial tests on L{echogate.testing.GatewayHarness},
a setuptools C{pyproject.toml} whose wheel installs the package and the
drop-in, and a README. L{check_name} refuses names that would not work or
would clash; L{write_project} writes the files into a directory that did
not exist.

The templates are C{string.Template}s (C{${module}} and so on), so the
braces of Python and TOML need no escaping. This module imports nothing of
echogate: the command passes the plugin names already taken.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from string import Template
from typing import Mapping

import attrs

__all__ = ["ScaffoldError", "PluginProject", "check_name", "write_project"]

#: A plugin name: lower case letters and digits, words joined by single
#: dashes or underscores, starting with a letter.
NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

#: Words of C{--plugins} that cannot name a plugin.
SETTING_WORDS = frozenset({"bundled", "off"})

#: Top-level names a project must not take: its own C{tests} package, and
#: the packages it lives among.
RESERVED_MODULES = frozenset({"tests", "twisted", "echogate", "setup"})


class ScaffoldError(Exception):
    """
    The project cannot be made: a bad name or an existing directory. The
    message is one line for the user.
    """


@attrs.frozen
class PluginProject:
    """
    The project of the plugin called C{name}.

    @ivar name: the plugin's name, as operators type it in C{--plugins}.
    """

    name: str

    @property
    def module(self) -> str:
        """
        The Python package (and drop-in module) name: C{my_plugin}.
        """
        return self.name.replace("-", "_")

    @property
    def class_name(self) -> str:
        """
        The plugin's class: C{MyPlugin}.
        """
        return "".join(word.capitalize() for word in re.split(r"[-_]", self.name))

    @property
    def header(self) -> str:
        """
        The header the plugin adds by default: C{X-My-Plugin}.
        """
        return "X-" + "-".join(word.capitalize() for word in re.split(r"[-_]", self.name))

    @property
    def dropin(self) -> str:
        """
        The drop-in's path in the project.
        """
        return f"twisted/plugins/{self.module}.py"

    def files(self) -> dict[str, str]:
        """
        Every file of the project: its path (with C{/}) to its text.
        """
        values = {
            "name": self.name,
            "module": self.module,
            "cls": self.class_name,
            "instance": self.class_name[0].lower() + self.class_name[1:],
            "header": self.header,
            "dropin": self.dropin,
        }
        return {Template(path).substitute(values): Template(text).substitute(values)
                for path, text in TEMPLATES.items()}


def check_name(name: str, taken: Mapping[str, str]) -> None:
    """
    Refuse a name that would not make a working, distinct plugin.

    @param taken: the plugin names in use (the bundled plugins, at least),
        each with what holds it, such as C{"a bundled plugin"}.
    @raise ScaffoldError: saying why, in one line.
    """
    if not NAME.match(name):
        raise ScaffoldError(
            f"{name!r} is not a plugin name: use lower-case letters and digits, words joined by"
            " '-' or '_', starting with a letter (e.g. my-plugin)")
    if name in SETTING_WORDS:
        raise ScaffoldError(f"{name!r} is a word of --plugins and cannot name a plugin")
    for other, holder in taken.items():
        if other.replace("_", "-") == name.replace("_", "-"):
            same = "" if other == name else f" ({other!r})"
            raise ScaffoldError(f"{name!r} is already the name of {holder}{same}; choose another name")
    project = PluginProject(name)
    module = project.module
    if module in RESERVED_MODULES or module in sys.stdlib_module_names:
        raise ScaffoldError(
            f"{name!r} would make a package {module!r}, which is taken by Python or the project layout;"
            " choose another name")
    spec = find_spec(module)
    if spec is not None:
        where = spec.origin or (list(spec.submodule_search_locations or []) or ["?"])[0]
        raise ScaffoldError(
            f"{name!r} would make a package {module!r}, but one is already importable ({where});"
            " choose another name")
    for folder in _dropin_folders():
        existing = Path(folder) / f"{module}.py"
        if existing.exists():
            raise ScaffoldError(
                f"{name!r} would make the drop-in twisted/plugins/{module}.py, but {existing} exists;"
                " choose another name")


def _dropin_folders() -> list[str]:
    """
    The C{twisted/plugins/} folders on C{sys.path}.
    """
    import twisted.plugins

    return list(twisted.plugins.__path__)


def write_project(name: str, directory: Path, taken: Mapping[str, str]) -> PluginProject:
    """
    Check C{name} and write its project into C{directory}, which must not
    exist (its parents are made). The files are written beside it first and
    the folder renamed into place, so a failure leaves nothing half made.

    @raise ScaffoldError: a bad name, or C{directory} exists.
    """
    check_name(name, taken)
    if directory.exists() or directory.is_symlink():
        raise ScaffoldError(f"{directory} exists; remove it or pass another --dir")
    project = PluginProject(name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for path, text in project.files().items():
            target = staging.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())
        if directory.exists():
            raise ScaffoldError(f"{directory} exists; remove it or pass another --dir")
        staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return project


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- the templates: path -> text, both with ${name}, ${module}, ${cls},
# ${instance}, ${header}, ${dropin}.

_PLUGIN = '''\
"""
${name}: an echogate plugin.

It adds a header, named and valued by its config, to the request that goes
to the service (in C{access}) and to the response the client gets (in
C{header_filter}). Replace the phases with your own; the guide is
docs/plugins.md in echogate.
"""
from __future__ import annotations

from typing import Any, Mapping

from echogate.context import PluginContext
from echogate.plugin import GatewayPlugin
from echogate.schema import Boolean, Record, String


class ${cls}(GatewayPlugin):
    """
    Add the configured header to the upstream request and the response.

    One object serves every request: it never changes (assigning an
    attribute raises), and what a request needs from one phase to the next
    goes in C{ctx.plugin}.
    """

    name = "${name}"
    version = "0.1.0"
    priority = 800
    config_schema = Record({
        "header": String(required=True, default="${header}", description="The header to add."),
        "value": String(required=True, default="on", description="Its value."),
        "to_client": Boolean(default=True, description="Add it to the response too."),
    })

    def access(self, ctx: PluginContext, config: Mapping[str, Any]) -> None:
        """
        Before the request goes upstream: add the header to it.
        """
        if ctx.upstream is not None:
            ctx.upstream.set_header(config["header"], config["value"])
        ctx.plugin["added"] = config["value"]

    def header_filter(self, ctx: PluginContext, config: Mapping[str, Any]) -> None:
        """
        When the response head is known: add the header to it, if asked.
        """
        added = ctx.plugin.get("added")
        if config["to_client"] and added is not None:
            ctx.response.set_header(config["header"], added)
'''

_PACKAGE = '''\
"""
The ${name} echogate plugin. The gateway finds it through its drop-in,
${dropin}.
"""
from ${module}.plugin import ${cls}

__all__ = ["${cls}"]
__version__ = ${cls}.version
'''

_DROPIN = '''\
"""
The drop-in through which Twisted's C{getPlugins} (so C{twistd} and
echogate) finds ${name}. Keep it light: it is imported whenever anything
looks for Twisted plugins. There is no C{__init__.py} in C{twisted/} or
C{twisted/plugins/}, and there must never be one.
"""
from ${module}.plugin import ${cls}

${instance} = ${cls}()
'''

_TESTS = '''\
"""
Tests of ${name}, on a gateway in memory (echogate.testing.GatewayHarness).

Run from the project directory: PYTHONPATH=. trial tests
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate.testing import GatewayHarness
from ${module} import ${cls}


class ${cls}Tests(SynchronousTestCase):
    def test_upstreamGetsTheHeader(self) -> None:
        """
        The service receives the default header and value.
        """
        gateway = GatewayHarness([${cls}()], configs=[("${name}", {})])
        response = self.successResultOf(gateway.request("GET", "/"))
        self.assertEqual(response.status, 200)
        self.assertEqual(gateway.upstream_requests[0].header("${header}"), "on")

    def test_clientGetsTheHeader(self) -> None:
        """
        The client gets the header too.
        """
        gateway = GatewayHarness([${cls}()], configs=[("${name}", {})])
        response = self.successResultOf(gateway.request("GET", "/"))
        self.assertEqual(response.header("${header}"), "on")

    def test_configured(self) -> None:
        """
        The header's name and value come from the config; to_client false
        keeps it from the client.
        """
        config = {"header": "X-Team", "value": "blue", "to_client": False}
        gateway = GatewayHarness([${cls}()], configs=[("${name}", config)])
        response = self.successResultOf(gateway.request("GET", "/"))
        self.assertEqual(gateway.upstream_requests[0].header("X-Team"), "blue")
        self.assertIsNone(response.header("X-Team"))

    def test_notConfigured(self) -> None:
        """
        Without a config the plugin does nothing.
        """
        gateway = GatewayHarness([${cls}()])
        response = self.successResultOf(gateway.request("GET", "/"))
        self.assertIsNone(response.header("${header}"))
'''

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "${name}"
version = "0.1.0"
description = "${name}: an echogate plugin"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["echogate"]

[tool.setuptools]
# The plugin's package, and the drop-in: twisted/plugins/ is installed into
# Twisted's twisted.plugins folder (it has no __init__.py, and must not).
packages = ["${module}", "twisted.plugins"]
include-package-data = false

[tool.setuptools.package-data]
"${module}" = ["py.typed"]
"twisted.plugins" = ["${module}.py"]
'''

_README = '''\
# ${name}

An [echogate](https://pypi.org/project/echogate/) plugin. It adds a header
(`${header}: on` unless configured) to the requests it sees on their way to
the service, and to their responses.

```
${module}/plugin.py        the plugin: its config schema and phases
${dropin}    the drop-in through which the gateway finds it
tests/                    its trial tests, on echogate.testing.GatewayHarness
pyproject.toml            how its wheel is built
```

There is no `__init__.py` in `twisted/` or `twisted/plugins/`, and there
must never be one: it would hide Twisted's own `twisted.plugins`.

## Develop

With a Python environment that has echogate installed, from this
directory:

```sh
PYTHONPATH=. twistd -n echogate --dev --plugins bundled,${name}
```

`--dev` watches the plugin's files and reloads it when one changes (the
next request gets the new code). Enable it on a service through the Admin
API:

```sh
curl -sX POST localhost:8001/services/<service>/plugins --data name=${name} \\
    --data config.header=X-Hello --data config.value=world
```

## Test

```sh
PYTHONPATH=. trial tests
```

## Build

```sh
pip wheel --no-deps -w dist .
```

The wheel holds the `${module}` package and `${dropin}`.

## Install

```sh
pip install dist/${module}-0.1.0-py3-none-any.whl
python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
twistd -n echogate --plugins bundled,${name}
```

The second line regenerates Twisted's `dropin.cache` in the installed
`twisted/plugins/` folder, which the installer does not do: without it,
every process that looks for plugins would try to rewrite the cache (and
log an error if it cannot). Run it after every install, upgrade or
uninstall, as a user who may write to that folder.

## Publish

```sh
pip install twine
twine upload dist/*
```

Operators then `pip install ${name}`, run the cache step above, and add
`${name}` to `--plugins`.
'''

_GITIGNORE = '''\
__pycache__/
*.egg-info/
build/
dist/
_trial_temp*/
dropin.cache
'''

#: The files of a project, by path.
TEMPLATES: dict[str, str] = {
    "${module}/__init__.py": _PACKAGE,
    "${module}/plugin.py": _PLUGIN,
    "${module}/py.typed": "",
    "${dropin}": _DROPIN,
    "tests/__init__.py": "",
    "tests/test_${module}.py": _TESTS,
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    ".gitignore": _GITIGNORE,
}
