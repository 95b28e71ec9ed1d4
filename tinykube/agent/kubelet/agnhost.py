"""A Python imitation of the Kubernetes e2e test image ``agnhost`` (stdlib only).

Run inside a pod sandbox by path: ``python agnhost.py <subcommand> [flags]``.
Subcommands: serve-hostname, netexec, pause, porter, dns-suffix, dns-server-list,
etc-hosts, connect, and ``http-echo`` (hashicorp/http-echo: -text, -listen)."""

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_flags(args):
    flags, pos = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1:
            name = a.lstrip("-")
            if "=" in name:
                k, v = name.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                k, v = name, args[i + 1]
                i += 1
            else:
                k, v = name, "true"
            flags[k] = v
        else:
            pos.append(a)
        i += 1
    return flags, pos


def flag_bool(flags, name, default):
    v = flags.get(name)
    if v is None:
        return default
    return v.lower() in ("true", "1", "t", "yes")


def log(msg):
    ts = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S")
    print(f"{ts} {msg}", flush=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def send_text(self, code, body, ctype="text/plain; charset=utf-8", close=False,
                  extra=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version_string(self):
        return ""

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())


def serve_http(port, handler_cls):
    srv = Server(("0.0.0.0", port), handler_cls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def hostname():
    return socket.gethostname()


# ---------------------------------------------------------------- serve-hostname

def serve_hostname(args):
    flags, _ = parse_flags(args)
    port = int(flags.get("port", "9376"))
    use_tcp = flag_bool(flags, "tcp", False)
    use_udp = flag_bool(flags, "udp", False)
    use_http = flag_bool(flags, "http", True)
    close = flag_bool(flags, "close", False)
    if use_http and (use_tcp or use_udp):
        print("Can't use --http with --tcp or --udp", file=sys.stderr)
        sys.exit(1)
    name = hostname()
    if use_tcp:
        def tcp():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(128)
            while True:
                c, _ = s.accept()
                try:
                    c.sendall(name.encode())
                finally:
                    c.close()
        threading.Thread(target=tcp, daemon=True).start()
    if use_udp:
        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            while True:
                _, addr = s.recvfrom(2048)
                s.sendto(name.encode(), addr)
        threading.Thread(target=udp, daemon=True).start()
    if use_http:
        class H(Handler):
            def handle_any(self):
                self.send_text(200, name, close=close)
            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any
        serve_http(port, H)
    log(f"Serving on port {port}.")
    signal.sigwait([signal.SIGTERM, signal.SIGINT]) if hasattr(signal, "sigwait") else None
    log("Shutting down after receiving signal: terminated.")
    log("Awaiting pod deletion.")
    time.sleep(60)


# ---------------------------------------------------------------- netexec

def go_now():
    now = datetime.datetime.now().astimezone()
    return now.strftime("%Y-%m-%d %H:%M:%S.%f %z %Z")


def dial(host, port, request, protocol, tries):
    responses, errors = [], []
    for _ in range(tries):
        try:
            if protocol == "http":
                url = f"http://{host}:{port}/{request.lstrip('/')}"
                with urllib.request.urlopen(url, timeout=5) as r:
                    responses.append(r.read().decode(errors="replace"))
            elif protocol == "udp":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(5)
                s.sendto(request.encode(), (host, int(port)))
                data, _ = s.recvfrom(2048)
                s.close()
                responses.append(data.decode(errors="replace"))
            else:
                errors.append(f"unsupported protocol {protocol}")
        except Exception as e:  # noqa: BLE001 - reported to the caller like agnhost does
            errors.append(f"reading from udp connection failed. err:'{e}'"
                          if protocol == "udp" else str(e))
    out = {}
    if responses:
        out["responses"] = responses
    if errors:
        out["errors"] = errors
    return out


def netexec(args):
    flags, _ = parse_flags(args)
    http_port = int(flags.get("http-port", "8080"))
    udp_port = int(flags.get("udp-port", "8081"))
    delay = int(flags.get("delay-shutdown", "0"))
    override = flags.get("http-override", "")
    state = {"udp_up": udp_port < 0, "shutting_down": False}

    class H(Handler):
        def route(self, method):
            target = override or self.path
            u = urllib.parse.urlsplit(target)
            q = urllib.parse.parse_qs(u.query)

            def arg(k, d=""):
                return q.get(k, [d])[0]
            p = u.path
            if p == "/":
                return self.send_text(200, "NOW: " + go_now())
            if p in ("/hostname", "/hostName"):
                return self.send_text(200, hostname())
            if p == "/clientip":
                return self.send_text(200, f"{self.client_address[0]}:{self.client_address[1]}")
            if p == "/header":
                key = arg("key")
                if key:
                    return self.send_text(200, self.headers.get(key, ""))
                hdrs = {}
                for k, v in self.headers.items():
                    hdrs.setdefault(k, []).append(v)
                return self.send_text(200, json.dumps(hdrs), "application/json")
            if p == "/echo":
                code = int(arg("code", "200") or 200)
                return self.send_text(code, arg("msg"))
            if p == "/healthz":
                return self.send_text(200 if state["udp_up"] else 412,
                                      "ok" if state["udp_up"] else "udp server not up")
            if p == "/readyz":
                if state["shutting_down"]:
                    return self.send_text(503, "shutting down")
                return self.send_text(200 if state["udp_up"] else 412, "ok")
            if p == "/shell":
                cmd = arg("shellCommand") or arg("cmd")
                r = subprocess.run(["/bin/sh", "-c", cmd], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
                out = {}
                if r.stdout:
                    out["output"] = r.stdout.decode(errors="replace")
                if r.returncode != 0:
                    out["error"] = f"exit status {r.returncode}"
                return self.send_text(200 if r.returncode == 0 else 417, json.dumps(out),
                                      "application/json")
            if p == "/dial":
                host, port, request = arg("host"), arg("port"), arg("request")
                protocol = arg("protocol", "http") or "http"
                if not request:
                    return self.send_text(400, "request parameter not specified")
                try:
                    tries = int(arg("tries", "1") or 1)
                    socket.getaddrinfo(host, None)
                except (ValueError, OSError) as e:
                    return self.send_text(400, f"bad request: {e}")
                return self.send_text(200, json.dumps(dial(host, port, request, protocol,
                                                           tries)), "application/json")
            if p == "/redirect":
                loc = arg("location")
                code = int(arg("code", "302") or 302)
                return self.send_text(code, "", extra=[("Location", loc)])
            if p == "/exit":
                code = int(arg("code", "0") or 0)
                self.send_text(200, "")
                threading.Timer(0.1, lambda: os._exit(code)).start()
                return None
            if p == "/shutdown":
                self.send_text(200, "")
                threading.Timer(0.1, lambda: os._exit(0)).start()
                return None
            return self.send_text(404, "404 page not found")

        def do_GET(self):
            self.route("GET")
        do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    if udp_port >= 0:
        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", udp_port))
            state["udp_up"] = True
            while True:
                data, addr = s.recvfrom(2048)
                msg = data.decode(errors="replace").strip().lower()
                if msg == "hostname":
                    s.sendto(hostname().encode(), addr)
                elif msg.startswith("echo "):
                    s.sendto(msg[5:].encode(), addr)
                elif msg == "clientip":
                    s.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)
        threading.Thread(target=udp, daemon=True).start()
    serve_http(http_port, H)
    log(f"Started HTTP server on port {http_port}")
    if udp_port >= 0:
        log(f"Started UDP server on port {udp_port}")
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    state["shutting_down"] = True
    time.sleep(delay)
    sys.exit(0)


# ---------------------------------------------------------------- others

def pause(args):
    print("Paused", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    print("Shutting down, got signal", flush=True)
    sys.exit(0)


def porter(args):
    for k, v in os.environ.items():
        for prefix in ("SERVE_PORT_", "SERVE_TCP_PORT_"):
            if k.startswith(prefix):
                val = v

                class H(Handler):
                    def do_GET(self, val=val):
                        self.send_text(200, val)
                    do_POST = do_HEAD = do_GET
                serve_http(int(k[len(prefix):]), H)
        if k.startswith("SERVE_UDP_PORT_"):
            port, val = int(k[len("SERVE_UDP_PORT_"):]), v

            def udp(port=port, val=val):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("0.0.0.0", port))
                while True:
                    _, addr = s.recvfrom(2048)
                    s.sendto(val.encode(), addr)
            threading.Thread(target=udp, daemon=True).start()
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


def resolv():
    ns, search = [], []
    with open("/etc/resolv.conf") as fh:
        for line in fh:
            f = line.split()
            if f and f[0] == "nameserver":
                ns.append(f[1])
            elif f and f[0] == "search":
                search = f[1:]
    return ns, search


def connect(args):
    flags, pos = parse_flags(args)
    timeout = float(flags.get("timeout", "5s").rstrip("s") or 5)
    proto = flags.get("protocol", "tcp")
    host, _, port = pos[0].rpartition(":")
    try:
        addr = socket.gethostbyname(host)
    except OSError as e:
        print(f"DNS: {e}", file=sys.stderr)
        sys.exit(1)
    if proto != "tcp":
        print(f"OTHER: unsupported protocol {proto}", file=sys.stderr)
        sys.exit(1)
    try:
        socket.create_connection((addr, int(port)), timeout=timeout).close()
    except socket.timeout:
        print("TIMEOUT", file=sys.stderr)
        sys.exit(1)
    except ConnectionRefusedError:
        print("REFUSED", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f"OTHER: {e}", file=sys.stderr)
        sys.exit(1)


def http_echo(args):
    flags, _ = parse_flags(args)
    text = flags.get("text", "")
    listen = flags.get("listen", ":5678")
    host, _, port = listen.rpartition(":")

    class H(Handler):
        def do_GET(self):
            self.send_text(200, text + "\n")
        do_POST = do_HEAD = do_PUT = do_DELETE = do_GET
    srv = Server((host or "0.0.0.0", int(port)), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    log(f"[INFO] server is listening on {listen}")
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


COMMANDS = {
    "serve-hostname": serve_hostname,
    "netexec": netexec,
    "pause": pause,
    "porter": porter,
    "connect": connect,
    "http-echo": http_echo,
    "dns-suffix": lambda a: print(",".join(resolv()[1]), end=""),
    "dns-server-list": lambda a: print(",".join(resolv()[0]), end=""),
    "etc-hosts": lambda a: print(open("/etc/hosts").read(), end=""),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    if not argv or argv[0] not in COMMANDS:
        print("Usage: agnhost <subcommand> [flags]\nsubcommands: " +
              ", ".join(sorted(COMMANDS)), file=sys.stderr)
        sys.exit(1 if argv else 0)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
