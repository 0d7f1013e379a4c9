"""
A PyPy virtualenv for the benchmark, with Twisted, so that the baselines
run under PyPy, and echogate too when it can.

Which PyPy: the machine's C{pypy3} when it implements Python 3.11 or newer
(echogate's C{python_requires}); otherwise, when a Debian root made by
C{bench/pypy_root.sh} is given (C{run.py} makes one when it may), the
C{pypy3} inside it, run through C{bench/in_root.sh} with this machine's
C{/tmp}, C{/work} and C{/root} at the same paths, so that the virtualenv,
the echogate sources and the bench's work directory are where both sides
expect them; otherwise the machine's old C{pypy3}, for the baselines only.

What happens on Debian 12, found by L{prepare} and printed by the
benchmark each time: its C{pypy3} is PyPy 7.3.11, Python 3.9. The
baselines run (C{pip install Twisted} works); echogate does not
(C{python_requires >= 3.11}, and C{X | Y} unions built at import time).
Debian 13's C{pypy3} (PyPy 7.3.19, Python 3.11) runs echogate, with
C{psycopg2cffi} as its database driver (C{setup.py} asks for it on PyPy).

Pins (L{CONSTRAINTS}): C{cryptography}'s newest PyPy wheels are built for a
newer PyPy's C-API than Debian's (7.3.19 lacks
C{PyPyModule_FromDefAndSpec2}, which cryptography 47 wheels need), and
building it from source needs Rust crates from the network.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["PyPySetup", "choose", "prepare", "requirements", "wants_root"]

REPO = Path(__file__).resolve().parent.parent

#: Pins by Python version (see the module docstring).
CONSTRAINTS = {(3, 9): "cryptography<44\npyopenssl<25\n", (3, 11): "cryptography<47\n"}
IN_ROOT = Path(__file__).resolve().parent / "in_root.sh"
MAKE_ROOT = Path(__file__).resolve().parent / "pypy_root.sh"
#: The directories L{IN_ROOT} shows inside the root at their own paths.
SHARED = (Path("/tmp"), Path("/work"), Path("/root"))


class PyPySetup:
    """
    The outcome of L{prepare}.

    @ivar bin_dir: the environment's C{bin}, or C{None} when even the
        baselines cannot run (then C{reason} says why).
    @ivar echogate_reason: why echogate cannot run under PyPy, or C{None}
        when it can.
    @ivar version: the interpreter, for the report.
    @ivar launcher: the command that every command for this environment
        runs under (L{IN_ROOT} and the root), or nothing.
    """

    def __init__(self, bin_dir: Path | None, reason: str = "", echogate_reason: str | None = None,
                 version: str = "", launcher: tuple[str, ...] = ()):
        self.bin_dir = bin_dir
        self.reason = reason
        self.echogate_reason = echogate_reason
        self.version = version
        self.launcher = launcher


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
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and "WARNING" not in ln]
    found = next((ln for ln in reversed(lines) if re.match(r"^([\w.]+(Error|Exception)|error:|ERROR:)", ln)),
                 lines[-1] if lines else "no output")
    return re.sub(r"/\S*/", "", found)[:400]


def _plugins(output: str) -> list[str]:
    line = next((ln for ln in output.splitlines() if "PLUGINS" in ln), "PLUGINS")
    return line.split("PLUGINS", 1)[1].split()


def _echogate_blockers(python: Path, version: tuple[int, int], log: Path,
                       launcher: tuple[str, ...] = ()) -> str | None:
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
    constraints.write_text(CONSTRAINTS.get(version, ""))
    ok, out = _run([*launcher, str(python), "-m", "pip", "install", "-q", "-c", str(constraints),
                    "--only-binary", "cryptography", *requirements()], log)
    if not ok:
        reasons.append(f"echogate's dependencies do not install: {_last_error(out)}")
        return "; ".join(reasons)
    ok, out = _run([*launcher, str(python), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "import echogate, psycopg2", str(REPO)], log)
    if not ok:
        reasons.append(f"the database driver does not load: {_last_error(out)}")
    site = subprocess.run([*launcher, str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True).stdout.strip()
    if site:
        (Path(site) / "echogate-source.pth").write_text(f"{REPO}\n")
    listing = ("import sys\nfrom twisted.python import log\nlog.startLogging(sys.stderr)\n"
               "from echogate.registry import load_plugins\nimport echogate.service, echogate.proxy.gateway\n"
               "print('PLUGINS', ' '.join(sorted(load_plugins(['bundled']))))")
    ok, out = _run([*launcher, str(python), "-c", listing], log)
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


def _version(launcher: tuple[str, ...], python: str) -> tuple[int, int] | None:
    try:
        probe = subprocess.run([*launcher, python, "-c", "import sys; print(*sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=120)
        major, minor = (int(x) for x in probe.stdout.split())
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return major, minor


def _modern(pypy: str | None) -> bool:
    return pypy is not None and (_version((), pypy) or (0, 0)) >= (3, 11)


def wants_root(root: Path) -> bool:
    """
    Whether echogate needs C{root} made to run under PyPy: the machine's
    C{pypy3} is missing or older than Python 3.11, and C{root} holds none.
    """
    return not _modern(shutil.which("pypy3")) and not (root / "usr" / "bin" / "pypy3").exists()


def choose(root: Path | None) -> tuple[tuple[str, ...], str | None]:
    """
    Which C{pypy3}: the machine's if it is Python 3.11+, else the one in
    C{root} if that holds one, else the machine's (or none).

    @return: the launcher to run it under, and its path (C{None}: none).
    """
    here = shutil.which("pypy3")
    if _modern(here):
        return (), here
    if root is not None and (root / "usr" / "bin" / "pypy3").exists():
        return (str(IN_ROOT), str(root)), "/usr/bin/pypy3"
    return (), here


def prepare(venv: Path, log: Path, root: Path | None = None) -> PyPySetup:
    """
    Make (or reuse) the PyPy environment in C{venv}, logging every
    command to C{log}; with the C{pypy3} inside C{root} when the
    machine's is too old (L{choose}).
    """
    launcher, pypy = choose(root)
    if pypy is None:
        return PyPySetup(None, "pypy3 is not installed (apt-get install -y pypy3 pypy3-dev)")
    if launcher:
        venv = venv.with_name(venv.name + "-" + root.name)  # type: ignore[union-attr]
        if not any(venv.resolve().is_relative_to(d) for d in SHARED):
            return PyPySetup(None, f"the PyPy virtualenv {venv} must be under one of "
                                   f"{', '.join(map(str, SHARED))} to be seen inside {root}")
    python = venv / "bin" / "pypy3"
    if not python.exists():
        ok, out = _run([*launcher, pypy, "-m", "venv", str(venv)], log)
        if not ok:
            return PyPySetup(None, f"pypy3 -m venv failed: {_last_error(out)}")
    ok, out = _run([*launcher, str(python), "-c", "import twisted"], log)
    if not ok:
        ok, out = _run([*launcher, str(python), "-m", "pip", "install", "-q", "Twisted"], log)
        if not ok:
            return PyPySetup(None, f"Twisted does not install under PyPy: {_last_error(out)}")
    version = _version(launcher, str(python))
    if version is None:
        return PyPySetup(None, f"{python} does not run")
    blockers = _echogate_blockers(python, version, log, launcher)
    probe = subprocess.run(
        [*launcher, str(python), "-c", "import sys, twisted; print('PyPy %d.%d.%d (Python %s), Twisted %s' % "
         "(tuple(sys.pypy_version_info[:3]) + (sys.version.split()[0], twisted.__version__)))"],
        capture_output=True, text=True)
    where = f" (Debian root {root})" if launcher else ""
    return PyPySetup(venv / "bin", "", blockers, probe.stdout.strip() + where, launcher)


if __name__ == "__main__":
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "echogate-bench"
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else cache / "pypy-venv"
    target.parent.mkdir(parents=True, exist_ok=True)
    setup = prepare(target, target.parent / "pypy-setup.log",
                    Path(sys.argv[2]) if len(sys.argv) > 2 else cache / "pypy-root")
    if setup.bin_dir is None:
        print(f"PyPy skipped: {setup.reason}")
    else:
        print(f"{setup.version} in {setup.bin_dir}")
        print(f"echogate under PyPy: {setup.echogate_reason or 'runs'}")
