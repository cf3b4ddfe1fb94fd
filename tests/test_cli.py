"""pypdk-run as a user meets it: a subprocess, its exit status, its stdout
and stderr. Errors are one stderr line naming the problem and the fix, exit
status 2, and leave nothing behind (no tap device, no hugepage file)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pypdk.testing import netns as nsh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = 60          # seconds: hang protection only, never a timing assertion


def pypdk_run(*args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pypdk.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=GUARD, **kw)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pypdk-run: ") and "; " in lines[0], lines[0]   # problem; fix
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


NULLS = ["--vdev", "net_null0", "--vdev", "net_null1"]


def test_lcores_not_on_this_machine():
    line = assert_one_line_error(pypdk_run("apps/l2fwd", "--lcores", "2-5", "--no-huge", *NULLS), "cpu 2")
    assert "--lcores 0-1" in line.split("; ", 1)[1]          # the fix names what exists


def test_unknown_app_dir():
    assert_one_line_error(pypdk_run("apps/nope", "-l", "0-1", "--no-huge"), "apps/nope", "app.py")


def test_dir_without_app_py(tmp_path):
    assert_one_line_error(pypdk_run(tmp_path, "-l", "0-1", "--no-huge"), "no app.py")


def test_bad_vdev_key():
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "--vdev", "net_null0,bogus=1",
                                    "--vdev", "net_null1"), "bogus", "size")


def test_unknown_driver():
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "--vdev", "net_nothing0"),
                          "net_nothing")


def test_missing_capture_file(tmp_path):
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge",
                                    "--vdev", f"net_pcap0,rx_pcap={tmp_path}/missing.pcap",
                                    "--vdev", "net_null1"), "missing.pcap")


def test_pci_devices_that_do_not_exist_or_are_misspelled_are_refused_clearly():
    # (this host has no PCI bus of its own: the vfio-pci drivers are tested in a guest)
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "-a", "0000:00:1f.7"),
                          "no PCI device 0000:00:1f.7", "pypdk-devbind --status")
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "-a", "00:4.0"),
                          "'00:4.0' is not a PCI address", "0000:00:04.0")


def test_unknown_option_points_to_help_and_the_app_separator():
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "--portmask", "3"),
                          "--portmask", "--help", "after --")


def test_bad_app_option():
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", *NULLS, "--", "-p", "xyz"),
                          "xyz", "-- --help")


def test_bad_numbers_and_memory():
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "--duration", "0"), "--duration")
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--main-lcore", "7", "--no-huge"), "main-lcore")
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "-m", "10000000", *NULLS), "hugepages")
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge", "--log-level", "loud"), "loud")


def test_help_lists_the_options():
    r = pypdk_run("--help")
    assert r.returncode == 0
    for opt in ("--lcores", "--main-lcore", "-m", "--socket-mem", "--huge-dir", "--no-huge", "--file-prefix",
                "--vdev", "--allow", "--log-level", "--duration", "--stats-period", "--stats-json"):
        assert opt in r.stdout
    r = pypdk_run("apps/l2fwd", "--", "--help")
    assert r.returncode == 0 and "--portmask" in r.stdout and "--no-mac-updating" in r.stdout


def test_error_after_ports_opened_closes_them():
    # The tap is created at open; l2fwd then refuses an odd number of ports.
    iface = nsh.unique_name("pdk")
    line = assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--no-huge",
                                           "--vdev", f"net_tap0,iface={iface}"), "even")
    assert "1 are enabled" in line
    assert not os.path.exists(f"/sys/class/net/{iface}"), "the tap device was left behind"


@pytest.fixture
def hugetlbfs(tmp_path):
    """A private hugetlbfs mount (2 MiB pages), unmounted after."""
    d = tmp_path / "huge"
    d.mkdir()
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_hugepage_files_are_removed_after_a_run_and_after_an_error(hugetlbfs, tmp_path):
    prefix = nsh.unique_name("cli")
    r = pypdk_run("apps/l2fwd", "-l", "0-1", "--huge-dir", hugetlbfs, "--file-prefix", prefix, *NULLS,
                  "--duration", "0.3")
    assert r.returncode == 0, r.stderr
    assert list(hugetlbfs.iterdir()) == []
    # -q 1 with one worker lcore: refused in setup, after the EAL and both ports are up.
    assert_one_line_error(pypdk_run("apps/l2fwd", "-l", "0-1", "--huge-dir", hugetlbfs, "--file-prefix",
                                    prefix, *NULLS, "--", "-q", "1"), "worker lcores")
    assert list(hugetlbfs.iterdir()) == []


def test_sigterm_stops_with_final_stats():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "-l", "0-1", "--no-huge", *NULLS,
                          "--stats-period", "0.2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()                 # a stats line: it is running
        assert first.startswith("pypdk-run stats"), first
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=GUARD)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "final stats" in out and "stopped by SIGTERM" in out
    assert "l2fwd port statistics" in out.split("final stats", 1)[1]
    assert err == ""


def test_sigint_stops_too():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "-l", "0-1", "--no-huge", *NULLS,
                          "--stats-period", "0.2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("pypdk-run stats")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=GUARD)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "stopped by SIGINT" in out, err


def _write_app(d, body):
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(body))
    return d


def test_app_outside_the_tree_loads_by_path_and_runs_python_workers(tmp_path):
    app = _write_app(tmp_path / "echo-app", """
        from pypdk.mempool import PktMbufPool
        from pypdk.worker import PyBurstWorker, make_plan
        from . import helper                      # relative imports work

        def setup(eal, ports, opts):
            pool = PktMbufPool("echo_pool", 1024)
            for p in ports:
                p.setup(pool, 1, 1)
                p.start()
            w = PyBurstWorker([(0, 0, 0, 0)], helper.echo, yield_after=8)
            return make_plan({eal.worker_lcores[0]: w}, app_stats=lambda: {"hello": helper.NAME})
        """)
    (app / "helper.py").write_text("NAME = 'echo'\n\ndef echo(mbufs):\n    return mbufs\n")
    out = tmp_path / "s.json"
    r = pypdk_run(app, "-l", "0-1", "--no-huge", "--vdev", "net_null0", "--duration", "0.3",
                  "--stats-json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["app"] == {"hello": "echo"}
    lc = doc["lcores"]["1"]
    assert lc["rx"] > 0 and lc["tx"] == lc["rx"] and lc["py_errors"] == 0
    assert doc["ports"]["0"]["ipackets"] == lc["rx"] == doc["ports"]["0"]["opackets"]


def test_app_options_without_options_function_are_refused(tmp_path):
    app = _write_app(tmp_path / "noopts", """
        def setup(eal, ports, opts):
            raise AssertionError("not reached")
        """)
    assert_one_line_error(pypdk_run(app, "-l", "0-1", "--no-huge", "--", "-x"), "takes no options")


def test_a_task_for_the_main_lcore_is_refused(tmp_path):
    app = _write_app(tmp_path / "mainlc", """
        from pypdk.app import Plan

        def setup(eal, ports, opts):
            return Plan(tasks={eal.main_lcore: lambda: 0}, stop=lambda: None)
        """)
    line = assert_one_line_error(pypdk_run(app, "-l", "0-1", "--no-huge"), "main lcore")
    assert "worker lcores (1)" in line


def test_a_failing_python_task_is_reported_after_the_final_stats(tmp_path):
    app = _write_app(tmp_path / "boom", """
        from pypdk.app import Plan

        def boom():
            raise RuntimeError("task blew up")

        def setup(eal, ports, opts):
            return Plan(tasks={1: boom}, stop=lambda: None)
        """)
    r = pypdk_run(app, "-l", "0-1", "--no-huge", "--duration", "5")
    assert r.returncode == 1
    assert "every lcore task returned" in r.stdout          # the run ended by itself
    assert "task blew up" in r.stderr
