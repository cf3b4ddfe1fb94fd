"""Drive a running vRouter through its control socket from one process (tests).

    python3 -m tests.apps.vrouter.ctl_driver SOCKET PLAN.json     # from the source tree

PLAN is a JSON list of steps, run in order on one connection:
  ["op", NAME, {ARGS}]             a control operation; its result is printed
  ["wait_tx", VIF, N, SECONDS]     until vif VIF sent N packets (else exit 1)
  ["sleep", SECONDS]
  ["repeat", K, [STEPS]]           the steps K times
The results of the "op" steps go to stdout as one JSON list. One Python
start-up for a whole test matters in a TCG guest, where each costs seconds;
it imports only the socket client (no compiled module).
"""
import json
import os
import sys
import time

from apps.vrouter.ctl.server import CtlClient


def run(c, steps, out):
    for step in steps:
        kind = step[0]
        if kind == "op":
            out.append(c.call(step[1], **step[2]))
        elif kind == "wait_tx":
            _, vif, n, timeout = step
            end = time.monotonic() + timeout
            while c.call("vif_get", id=vif)["stats"]["tx_packets"] < n:
                if time.monotonic() > end:
                    sys.exit(f"vif {vif} sent {c.call('vif_get', id=vif)['stats']['tx_packets']} < {n} "
                             f"in {timeout} s")
                time.sleep(0.2)
        elif kind == "sleep":
            time.sleep(step[1])
        elif kind == "repeat":
            for _ in range(step[1]):
                run(c, step[2], out)
        else:
            sys.exit(f"unknown step {kind!r}")


def main():
    sock, plan = sys.argv[1], json.load(open(sys.argv[2]))
    end = time.monotonic() + float(os.environ.get("CTL_DRIVER_WAIT", "600"))
    while not os.path.exists(sock):
        if time.monotonic() > end:
            sys.exit(f"no control socket {sock}")
        time.sleep(0.2)
    c = CtlClient(sock, timeout=120).connect()
    out = []
    run(c, plan, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
