"""The vRouter's control socket: newline-delimited JSON over a Unix socket.

One request per line, one reply per line, in order, on a connection that
stays open for as many requests as the client sends:

    {"op": "route_add", "args": {"vrf": 1, "prefix": "10.1.1.3/32", "nh": 12}}
    {"ok": true, "result": null}
    {"op": "nh_get", "args": {"id": 99}}
    {"ok": false, "error": "nh 99 does not exist; list them with nh --list"}

Why this shape: a line of JSON is what `socat`, a shell script or any
language can speak without a client library, and the replies are the same
JSON-friendly results the `VRouter` API returns, so `pypdk-vrouter --json`
prints them unchanged.

Invariants:
- Only the operations in `OPS` are reachable (an explicit whitelist of
  `VRouter` methods, plus `hello` and `ops` answered here). A request for
  anything else, or with arguments the operation does not take, is refused
  before the target is touched.
- Every operation validates and applies in one call of the target (the
  `VRouter` method, shared with the Python API); an invalid request raises
  `pypdk.errors.UsageError`, changes nothing and is answered with its one
  line. Requests are serialised by one lock, which the agent takes too, so
  the datapath tables have one writer at a time.
- The socket is created mode 0600 (root only) by binding a temporary name,
  changing its mode and renaming it into place: there is no moment at which
  another user could connect. It is removed by `close()`; a stale socket
  (nothing listening) left by a killed process is replaced, a live one is an
  error naming the other process's socket.

Threads: one acceptor thread and one thread per connection, all daemon
threads of the vRouter process; none of them runs on a forwarding lcore.
"""
from __future__ import annotations

import errno
import inspect
import json
import glob
import logging
import os
import socket
import stat
import threading
import time
from typing import Any

from pypdk.errors import PypdkError, UsageError

log = logging.getLogger("pypdk.vrouter.ctl")

SOCKET_DIR = "/run/pypdk"
SOCKET_NAME = "vrouter.sock"    # in the instance's runtime directory, /run/pypdk/<file-prefix>/
MAX_LINE = 1 << 20          # bytes in one request; a longer line closes the connection
PROTOCOL = 1

# The VRouter operations (apps/vrouter/vrouter.py) a client may call (TF's
# object words: vif, nh, rt...). Read-only ones are marked so tools can tell
# them apart.
OPS: dict[str, str] = {
    "vif_add": "w", "vif_del": "w", "vif_list": "r", "vif_get": "r",
    "nh_add": "w", "nh_del": "w", "nh_list": "r", "nh_get": "r",
    "route_add": "w", "route_del": "w", "route_dump": "r",
    "bridge_add": "w", "bridge_del": "w",
    "mpls_add": "w", "mpls_del": "w", "mpls_dump": "r",
    "vxlan_add": "w", "vxlan_del": "w", "vxlan_dump": "r",
    "bridge_dump": "r",
    "neighbor_add": "w", "neighbor_del": "w", "neighbor_list": "r",
    "policy_add": "w", "policy_clear": "w", "policy_list": "r",
    "fip_add": "w", "fip_del": "w",
    "flow_list": "r", "dropstats": "r", "vrfstats": "r",
    "rxq_show": "r", "rxq_rebalance": "w",
}


def default_path(name: str) -> str:
    """The socket of the vRouter called `name`: /run/pypdk/vrouter-<name>.sock."""
    return os.path.join(SOCKET_DIR, f"vrouter-{name}.sock")


def prefix_path(file_prefix: str) -> str:
    """The socket of the vRouter started with --file-prefix P and no --name:
    /run/pypdk/<P>/vrouter.sock (in the EAL's runtime directory)."""
    return os.path.join(SOCKET_DIR, file_prefix, SOCKET_NAME)


def running_sockets() -> dict[str, str]:
    """{label: path} of the control sockets under /run/pypdk: `--file-prefix P`
    ones labelled P, `--name N` ones labelled name=N."""
    found = {}
    for f in sorted(glob.glob(os.path.join(SOCKET_DIR, "*", SOCKET_NAME))):
        found[os.path.basename(os.path.dirname(f))] = f
    for f in sorted(glob.glob(os.path.join(SOCKET_DIR, "vrouter-*.sock"))):
        found["name=" + os.path.basename(f)[len("vrouter-"):-len(".sock")]] = f
    return found


