"""Build every Cython module of pypdk (and of the apps, benchmarks and Cython tests).

Knobs (environment):
  PYPDK_DEBUG=1     compile with PYPDK_DEBUG (debug checks that cost in benchmarks)
  PYPDK_ANNOTATE=1  write cython -a HTML next to each .pyx
  PYPDK_CFLAGS=...  extra C flags (default: -O3 -march=native is NOT used, for portable wheels)
  PYPDK_MODULES=glob[,glob]  build only the modules whose dotted name matches
"""
import fnmatch
import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import setup
from setuptools.extension import Extension

ROOT = Path(__file__).resolve().parent
INCLUDE = str(ROOT / "pypdk" / "include")
# pypdk and the apps (the `apps` package of the distribution: pypdk-vrouter is
# apps.vrouter.ctl.cli) are built for every install; the benchmark and Cython
# test kernels only in place (an editable install or build_ext --inplace), where
# pytest finds them.
_IN_PLACE = any(a in sys.argv for a in ("build_ext", "editable_wheel", "develop", "--inplace"))
SOURCE_TREES = ["pypdk", "apps"] + (["benchmarks", "tests/cy"] if _IN_PLACE else [])


def _module_name(pyx: Path) -> str:
    return ".".join(pyx.relative_to(ROOT).with_suffix("").parts)


def extensions():
    cflags = ["-O3", "-Wno-unused-function", "-Wno-unreachable-code", "-Wno-sign-compare"]
    cflags += os.environ.get("PYPDK_CFLAGS", "").split()
    macros = [("PYPDK_DEBUG", "1")] if os.environ.get("PYPDK_DEBUG") else []
    only = [g for g in os.environ.get("PYPDK_MODULES", "").split(",") if g]
    exts = []
    for tree in SOURCE_TREES:
        for pyx in sorted((ROOT / tree).rglob("*.pyx")):
            name = _module_name(pyx)
            if only and not any(fnmatch.fnmatch(name, g) for g in only):
                continue
            exts.append(Extension(
                name, [str(pyx.relative_to(ROOT))],
                include_dirs=[INCLUDE],
                extra_compile_args=cflags,
                define_macros=macros,
                libraries=["pthread"],
            ))
    return exts


setup(
    ext_modules=cythonize(
        extensions(),
        # pypdk/include holds the headers and the .pxd declaring each one
        # (`from pd_compiler cimport pd_likely`: "include" is a Cython keyword,
        # so that directory cannot appear in a dotted cimport).
        include_path=[str(ROOT), INCLUDE],
        annotate=bool(os.environ.get("PYPDK_ANNOTATE")),
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        nthreads=int(os.environ.get("PYPDK_JOBS", "2")),
    ),
)
