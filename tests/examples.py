"""
The example plugins under C{docs/examples}, imported for echogate's own
tests by file, never by putting their directories on C{sys.path}: each
example is a project with a top-level C{tests} package of its own, which
would shadow this one (trial's workers inherit the path).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def example_module(project: str, module: str) -> ModuleType:
    """
    The module C{module} (a file C{module}.py) of the example project
    C{project}, imported once and registered in C{sys.modules} under its
    own name, as the example's own tests import it.
    """
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module, EXAMPLES / project / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    spec.loader.exec_module(loaded)
    return loaded