def _jsonable(x: Any) -> Any:
    """Results as JSON: tuples to lists, dict keys to strings, bytes to hex."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


class Dispatcher:
    """Turns one decoded request into one reply dict (no I/O, unit-testable).

    Args:
        target: the object whose methods implement the operations (a
            `VRouter`); an operation missing on it is refused as unknown.
        lock: serialises the operations with the other writers (the agent).
        ops: the whitelist (default `OPS`).
        hello: extra facts returned by the `hello` operation (name, pid...).
    """

    def __init__(self, target, lock: threading.RLock | None = None, ops: dict | None = None,
                 hello: dict | None = None):
        self.target = target
        self.lock = lock or threading.RLock()
        self.ops = dict(OPS if ops is None else ops)
        self.hello = dict(hello or {})
        self.requests = 0
        self.errors = 0

    def available(self) -> list[str]:
        """The whitelisted operations the target implements, sorted."""
        return sorted(op for op in self.ops if callable(getattr(self.target, op, None)))

    def handle(self, req: Any) -> dict:
        """One request (decoded JSON) -> {"ok": True, "result": ...} or {"ok": False, "error": ...}."""
        self.requests += 1
        try:
            return {"ok": True, "result": self._call(req)}
        except PypdkError as e:
            self.errors += 1
            return {"ok": False, "error": e.line()}
        except Exception as e:            # a bug in an operation: say so, keep serving
            self.errors += 1
            log.exception("control operation failed")
            return {"ok": False, "error": f"internal error in {self._op_name(req)}: "
                                          f"{type(e).__name__}: {e}"}

    @staticmethod
    def _op_name(req) -> str:
        return str(req.get("op")) if isinstance(req, dict) else "request"

    def _call(self, req: Any):
        if not isinstance(req, dict):
            raise UsageError("a request must be a JSON object", 'send {"op": NAME, "args": {...}}')
        unknown = set(req) - {"op", "args", "id"}
        if unknown:
            raise UsageError(f"unknown request field {sorted(unknown)[0]!r}",
                             'a request has "op" and "args" (and an optional "id")')
        op = req.get("op")
        args = req.get("args", {})
        if args is None:
            args = {}
        if not isinstance(op, str) or not op:
            raise UsageError('the request has no "op"', 'send {"op": NAME, "args": {...}}; "ops" lists them')
        if not isinstance(args, dict):
            raise UsageError(f'"args" of {op} must be a JSON object', "name each argument: {\"id\": 3}")
        if op == "hello":
            return {"protocol": PROTOCOL, "pid": os.getpid(), **self.hello}
        if op == "ops":
            return self.available()
        fn = getattr(self.target, op, None) if op in self.ops else None
        if not callable(fn):
            raise UsageError(f"unknown operation {op!r}", "send {\"op\": \"ops\"} for the list")
        self._check_args(op, fn, args)
        with self.lock:
            return _jsonable(fn(**args))

    @staticmethod
    def _check_args(op: str, fn, args: dict) -> None:
        """Refuse unknown or missing arguments here, with the operation's own names."""
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        params = sig.parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for a in args:
            if a not in names:
                raise UsageError(f"{op} takes no argument {a!r}",
                                 f"its arguments are: {', '.join(names) or 'none'}")
        missing = [n for n, p in params.items()
                   if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   and n not in args]
        if missing:
            raise UsageError(f"{op} needs argument {missing[0]!r}",
                             f"its arguments are: {', '.join(names)}")


