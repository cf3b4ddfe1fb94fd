"""Fixtures for the net_vhost tests: a leak-checked pool, ports on fresh
sockets, and guests (pypdk.testing.vhost_frontend) that clean up after."""
import os

import pytest

import pypdk.pmd
from pypdk.testing.vhost_frontend import Frontend, GuestMemory, VirtioNet


@pytest.fixture
def pool(make_pool):
    """The plugin's leak-checked pool (4096 mbufs), without a per-lcore cache."""
    return make_pool(cache_size=0)


@pytest.fixture
def sock_dir(tmp_path):
    return tmp_path


@pytest.fixture
def vhost(pool, sock_dir):
    """open(n=0, **keys): a started net_vhost port on sock_dir/vhost<n>.sock."""
    def make(n=0, queues=1, setup=True, **keys):
        path = str(sock_dir / f"vhost{n}.sock")
        port = pypdk.pmd.open(f"net_vhost{n}", iface=path, queues=str(queues),
                              **{k: str(v) for k, v in keys.items()})
        if setup:
            port.setup(pool, nb_rxq=queues, nb_txq=queues, nb_rx_desc=256, nb_tx_desc=256)
            port.start()
        return port
    return make


@pytest.fixture
def guest():
    """guest(path, **VirtioNet kwargs): a connected, set-up virtio-net guest."""
    made = []

    def make(path, mem=None, **kw):
        mem = mem or GuestMemory()
        fe = Frontend.connect(path)
        g = VirtioNet(fe, mem, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.fe.close()
        g.close()
        g.mem.close()


@pytest.fixture
def frontend():
    """frontend(path) -> (Frontend, GuestMemory), closed after the test."""
    made = []

    def make(path, mem=None):
        mem = mem or GuestMemory()
        fe = Frontend.connect(path)
        made.append((fe, mem))
        return fe, mem
    yield make
    for fe, mem in made:
        fe.close()
        mem.close()
