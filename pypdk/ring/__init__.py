"""Lockless bounded rings of pointers (see ring.pxd for the protocol)."""
from pypdk.ring.ring import Ring

__all__ = ["Ring"]
