"""The production image's build: the gateway's request path compiled by Cython (hatch_build.py).

Builds that wheel as ``benchmarks/compiled.py`` does, checks that its compiled modules are the
ones imported and that the classes its ``.pxd`` files declare are extension types, and runs the
gateway's tests (and those of the compiled statistics modules) against it: the compiled code
must behave as its source does. Needs a C compiler; without one this skips, except under
CI=true (a failure)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e

# Imports every compiled module of the tree on PYTHONPATH; prints which file each came from.
PROBE = """
import importlib, json, pathlib, sys
tree = pathlib.Path(sys.argv[1])
names = [
    ".".join(path.relative_to(tree).parts[:-1] + (path.name.split(".")[0],))
    for path in sorted(tree.rglob("*.so"))
]
print(json.dumps({name: importlib.import_module(name).__file__ for name in names}))
"""

# The classes that ``.pxd`` files declare: extension types in the compiled build, which hold
# their attributes in fixed slots (no instance ``__dict__``) and, unlike a Python class, refuse
# a new attribute. Prints the names of those that are not.
EXTENSION_TYPES = """
import importlib, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
plain = []
for pxd in sorted((root / "controller").rglob("*.pxd")):
    module = importlib.import_module(".".join(pxd.relative_to(root).with_suffix("").parts))
    for name in re.findall(r"^cdef class (\\w+)", pxd.read_text(), re.M):
        cls = getattr(module, name)
        if "__dict__" in dir(cls) or cls.__dictoffset__ or not module.__file__.endswith(".so"):
            plain.append(f"{module.__name__}.{name}")
print(" ".join(plain))
"""


@pytest.mark.timeout(1200)
def test_the_gateway_tests_pass_on_the_compiled_build(tmp_path: Path) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if IN_CI:
            pytest.fail("CI=true but no C compiler to build the compiled gateway with")
        pytest.skip("no C compiler")
    built = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compiled.py"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tree = built.stdout.strip()
    # PYTHONSAFEPATH: no Python started below puts its working directory (this checkout, with
    # the interpreted modules) ahead of the compiled tree.
    env = {**os.environ, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, tree], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    imported = json.loads(probe.stdout)
    assert {
        "controller.gateway.server",
        "controller.gateway.app",
        "controller.gateway.upstream",
    } <= imported.keys()
    assert all(file.startswith(tree) and file.endswith(".so") for file in imported.values())
    declared = subprocess.run(
        [sys.executable, "-c", EXTENSION_TYPES, str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert declared.returncode == 0, declared.stderr[-3000:]
    assert declared.stdout.strip() == "", f"not extension types: {declared.stdout}"

    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=append",
            # The compiled modules are the gateway's own; the storage behind it is the
            # interpreted registry code either way, so one backend is enough here.
            "-k",
            "not postgresql",
            "tests/controller/gateway",
            "tests/controller/stats/test_sufficient.py",
            "tests/controller/stats/test_strata.py",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert tests.returncode == 0, tests.stdout[-5000:]
