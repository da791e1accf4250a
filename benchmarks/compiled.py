"""A copy of Shelf with the gateway's request path compiled, as the production image runs it.

Builds the wheel with the compiling hook on (``hatch_build.py``) and unpacks it into a folder:
with that folder first on ``PYTHONPATH`` the compiled modules are the ones imported, while the
dependencies still come from the current environment. Needs a C compiler and the Python
headers; pip fetches Cython into the build's own environment. A folder already built from the
same sources is reused.

    python benchmarks/compiled.py [FOLDER]    # prints the folder to put on PYTHONPATH
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "shelf-compiled"


def sources_digest() -> str:
    """Of every file the wheel is built from: a changed module or declaration (``.pxd``) means a
    new build."""
    digest = hashlib.sha256()
    pyproject = ROOT / "pyproject.toml"
    wheel = tomllib.loads(pyproject.read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    files = [pyproject, ROOT / "hatch_build.py"]
    for package in wheel["packages"]:
        files += sorted(p for p in (ROOT / package).rglob("*") if p.suffix in (".py", ".pxd"))
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compiled_tree(cache: Path = DEFAULT_CACHE) -> Path:
    """The folder holding the compiled build of this checkout, built if not there yet."""
    tree = cache / sources_digest()
    if (tree / "controller").is_dir():
        return tree
    with tempfile.TemporaryDirectory(prefix="shelf-wheel-") as wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, str(ROOT)],
            env={**os.environ, "HATCH_BUILD_HOOK_ENABLE_CUSTOM": "true"},
            check=True,
        )
        (wheel,) = Path(wheels).glob("shelf-*.whl")
        partial = cache / f".{tree.name}.partial"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
        partial.rename(tree)
    return tree


if __name__ == "__main__":
    print(compiled_tree(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
