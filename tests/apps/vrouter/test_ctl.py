"""The control socket (apps/vrouter/ctl/server.py) against a fake VRouter.

What the server promises: mode 0600, newline-delimited JSON in and out,
only whitelisted operations reach the target, an invalid request changes
nothing and answers with one line, the socket is removed at close and a
stale one is replaced.
"""
import json
import os
import socket
import stat
import threading

import pytest

from apps.vrouter.ctl.server import CtlClient, CtlServer, Dispatcher
from pypdk.errors import UsageError


class FakeVRouter:
    """Keeps routes in a dict; validates like the real one (UsageError, no change)."""

    def __init__(self):
        self.routes = {}
        self.calls = []

    def route_add(self, vrf, prefix, nh, label=None):
        self.calls.append("route_add")
        if not isinstance(vrf, int) or vrf < 0:
            raise UsageError(f"vrf {vrf!r} is not a vrf number", "give 0..1023")
        if "/" not in str(prefix):
            raise UsageError(f"prefix {prefix!r} has no length", "write it as 10.1.1.0/24")
        self.routes[(vrf, prefix)] = {"nh": nh, "label": label}

    def route_del(self, vrf, prefix):
        if (vrf, prefix) not in self.routes:
            raise UsageError(f"no route {prefix} in vrf {vrf}", "rt --dump VRF lists them")
        del self.routes[(vrf, prefix)]

    def route_dump(self, vrf, family="inet"):
        return [{"prefix": p, **v} for (f, p), v in sorted(self.routes.items()) if f == vrf]

    def vif_list(self):
        raise RuntimeError("boom")

    def secret(self):                    # not whitelisted: unreachable
        self.calls.append("secret")
        return "leaked"


@pytest.fixture
def server(tmp_path):
    vr = FakeVRouter()
    path = str(tmp_path / "ctl.sock")
    srv = CtlServer(vr, path, hello={"name": "test"}).start()
    try:
        yield vr, srv, path
    finally:
        srv.close()


def raw(path, *lines):
    """Send raw request lines on one connection; the reply lines, decoded."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"".join(line + b"\n" for line in lines))
        buf = b""
        while buf.count(b"\n") < len(lines):
            chunk = s.recv(65536)
            assert chunk, "server closed early"
            buf += chunk
    return [json.loads(x) for x in buf.splitlines()]


def test_socket_is_root_only_and_removed_at_close(tmp_path):
    path = str(tmp_path / "ctl.sock")
    srv = CtlServer(FakeVRouter(), path).start()
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    srv.close()
    assert not os.path.exists(path)
    srv.close()                          # idempotent


def test_requests_and_replies_are_json_lines_in_order(server):
    vr, _, path = server
    replies = raw(path,
                  b'{"op": "route_add", "args": {"vrf": 1, "prefix": "10.1.1.3/32", "nh": 12}}',
                  b'{"op": "route_dump", "args": {"vrf": 1}, "id": 7}',
                  b'{"op": "hello"}')
    assert replies[0] == {"ok": True, "result": None}
    assert replies[1] == {"ok": True, "id": 7, "result": [{"prefix": "10.1.1.3/32", "nh": 12, "label": None}]}
    assert replies[2]["ok"] and replies[2]["result"]["name"] == "test"
    assert replies[2]["result"]["pid"] == os.getpid()


@pytest.mark.parametrize("line, reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"args": {}}', 'no "op"'),
    (b'{"op": "secret"}', "unknown operation 'secret'"),
    (b'{"op": "__init__"}', "unknown operation"),
    (b'{"op": "route_add", "args": [1]}', "must be a JSON object"),
    (b'{"op": "route_add", "args": {"vrf": 1, "prefix": "10.0.0.0/8"}}', "needs argument 'nh'"),
    (b'{"op": "route_add", "args": {"vrf": 1, "prefix": "1.0.0.0/8", "nh": 1, "x": 1}}',
     "takes no argument 'x'"),
    (b'{"op": "route_add", "args": {"vrf": -1, "prefix": "10.0.0.0/8", "nh": 1}}', "not a vrf number"),
    (b'{"op": "route_add", "args": {"vrf": 1, "prefix": "10.0.0.0", "nh": 1}}', "has no length"),
    (b'{"op": "route_add", "wat": 1}', "unknown request field 'wat'"),
])
def test_invalid_request_changes_nothing_and_says_why(server, line, reason):
    vr, _, path = server
    (rep,) = raw(path, line)
    assert rep["ok"] is False
    assert reason in rep["error"]
    assert "\n" not in rep["error"]
    assert vr.routes == {}
    assert "secret" not in vr.calls


def test_a_bug_in_an_operation_is_an_error_reply_and_the_server_lives_on(server):
    _, _, path = server
    first, second = raw(path, b'{"op": "vif_list"}', b'{"op": "hello"}')
    assert first["ok"] is False and "internal error in vif_list" in first["error"]
    assert second["ok"] is True


def test_ops_lists_only_whitelisted_operations_the_target_has(server):
    _, _, path = server
    (rep,) = raw(path, b'{"op": "ops"}')
    assert rep["result"] == ["route_add", "route_del", "route_dump", "vif_list"]


def test_client_call_and_error(server):
    vr, _, path = server
    with CtlClient(path) as c:
        assert c.call("route_add", vrf=2, prefix="10.2.0.0/16", nh=3, label=20) is None
        assert c.call("route_dump", vrf=2)[0]["label"] == 20
        with pytest.raises(UsageError, match="no route 10.9.0.0/16 in vrf 2"):
            c.call("route_del", vrf=2, prefix="10.9.0.0/16")
    assert vr.routes == {(2, "10.2.0.0/16"): {"nh": 3, "label": 20}}


def test_client_without_server_names_the_fix(tmp_path):
    with pytest.raises(UsageError, match="no vRouter control socket"):
        CtlClient(str(tmp_path / "none.sock")).connect()


def test_stale_socket_is_replaced_live_one_refused(tmp_path):
    path = str(tmp_path / "ctl.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()                        # a socket file nobody listens on
    with CtlServer(FakeVRouter(), path):
        with pytest.raises(UsageError, match="another vRouter serves"):
            CtlServer(FakeVRouter(), path).start()
        with CtlClient(path) as c:       # the first server is untouched
            assert c.call("hello")["protocol"] == 1
    assert not os.path.exists(path)


def test_concurrent_clients_are_serialised(server):
    vr, srv, path = server
    errors = []

    def work(k):
        try:
            with CtlClient(path) as c:
                for i in range(50):
                    c.call("route_add", vrf=k, prefix=f"10.{k}.{i}.0/24", nh=i)
        except Exception as e:            # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(vr.routes) == 200
    assert srv.dispatch.requests == 200


def test_dispatcher_results_are_json_friendly():
    class T:
        def vif_list(self):
            return ({1: (b"\x02\x00", {"a"})},)
    rep = Dispatcher(T()).handle({"op": "vif_list"})
    assert rep == {"ok": True, "result": [{"1": ["0200", ["a"]]}]}
    json.dumps(rep)
