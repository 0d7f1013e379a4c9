"""
Print setup.py's install_requires with every floor pinned exactly, as a pip
constraints file: C{"Twisted[tls]>=24.10"} becomes C{"Twisted==24.10"}.

.ci/run installs echogate into .venv-lowest with these constraints and runs
the tests listed in tests/lowest.txt there, so a floor that is too low (a
name echogate imports that the floor release lacks) fails CI. A requirement
without a C{>=} floor is an error: each one must say how old it may be.
"""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path
from typing import Any

import setuptools

_FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)(\[[^\]]*\])?\s*>=\s*(?P<version>[^,;\s]+)\s*(?P<marker>;.*)?$")


def requirements(setup_py: Path) -> list[str]:
    """
    Run C{setup_py} with C{setuptools.setup} replaced, and return the
    C{install_requires} it passes.
    """
    seen: dict[str, Any] = {}

    def capture(**keywords: Any) -> None:
        seen.update(keywords)

    original = setuptools.setup
    setuptools.setup = capture  # type: ignore[assignment]
    try:
        runpy.run_path(str(setup_py), run_name="__main__")
    finally:
        setuptools.setup = original
    return list(seen["install_requires"])


def pin(requirement: str) -> str:
    """
    Turn one C{name[extras]>=floor; marker} requirement into the
    constraint C{name==floor; marker} (constraints may not name extras).

    @raise ValueError: The requirement has no single C{>=} floor.
    """
    match = _FLOOR.match(requirement.strip())
    if match is None:
        raise ValueError(f"{requirement!r} has no '>=' floor")
    return f"{match['name']}=={match['version']}{match['marker'] or ''}"


def main() -> int:
    """
    Print the constraints for the setup.py beside this directory.
    """
    setup_py = Path(__file__).resolve().parent.parent / "setup.py"
    try:
        pins = [pin(r) for r in requirements(setup_py)]
    except ValueError as e:
        print(f"lowest_pins: {e}", file=sys.stderr)
        return 1
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
