"""net_af_xdp: AF_XDP sockets on a Linux interface, zero copy into mbufs.

`xsk` is the driver (burst functions, the Port), `prog` the XDP program
(built in, or a user's object) and its attachment, `elf` the loader that
parses a user's BPF ELF object, `bpf` the bpf() and netlink calls underneath. See xsk's docstring for the design and the keys.
"""
from pypdk.pmd.af_xdp.xsk import DRIVER, HELP, KEYS, Port

__all__ = ["DRIVER", "HELP", "KEYS", "Port"]