class CtlServer:
    """The control socket of one vRouter process (see the module doc).

        srv = CtlServer(vrouter, "/run/pypdk/vrouter-node1.sock", lock=lock)
        srv.start()
        ...
        srv.close()          # also on error paths: removes the socket

    Raises (start):
        UsageError: another live process serves this path, or its directory
            cannot be made.
    """

    def __init__(self, target, path: str, lock: threading.RLock | None = None,
                 ops: dict | None = None, hello: dict | None = None):
        self.path = path
        self.dispatch = Dispatcher(target, lock, ops, hello)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = False
        self._ino = None

    # -- life cycle
    def start(self) -> "CtlServer":
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
        except OSError as e:
            raise UsageError(f"control socket directory {d}: {e.strerror}",
                             "run as root or give --ctl-socket a writable path") from None
        self._replace_stale()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            s.bind(tmp)
            os.chmod(tmp, 0o600)           # before anyone can know the name
            os.rename(tmp, self.path)
            self._ino = os.stat(self.path).st_ino
            s.listen(16)
        except OSError as e:
            s.close()
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise UsageError(f"control socket {self.path}: {e.strerror}",
                             "give --ctl-socket a path in a writable directory") from None
        self._sock = s
        self._thread = threading.Thread(target=self._accept_loop, name="vr-ctl", daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)
        return self

    def _replace_stale(self) -> None:
        if not os.path.lexists(self.path):
            return
        if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
            raise UsageError(f"control socket path {self.path} exists and is not a socket",
                             "remove it or give --ctl-socket another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError as e:
            if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
                os.unlink(self.path)     # left by a process that died: take its place
                return
            raise UsageError(f"control socket {self.path}: {e.strerror}",
                             "give --ctl-socket another path") from None
        finally:
            probe.close()
        raise UsageError(f"another vRouter serves the control socket {self.path}",
                         "stop it, or give this one another --name or --ctl-socket")

    def close(self) -> None:
        """Stop serving, close every connection, remove the socket file. Idempotent."""
        self._closing = True
        s, self._sock = self._sock, None
        if s is not None:
            try:
                # Remove our socket only if it is still ours (not a successor's).
                if os.path.lexists(self.path) and os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # -- serving
    def _accept_loop(self) -> None:
        s = self._sock
        while not self._closing and s is not None:
            try:
                conn, _ = s.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.05)
                continue
            with self._conns_lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="vr-ctl-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            with conn:
                while not self._closing:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        if len(buf) > MAX_LINE:
                            self._send(conn, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                            return
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                        continue
                    line, buf = buf[:nl], buf[nl + 1:]
                    if not line.strip():
                        continue
                    self._send(conn, self.handle_line(line))
        except OSError:
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(conn)

    def handle_line(self, line: bytes) -> dict:
        """One request line -> its reply (a dict), the request's "id" echoed back."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"the request is not JSON: {e}"}
        rep = self.dispatch.handle(req)
        if isinstance(req, dict) and "id" in req:
            rep["id"] = req["id"]
        return rep

    @staticmethod
    def _send(conn: socket.socket, rep: dict) -> None:
        conn.sendall(json.dumps(rep, separators=(",", ":")).encode() + b"\n")


class CtlClient:
    """A connection to a vRouter's control socket (what `pypdk-vrouter` uses).

        with CtlClient("/run/pypdk/vrouter-node1.sock") as c:
            c.call("route_add", vrf=1, prefix="10.1.1.3/32", nh=12)

    Raises:
        UsageError: no socket at the path, permission denied, or a request
            the vRouter refused (its reason as the problem).
    """

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> "CtlClient":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except FileNotFoundError:
            s.close()
            raise UsageError(f"no vRouter control socket at {self.path}",
                             "start the vRouter (pypdk-run apps/vrouter ...) or give --socket PATH") from None
        except PermissionError:
            s.close()
            raise UsageError(f"control socket {self.path}: permission denied", "run as root") from None
        except ConnectionRefusedError:
            s.close()
            raise UsageError(f"nothing listens on {self.path} (a stale socket)",
                             "start the vRouter or give --socket PATH") from None
        self._sock = s
        return self

    def request(self, op: str, args: dict | None = None) -> dict:
        """Send one request; the raw reply dict ({"ok": ..., ...})."""
        if self._sock is None:
            self.connect()
        msg = {"op": op, "args": args or {}}
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise UsageError(f"the vRouter did not answer {op} within {self.timeout:g} s",
                                 "check it is running (pypdk-vrouter vif --list)") from None
            if not chunk:
                raise UsageError(f"the vRouter closed the control connection during {op}",
                                 "check it is still running")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, op: str, **args):
        """Send one request; its result, or UsageError with the vRouter's reason."""
        rep = self.request(op, args)
        if not rep.get("ok"):
            raise UsageError(str(rep.get("error", "request refused")))
        return rep.get("result")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()
        return False
