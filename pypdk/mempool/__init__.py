"""Mempools and packet mbufs in EAL memory (see mempool.pxd and mbuf.pxd)."""
from pypdk.mempool.mempool import Mempool
from pypdk.mempool.mbuf import PktMbufPool, Mbuf

__all__ = ["Mempool", "PktMbufPool", "Mbuf"]
