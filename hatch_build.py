"""An optional build step: the gateway's request path compiled to C extensions by Cython.

Off by default, so an editable install and a plain wheel stay pure Python and an edited module is
always the one that runs. ``HATCH_BUILD_HOOK_ENABLE_CUSTOM=true pip wheel .`` turns it on (the
production image builds so, see the Dockerfile): the modules below are compiled unchanged, with
their annotations not read as C types, so they behave as the interpreted ones do; each ships
beside its source, and Python imports the extension first. Where a module has a ``.pxd`` beside
it (Cython's "augmenting" declarations), the classes it names become extension types: their
attributes, still Python objects, sit in fixed slots rather than a dict, and the methods it
declares ``cpdef`` are called directly from C. Compiled, the gateway spent 0.8 times the CPU
per proxied request of the interpreted one on one machine, and about as much on another, where
system calls cost more (docs/gateway.md, "Performance")."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# What the gateway runs for every proxied request (profiled: docs/gateway.md).
COMPILED_MODULES = (
    "controller/gateway/app.py",
    "controller/gateway/forced.py",
    "controller/gateway/inputs.py",
    "controller/gateway/loop_lag.py",
    "controller/gateway/metrics.py",
    "controller/gateway/outbox.py",
    "controller/gateway/paths.py",
    "controller/gateway/prediction.py",
    "controller/gateway/recorder.py",
    "controller/gateway/request_id.py",
    "controller/gateway/route.py",
    "controller/gateway/server.py",
    "controller/gateway/shadow.py",
    "controller/gateway/shadow_admission.py",
    "controller/gateway/split.py",
    "controller/gateway/upstream.py",
    "controller/stats/sufficient.py",
    "controller/strata.py",
)

# Plain Python semantics: an annotation such as ``float`` stays a hint, never a C double.
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}


class CompiledGatewayHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles :data:`COMPILED_MODULES` into the wheel (never into an editable install)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from Cython.Build import cythonize
        from setuptools import Distribution

        self._work = Path(tempfile.mkdtemp(prefix="shelf-compiled-"))
        root = Path(self.root)
        extensions = cythonize(
            [str(root / module) for module in COMPILED_MODULES],
            compiler_directives=DIRECTIVES,
            build_dir=str(self._work / "c"),
            nthreads=os.cpu_count() or 1,
            quiet=True,
        )
        build_ext = Distribution({"ext_modules": extensions}).get_command_obj("build_ext")
        build_ext.build_lib = str(self._work / "lib")
        build_ext.build_temp = str(self._work / "temp")
        build_ext.parallel = os.cpu_count() or 1
        build_ext.ensure_finalized()
        build_ext.run()
        for extension in extensions:
            relative = build_ext.get_ext_filename(extension.name)
            build_data["force_include"][str(self._work / "lib" / relative)] = relative
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
