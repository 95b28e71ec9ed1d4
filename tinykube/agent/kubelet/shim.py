"""Per-container supervisor (like containerd's shim), stdlib only, run by path.

``python shim.py CONFIG.json`` — started by the runtime in its own session so it
outlives the agent. It starts the container command (a bwrap invocation whose
``{INFO_FD}`` argument is replaced by a pipe for ``--info-fd``), writes every
output line to the log file as ``<RFC3339Nano> <stdout|stderr> F <line>``, keeps
the container's stdin as a pipe fed from ``attach.sock`` (unix socket), and on
exit writes ``exit.json`` (exitCode, finishedAt, reason, message) atomically.

Files in the state directory: ``shim.json`` (shim pid, container pid = the
command's host pid, startedAt), ``exit.json``, ``attach.sock``.

attach.sock protocol: bytes the client sends go to the container's stdin (when
the container has ``stdin: true``); the shim sends output frames
``<1 byte stream: 1 stdout, 2 stderr><4 bytes big-endian length><data>``.
With ``stdinOnce`` the container's stdin is closed when the first client's
input ends."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time


def rfc3339nano(t=None) -> str:
    t = time.time() if t is None else t
    sec = int(t)
    ns = int(round((t - sec) * 1e9))
    if ns >= 1_000_000_000:
        sec, ns = sec + 1, ns - 1_000_000_000
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    frac = f"{ns:09d}".rstrip("0")
    return base + (("." + frac) if frac else "") + "Z"


def write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Shim:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.state = cfg["state_dir"]
        self.log = open(cfg["log"], "ab", buffering=0)
        self.lock = threading.Lock()
        self.clients: list[socket.socket] = []
        self.stdin_closed = False
        self.first_client_done = False
        self.start_errors: list[str] = []
        # stdinOnce (kubectl run -i): output written before the first attach client connects
        # is replayed to it, else a command that prints and exits at once loses its output
        self.pending: list[bytes] | None = [] if cfg.get("stdin_once") else None
        self.pending_size = 0
        self.srv: socket.socket | None = None
        # the start gate (see run()): write end of a pipe the container's command waits on
        self.gate_w: int | None = None

    def emit(self, stream: str, data: bytes) -> None:
        ts = rfc3339nano()
        with self.lock:
            for line in data.splitlines():
                self.log.write(f"{ts} {stream} F ".encode() + line + b"\n")
            frame = struct.pack(">BI", 1 if stream == "stdout" else 2, len(data)) + data
            if self.pending is not None and self.pending_size < (1 << 20):
                self.pending.append(frame)
                self.pending_size += len(frame)
            for c in list(self.clients):
                try:
                    c.sendall(frame)
                except OSError:
                    self.clients.remove(c)

    def reader(self, pipe, stream: str) -> None:
        buf = b""
        while True:
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                head, _, buf = buf.rpartition(b"\n")
                if stream == "stderr" and head.startswith(b"bwrap: "):
                    self.start_errors.append(head.decode(errors="replace"))
                self.emit(stream, head + b"\n")
        if buf:
            self.emit(stream, buf)

    def serve_attach(self, child) -> None:
        path = os.path.join(self.state, "attach.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.chdir(self.state)  # unix socket paths are limited to 108 bytes
        srv.bind("attach.sock")
        srv.listen(8)
        self.srv = srv
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:          # made non-blocking by close_attach: the container is gone
                return
            self.add_client(conn, child)

    def add_client(self, conn, child) -> None:
        with self.lock:
            if self.pending:
                try:
                    conn.sendall(b"".join(self.pending))
                except OSError:
                    pass
            self.pending = None
            self.clients.append(conn)
        self.open_gate()
        threading.Thread(target=self.client_input, args=(conn, child), daemon=True).start()

    def open_gate(self) -> None:
        with self.lock:
            fd, self.gate_w = self.gate_w, None
        if fd is not None:
            try:
                os.write(fd, b"\n")
            except OSError:
                pass
            os.close(fd)

    def client_input(self, conn, child) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if child.stdin is not None and not self.stdin_closed:
                try:
                    child.stdin.write(data)
                    child.stdin.flush()
                except OSError:
                    pass
        if self.cfg.get("stdin_once") and not self.first_client_done:
            self.first_client_done = True
            self.close_stdin(child)
        # the client's input ended (kubectl half-closes when its own stdin is at EOF): keep
        # sending it output; emit() drops the connection once the client is really gone

    def close_stdin(self, child) -> None:
        if child.stdin is not None and not self.stdin_closed:
            self.stdin_closed = True
            try:
                child.stdin.close()
            except OSError:
                pass

    def run(self) -> int:
        r, w = os.pipe()
        argv = [a.replace("{INFO_FD}", str(w)) for a in self.cfg["argv"]]
        fds = [w]
        gate_r = None
        if self.cfg.get("gate"):
            # A stdinOnce container (kubectl run -i) gets a start gate: the runtime wraps its
            # command in a shell that reads one line from {GATE_FD} first. The gate opens when
            # the first attach client connects (kubectl attaches right after it sees the pod
            # Running), or after "gate" seconds if nobody attaches. Without it a command that
            # finishes at once is already terminated when kubectl looks, and kubectl falls
            # back to logs with a "couldn't attach" warning.
            gate_r, self.gate_w = os.pipe()
            fds.append(gate_r)
            argv = [a.replace("{GATE_FD}", str(gate_r)) for a in argv]
        child = subprocess.Popen(
            argv, env=self.cfg["env"], pass_fds=fds,
            stdin=subprocess.PIPE if self.cfg.get("stdin") else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(w)
        if gate_r is not None:
            os.close(gate_r)
            timer = threading.Timer(float(self.cfg["gate"]), self.open_gate)
            timer.daemon = True
            timer.start()
        started = rfc3339nano()
        info = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            info += chunk
        os.close(r)
        pid = None
        try:
            pid = json.loads(info.decode() or "{}").get("child-pid")
        except ValueError:
            pass
        # bwrap reports the child before it has built the mount namespace: wait
        # until the child has exec'd the command so exec/nsenter see the final root
        if pid:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        if not fh.read().startswith(b"bwrap\0"):
                            break
                except OSError:
                    break
                time.sleep(0.005)
        write_json(os.path.join(self.state, "shim.json"),
                   {"shimPid": os.getpid(), "pid": pid, "runnerPid": child.pid,
                    "startedAt": started})

        def forward(signum, _frame):
            try:
                os.kill(pid or child.pid, signum)
            except OSError:
                pass
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        threads = [threading.Thread(target=self.reader, args=(child.stdout, "stdout")),
                   threading.Thread(target=self.reader, args=(child.stderr, "stderr"))]
        for t in threads:
            t.start()
        threading.Thread(target=self.serve_attach, args=(child,), daemon=True).start()
        rc = child.wait()
        for t in threads:
            t.join(timeout=5)
        if rc < 0:
            rc = 128 - rc
        reason = "Completed" if rc == 0 else "Error"
        message = ""
        if pid is None or (self.start_errors and rc == 1 and any(
                "execvp" in e or "Can't" in e for e in self.start_errors)):
            reason, rc = "StartError", 128
            message = "; ".join(self.start_errors) or "failed to start the container"
        write_json(os.path.join(self.state, "exit.json"),
                   {"exitCode": rc, "finishedAt": rfc3339nano(), "startedAt": started,
                    "reason": reason, "message": message})
        self.close_attach(child)
        return 0

    def close_attach(self, child) -> None:
        """No new attach clients; those already queued on the socket get their output (the
        replay) before the shim exits, instead of a bare EOF."""
        try:
            os.unlink(os.path.join(self.state, "attach.sock"))
        except OSError:
            pass
        if self.srv is None:
            return
        self.srv.setblocking(False)
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            conn.setblocking(True)
            self.add_client(conn, child)


def main() -> None:
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    sys.exit(Shim(cfg).run())


if __name__ == "__main__":
    main()
