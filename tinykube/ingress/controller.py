"""The Ingress controller: informers in, nginx.conf out, a real nginx serving it.

nginx runs as this process's child (`daemon off`, master + workers) with everything under
<data-dir>/ingress: the config, pid file, access log, temp files and certificates; its errors go
to this component's log. The master gets PR_SET_PDEATHSIG=SIGTERM, so it (and with it its
workers) stops even if this process is killed with SIGKILL; a stale master or worker of a
previous run (cwd = the ingress dir) is killed at start.

A change to an Ingress, Service, Secret or IngressClass re-renders the config; a new config is
checked with `nginx -t` against a scratch copy and only then moved into place and the master
sent SIGHUP (what `nginx -s reload` does): new workers take new connections, the old ones finish
the requests they have and exit. A config nginx rejects is logged and the last good one stays.
"""
from __future__ import annotations

import asyncio
import ctypes
import datetime
import logging
import os
import signal
import shutil
from pathlib import Path

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource
from tinykube.client import Client, Informer

from . import render as R

log = logging.getLogger("tinykube.ingress")

PR_SET_PDEATHSIG = 1


def nginx_binary() -> str:
    for c in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if c and os.path.exists(c):
            return c
    raise SystemExit("nginx is not installed (apt-get install nginx-light)")


def _pdeathsig() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


def ensure_default_cert(path: Path) -> None:
    """The certificate every server without its own answers with (ingress-nginx's "Fake
    Certificate"): self-signed, made once per cluster."""
    if path.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Kubernetes Ingress Controller Fake Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def kill_stale(prefix: Path) -> None:
    """nginx processes of an earlier run of this component (their cwd is the ingress dir)."""
    want = str(prefix.resolve())
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "nginx" or os.readlink(d / "cwd") != want:
                continue
            os.kill(int(d.name), signal.SIGKILL)
            log.info("killed stale nginx process %s", d.name)
        except OSError:
            continue


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


