"""The quiescent-state free waits for every forwarding lcore (three of them here).

quiescence_run.py, in its own process (forwarding lcores 1-3 sharing cpu 1):
the test's thread holds the vRouter's flow lock and sends a packet that needs
a new flow, so the lcore polling that vif waits inside its burst; a route
whose tbl8 group the delete retires is then removed. While that lcore is
held, the delete is seen at once but its free waits and gives up (the group
stays pending: nothing a reader may still hold is freed), the other two
lcores keep forwarding, and `synchronize` gives up again; once the lock is
released the packet goes out, `synchronize` returns and the group is free.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_synchronize_waits_for_every_forwarding_lcore():
    r = subprocess.run([sys.executable, "-m", "tests.apps.vrouter.quiescence_run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(out["lcores_of"].values()) == [1, 2, 3]          # a vif per lcore
    # The delete is published at once (no lookup finds the route) and then waits for
    # every lcore; with one held it gives up after its 5 s, freeing nothing.
    assert "quiescent point" in out["route_del_while_held"]
    assert out["route_after_delete"] is None
    assert out["pending_after_delete"] == 1
    assert out["tx4_while_held"] == 8                              # the others forwarded meanwhile
    assert "quiescent point" in out["synchronize_while_held"]
    assert out["pending_while_held"] == 1                          # not freed under a reader
    assert out["pending_after_release"] == 0
    assert out["tx4"] == 9 and out["flows"] == 2                   # the held packet went out, one pair
    assert sum(out["lcore_rx"].values()) == 9
    assert out["pool_in_use"] == 0
