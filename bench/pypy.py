"""
A PyPy virtualenv for the benchmark: Debian's C{pypy3} with Twisted, so
the baselines run under PyPy, and echogate too when it can.

What happens on Debian 12 (PyPy 7.3.11, Python 3.9), found by L{prepare}
and printed by the benchmark each time:

 - The baselines run: C{pip install Twisted} works.
 - echogate does not. C{setup.py} says C{python_requires >= 3.11}, and the
   code uses 3.10+ syntax at run time (C{X | Y} unions outside
   annotations), so neither C{pip install -e .} nor importing every
   module works. Its database driver does not load either:
   C{psycopg2-binary} has no PyPy wheel, builds from source (given
   C{pypy3-dev} and C{libpq-dev}), and then fails to import (PyPy's
   C-API emulation lacks C{PyInterpreterState_Main}). L{prepare} checks
   each of these and reports what it found, so that a newer PyPy (or a
   driver that runs on PyPy) is picked up without changes here.

The echogate attempt pins C{cryptography<44} (newer ones have no PyPy 3.9
wheel and build from Rust sources, which needs the network to fetch
crates) and C{pyopenssl<25} (newer ones want a newer cryptography).
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["PyPySetup", "prepare", "requirements"]

REPO = Path(__file__).resolve().parent.parent

#: Pins for PyPy 3.9 (see the module docstring).
CONSTRAINTS = "cryptography<44\npyopenssl<25\n"


class PyPySetup:
    """
    The outcome of L{prepare}.

    @ivar bin_dir: the environment's C{bin}, or C{None} when even the
        baselines cannot run (then C{reason} says why).
    @ivar echogate_reason: why echogate cannot run under PyPy, or C{None}
        when it can.
    @ivar version: the interpreter, for the report.
    """

    def __init__(self, bin_dir: Path | None, reason: str = "", echogate_reason: str | None = None,
                 version: str = ""):
        self.bin_dir = bin_dir
        self.reason = reason
        self.echogate_reason = echogate_reason
        self.version = version


def _setup_keyword(name: str) -> object:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            return ast.literal_eval(node.value)
    raise ValueError(f"setup.py has no {name}")


def requirements() -> list[str]:
    """
    echogate's C{install_requires}, read from C{setup.py}.
    """
    return list(_setup_keyword("install_requires"))  # type: ignore[call-overload]


def _run(argv: list[str], log: Path) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    return done.returncode == 0, done.stdout + done.stderr


def _last_error(output: str) -> str:
    """
    The telling line of a failed run: the last exception or error line.
    """
    lines = [l.strip() for l in output.splitlines() if l.strip() and "WARNING" not in l]
    found = next((l for l in reversed(lines) if re.match(r"^([\w.]+(Error|Exception)|error:|ERROR:)", l)),
                 lines[-1] if lines else "no output")
    return re.sub(r"/\S*/", "", found)[:400]


def _plugins(output: str) -> list[str]:
    line = next((l for l in output.splitlines() if "PLUGINS" in l), "PLUGINS")
    return line.split("PLUGINS", 1)[1].split()


def _echogate_blockers(python: Path, version: tuple[int, int], log: Path) -> str | None:
    """
    Try to make echogate run in the environment; why it cannot, or
    C{None} when it can.
    """
    reasons = []
    spec = str(_setup_keyword("python_requires"))
    wanted = re.search(r">=\s*(\d+)\.(\d+)", spec)
    if wanted and version < (int(wanted.group(1)), int(wanted.group(2))):
        reasons.append(f"echogate requires Python {spec} (setup.py) and this PyPy is Python "
                       f"{version[0]}.{version[1]}")
    constraints = python.parent.parent / "bench-constraints.txt"
    constraints.write_text(CONSTRAINTS)
    ok, out = _run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints),
                    "--only-binary", "cryptography", *requirements()], log)
    if not ok:
        reasons.append(f"echogate's dependencies do not install: {_last_error(out)}")
        return "; ".join(reasons)
    ok, out = _run([str(python), "-c", "import psycopg2"], log)
    if not ok:
        reasons.append(f"psycopg2-binary (built from source: no PyPy wheel) does not load: "
                       f"{_last_error(out)}")
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True).stdout.strip()
    if site:
        (Path(site) / "echogate-source.pth").write_text(f"{REPO}\n")
    listing = ("import sys\nfrom twisted.python import log\nlog.startLogging(sys.stderr)\n"
               "from echogate.registry import load_plugins\nimport echogate.service, echogate.proxy\n"
               "print('PLUGINS', ' '.join(sorted(load_plugins(['bundled']))))")
    ok, out = _run([str(python), "-c", listing], log)
    if not ok:
        reasons.append(f"echogate's data path does not load: {_last_error(out)}")
    else:
        here = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, cwd=REPO)
        wanted_plugins = set(_plugins(here.stdout + here.stderr))
        missing = sorted(wanted_plugins - set(_plugins(out)))
        if missing:
            where = re.findall(r'File "[^"]*/(echogate/[^"]+)", line (\d+)', out)
            at = f" at {where[-1][0]}:{where[-1][1]}" if where else ""
            reasons.append(f"bundled plugins that do not load: {', '.join(missing)} ({_last_error(out)}{at})")
    return "; ".join(reasons) or None


def prepare(venv: Path, log: Path) -> PyPySetup:
    """
    Make (or reuse) the PyPy environment in C{venv}, logging every
    command to C{log}.
    """
    pypy = shutil.which("pypy3")
    if pypy is None:
        return PyPySetup(None, "pypy3 is not installed (apt-get install -y pypy3 pypy3-dev)")
    python = venv / "bin" / "pypy3"
    if not python.exists():
        ok, out = _run([pypy, "-m", "venv", str(venv)], log)
        if not ok:
            return PyPySetup(None, f"pypy3 -m venv failed: {_last_error(out)}")
    ok, out = _run([str(python), "-c", "import twisted"], log)
    if not ok:
        ok, out = _run([str(python), "-m", "pip", "install", "-q", "Twisted"], log)
        if not ok:
            return PyPySetup(None, f"Twisted does not install under PyPy: {_last_error(out)}")
    probe = subprocess.run([str(python), "-c", "import sys; print(*sys.version_info[:2])"],
                           capture_output=True, text=True)
    major, minor = (int(x) for x in probe.stdout.split())
    blockers = _echogate_blockers(python, (major, minor), log)
    probe = subprocess.run(
        [str(python), "-c", "import sys, twisted; print('PyPy %d.%d.%d (Python %s), Twisted %s' % "
         "(tuple(sys.pypy_version_info[:3]) + (sys.version.split()[0], twisted.__version__)))"],
        capture_output=True, text=True)
    return PyPySetup(venv / "bin", "", blockers, probe.stdout.strip())


if __name__ == "__main__":
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "echogate-bench"
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else cache / "pypy-venv"
    target.parent.mkdir(parents=True, exist_ok=True)
    setup = prepare(target, target.parent / "pypy-setup.log")
    if setup.bin_dir is None:
        print(f"PyPy skipped: {setup.reason}")
    else:
        print(f"{setup.version} in {setup.bin_dir}")
        print(f"echogate under PyPy: {setup.echogate_reason or 'runs'}")
