"""The C helpers of pypdk (``pd_*.h``) and their Cython declarations.

Each header is declared once, in the ``.pxd`` beside it. This directory is on
both the C and the Cython include path of every pypdk extension, and Cython
modules cimport from it by the header's name::

    from pd_compiler cimport pd_likely, pd_unlikely
    from pd_atomic cimport pd_load_acquire_u32, pd_store_release_u32

(``include`` is a Cython keyword, so ``pypdk.include`` cannot be spelled in
a dotted cimport.) This package holds no Python code: it exists so that the
headers and declarations are installed with pypdk. ``get_include()`` names
the directory for an app's own build.
"""
import os


def get_include() -> str:
    """The directory of the pypdk C headers and their .pxd declarations."""
    return os.path.dirname(os.path.abspath(__file__))
