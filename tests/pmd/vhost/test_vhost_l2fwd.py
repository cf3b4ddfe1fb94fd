"""net_vhost under pypdk-run apps/l2fwd: four vhost ports polled by one
worker lcore. Guests' frames cross the forwarder byte-exact both ways; a
guest that breaks its ring stops its own port and the other pair keeps
forwarding; the final counters add up."""
import json
import os
import signal
import subprocess
import sys
import time

from pypdk.pmd.vhost import protocol as P
from pypdk.testing.vhost_frontend import Frontend, GuestMemory, VirtioNet, frame, DESC_F_NEXT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def collect(g, want, timeout=10.0):
    got, end = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        got += [body for _, body in g.recv()]
        time.sleep(0.01)
    return got


def test_l2fwd_forwards_between_guests_and_a_broken_guest_stops_only_its_port(tmp_path):
    socks = [str(tmp_path / f"vm{i}.sock") for i in range(4)]
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--lcores", "0-1", "--no-huge",
           *sum((["--vdev", f"net_vhost{i},iface={s}"] for i, s in enumerate(socks)), []),
           "--duration", "60", "--stats-json", str(stats), "--", "--no-mac-updating"]
    run = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    guests = []
    try:
        guests = [VirtioNet(Frontend.connect(s, timeout=30), GuestMemory()) for s in socks]
        a, b, c, d = guests
        for g in guests:
            g.give_rx(200)
        first = [frame(60 + 29 * i, i) for i in range(50)]
        for f in first:
            a.send(f)
        assert collect(b, 50) == first
        back = [frame(1514, i) for i in range(20)]
        for f in back:
            b.send(f)
        assert collect(a, 20) == back
        # Guest c breaks its transmitq (a descriptor that chains to itself).
        vq = c.txq()
        gpa = c.mem.alloc(64)
        vq.set_desc(0, gpa, 64, DESC_F_NEXT, 0)
        vq.post(0)
        assert c.fe.closed_by_peer(timeout=10)
        # The pair on the same lcore goes on.
        later = [frame(128, 100 + i) for i in range(50)]
        for f in later:
            a.send(f)
        assert collect(b, 50) == later
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for g in guests:
            g.fe.close()
            g.close()
            g.mem.close()
    doc = json.loads(stats.read_text())
    p0, p1, p2 = (doc["ports"][str(i)] for i in range(3))
    assert p0["ipackets"] == 100 and p1["opackets"] == 100
    assert p1["ipackets"] == 20 and p0["opackets"] == 20
    assert p2["xstats"]["stop_chain_too_long"] == 1
    assert all(os.path.exists(s) is False for s in socks)      # sockets removed at exit


def test_memory_table_replaced_under_traffic(tmp_path):
    """The frontend sends SET_MEM_TABLE again and again while the lcore
    forwards (as QEMU does on memory hotplug): rings move to the new mapping
    under their locks, so no frame is damaged or reordered. A burst that
    meets a held lock sends nothing (DPDK's trylock semantics: an lcore never
    waits for the control thread), and l2fwd drops and counts what its tx
    refused: every frame is delivered or counted."""
    socks = [str(tmp_path / f"vm{i}.sock") for i in range(2)]
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--lcores", "0-1", "--no-huge",
           *sum((["--vdev", f"net_vhost{i},iface={s}"] for i, s in enumerate(socks)), []),
           "--duration", "60", "--stats-json", str(stats), "--", "--no-mac-updating"]
    run = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    guests = []
    try:
        guests = [VirtioNet(Frontend.connect(s, timeout=30), GuestMemory()) for s in socks]
        a, b = guests
        b.give_rx(250)
        sent, got = [], []
        for k in range(20):
            batch = [frame(200 + k, 10 * k + i) for i in range(10)]
            for f in batch:
                a.send(f)
            sent += batch
            for g in guests:
                assert g.fe.set_mem_table(g.mem) == 0      # acked: mapped and rings moved
            got += collect(b, len(sent) - len(got), timeout=0.05)
        end = time.monotonic() + 2
        while a.txq().used_idx() != len(sent) and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.2)
        got += [body for _, body in b.recv()]
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for g in guests:
            g.fe.close()
            g.close()
            g.mem.close()
    it = iter(sent)
    assert all(any(f == s for s in it) for f in got), "a frame damaged or out of order"
    doc = json.loads(stats.read_text())
    assert doc["ports"]["0"]["ipackets"] == len(sent)
    assert doc["ports"]["1"]["opackets"] == len(got)
    assert doc["ports"]["1"]["dropped"] == len(sent) - len(got)
    assert len(got) >= len(sent) // 2
