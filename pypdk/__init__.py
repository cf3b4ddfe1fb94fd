"""pypdk: DPDK's way of processing packets, brought to Python.

Layers (bottom up): C helpers in `pypdk/include`, Cython declarations (`.pxd`),
the nogil hot path (`.pyx`), this thin Python API, and the `pypdk-run` runner.
"""
from pypdk.errors import PypdkError, UsageError, ResourceError, StateError

__version__ = "0.1.0"
__all__ = ["PypdkError", "UsageError", "ResourceError", "StateError", "__version__"]
