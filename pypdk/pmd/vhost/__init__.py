"""net_vhost: vhost-user backend ports (a VM's virtio-net device served by pypdk).

`protocol` holds the wire format, `mem` the guest's memory table and its
translations, `virtq` the nogil split-virtqueue datapath, `port` the port
and its control thread. See port's docstring for the design and the keys.
"""
from pypdk.pmd.vhost.port import DRIVER, HELP, KEYS, Port

__all__ = ["DRIVER", "HELP", "KEYS", "Port"]
