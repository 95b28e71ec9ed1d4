"""The pod holder ("pause") process: owns the pod's UTS/IPC namespaces and sleeps.

Run by path with the host's python (stdlib only): ``python pause.py HOSTNAME PIDFILE``,
already inside the pod's network namespace and fresh UTS/IPC namespaces."""

import signal
import socket
import sys


def main() -> None:
    if len(sys.argv) > 1:
        socket.sethostname(sys.argv[1])
    if len(sys.argv) > 2:
        import os
        tmp = sys.argv[2] + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(tmp, sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