class IngressController:
    def __init__(self, client: Client, prefix: Path, listen: str, *, http_port: int = 80, https_port: int = 443,
                 worker_processes: int = 2):
        self.client = client
        self.prefix = prefix
        self.listen = listen
        self.http_port, self.https_port = http_port, https_port
        self.worker_processes = worker_processes
        self.nginx = nginx_binary()
        self.proc: asyncio.subprocess.Process | None = None
        self.res = {"ingresses": get_resource("ingresses", "networking.k8s.io"), "services": get_resource("services"),
                    "secrets": get_resource("secrets"),
                    "ingressclasses": get_resource("ingressclasses", "networking.k8s.io")}
        self.informers = {k: Informer(client, r) for k, r in self.res.items()}
        self.dirty = asyncio.Event()
        self.current: str | None = None
        self.served: list[tuple[str, str]] = []
        for inf in self.informers.values():
            inf.on_add(lambda o: self.dirty.set())
            inf.on_update(lambda a, b: self.dirty.set())
            inf.on_delete(lambda o: self.dirty.set())

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    # ---- rendering
    def render(self) -> R.Rendered:
        secrets = [s for s in self.informers["secrets"].items() if s.get("type") == "kubernetes.io/tls"
                   or "tls.crt" in (s.get("data") or {})]
        return R.render(self.informers["ingresses"].items(), self.informers["services"].items(), secrets,
                        self.informers["ingressclasses"].items(), listen=self.listen, prefix=str(self.prefix),
                        default_cert="default.pem", worker_processes=self.worker_processes,
                        http_port=self.http_port, https_port=self.https_port)

    async def _nginx_test(self, conf: Path) -> tuple[bool, str]:
        p = await asyncio.create_subprocess_exec(self.nginx, "-t", "-q", "-e", "stderr", "-c", str(conf),
                                                 "-p", str(self.prefix) + "/", stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
        out, _ = await p.communicate()
        return p.returncode == 0, out.decode(errors="replace").strip()

    async def apply(self, r: R.Rendered) -> bool:
        """Write certificates and the config (checked first); True when nginx has it."""
        for name, data in r.files.items():
            path = self.prefix / name
            if not path.exists() or path.read_bytes() != data:
                await asyncio.to_thread(_atomic_write, path, data, 0o600)
        if r.conf == self.current:
            return True
        scratch = self.prefix / "nginx.conf.check"
        await asyncio.to_thread(scratch.write_text, r.conf)
        ok, out = await self._nginx_test(scratch)
        if not ok:
            log.error("nginx rejected the new configuration; keeping the last good one:\n%s", out)
            return False
        await asyncio.to_thread(scratch.replace, self.conf_path)
        self.current = r.conf
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGHUP)  # = nginx -s reload
            log.info("configuration reloaded (%d ingresses)", len(r.ingresses))
        self._sweep_certs(r)
        return True

    def _sweep_certs(self, r: R.Rendered) -> None:
        keep = {self.prefix / n for n in r.files}
        for f in (self.prefix / "certs").glob("*.pem"):
            if f not in keep:
                f.unlink(missing_ok=True)

    # ---- nginx process
    async def start_nginx(self) -> None:
        for d in ("logs", "tmp", "certs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        kill_stale(self.prefix)
        self.proc = await asyncio.create_subprocess_exec(
            self.nginx, "-e", "stderr", "-c", str(self.conf_path), "-p", str(self.prefix) + "/",
            cwd=str(self.prefix), preexec_fn=_pdeathsig, stdin=asyncio.subprocess.DEVNULL)
        log.info("nginx master pid %d listening on %s:%d and :%d", self.proc.pid, self.listen, self.http_port,
                 self.https_port)

    async def wait_serving(self) -> None:
        while True:
            if self.proc is None or self.proc.returncode is not None:
                raise SystemExit("nginx exited during start; see the log above")
            # an HTTP answer, not just a connection: the master binds before it sets its signal
            # handlers, and a SIGHUP (reload) before that would end it
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(self.listen, self.http_port), 1)
                try:
                    w.write(b"GET /healthz HTTP/1.0\r\nHost: tinykube-ingress.invalid\r\n\r\n")
                    line = await asyncio.wait_for(r.readline(), 2)
                finally:
                    w.close()
                if line.startswith(b"HTTP/"):
                    return
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)

    async def stop_nginx(self, grace: float = 7.0) -> None:
        p = self.proc
        if p is None or p.returncode is not None:
            return
        p.send_signal(signal.SIGQUIT)  # = nginx -s quit: finish requests in flight
        try:
            await asyncio.wait_for(p.wait(), grace)
            return
        except asyncio.TimeoutError:
            pass
        p.send_signal(signal.SIGTERM)  # fast shutdown: the master takes its workers with it
        try:
            await asyncio.wait_for(p.wait(), 2)
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()
        kill_stale(self.prefix)

    # ---- classes and status
    async def ensure_class(self) -> None:
        """IngressClass `nginx` (controller k8s.io/ingress-nginx), marked default unless another
        class already is, so class-less Ingresses like the book's are served."""
        res = self.res["ingressclasses"]
        while True:
            try:
                try:
                    await self.client.get(res, None, R.CLASS_NAME)
                    return
                except ApiError as e:
                    if e.code != 404:
                        raise
                items, _ = await self.client.list(res)
                other_default = any(R._is_default(c) for c in items)
                body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                        "metadata": {"name": R.CLASS_NAME, "labels": {"app.kubernetes.io/component": "controller",
                                                                       "app.kubernetes.io/name": "ingress-nginx"}},
                        "spec": {"controller": R.CONTROLLER}}
                if not other_default:
                    body["metadata"]["annotations"] = {R.DEFAULT_CLASS_ANNOTATION: "true"}
                await self.client.create(res, body)
                log.info("created IngressClass %s%s", R.CLASS_NAME, "" if other_default else " (default)")
                return
            except ApiError as e:
                if e.code == 409:
                    return
                log.info("creating IngressClass %s: %s", R.CLASS_NAME, e.message)
                await asyncio.sleep(0.5)
            except OSError as e:
                log.info("creating IngressClass %s: %s", R.CLASS_NAME, e)
                await asyncio.sleep(0.5)

    async def update_status(self, served: list[tuple[str, str]]) -> bool:
        """status.loadBalancer.ingress = [{ip: <listen>}] on the Ingresses served; cleared on the
        ones that carry our address but are no longer ours. False when something must be retried."""
        want = [{"ip": self.listen}]
        ours = set(served)
        ok = True
        for ing in self.informers["ingresses"].items():
            md = ing["metadata"]
            key = (md.get("namespace") or "", md["name"])
            cur = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if key in ours:
                if cur == want:
                    continue
                new = want
            elif any(i.get("ip") == self.listen for i in cur):
                new = [i for i in cur if i.get("ip") != self.listen]
            else:
                continue
            body = dict(ing)
            body["status"] = {**(ing.get("status") or {}), "loadBalancer": {"ingress": new} if new else {}}
            try:
                await self.client.update_status(self.res["ingresses"], body)
            except ApiError as e:
                if e.code != 404:
                    log.info("status of ingress %s/%s: %s", key[0], key[1], e.message)
                    ok = False
            except OSError as e:
                log.info("status of ingress %s/%s: %s", key[0], key[1], e)
                ok = False
        return ok

    # ---- main loop
    async def start(self) -> None:
        ensure_default_cert(self.prefix / "default.pem")
        for d in ("logs", "tmp", "certs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        await self.ensure_class()
        for inf in self.informers.values():
            await inf.start()
        for inf in self.informers.values():
            await inf.wait_synced()
        r = self.render()
        self.current = None
        if not await self.apply(r):
            # never start on a config nginx refuses: serve nothing but 404s until fixed
            empty = R.render([], [], [], [], listen=self.listen, prefix=str(self.prefix),
                             worker_processes=self.worker_processes, http_port=self.http_port,
                             https_port=self.https_port)
            if not await self.apply(empty):
                raise SystemExit("nginx refuses even the empty configuration")
            r = empty
        await self.start_nginx()
        await self.wait_serving()
        self.served = r.ingresses
        self.dirty.set()  # status on the first pass of the loop

    async def loop(self, stop: asyncio.Event) -> None:
        nginx_exit = asyncio.create_task(self.proc.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                dirty = asyncio.create_task(self.dirty.wait())
                done, _ = await asyncio.wait([dirty, nginx_exit, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    dirty.cancel()
                    return
                if nginx_exit in done:
                    dirty.cancel()
                    raise SystemExit(f"nginx exited with code {self.proc.returncode}; the supervisor restarts us")
                await asyncio.sleep(0.05)  # let a burst of events land in one render
                self.dirty.clear()
                r = self.render()
                if await self.apply(r):
                    self.served = r.ingresses
                if not await self.update_status(self.served):
                    asyncio.get_running_loop().call_later(1.0, self.dirty.set)
        finally:
            stopper.cancel()

    async def close(self) -> None:
        for inf in self.informers.values():
            await inf.stop()
        await self.stop_nginx()
