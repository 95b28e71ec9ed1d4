"""PodRuntime: pod sandboxes and containers as real sandboxed processes.

Layout under ``data_dir/pods/<uid>/``::

    sandbox.json            netns, veth, IP, hostname, holder pid, startTime
    pod.json                the last pod object given to sync_pod
    conditions.json         condition -> [status, lastTransitionTime]
    etc/{hosts,hostname,resolv.conf}   tmp/   volumes/<name>/   html/ (nginx)
    containers/<name>/      per-container config (nginx conf, writable dirs)
    containers/<name>/attempts/<n>/{config.json,shim.json,exit.json,attach.sock}
    logs/<name>/<n>.log     n = restartCount of that run

A pod is a holder process (``pause.py``) in the pod's netns with its own UTS/IPC
namespaces; each container is ``nsenter`` into the holder's UTS/IPC + ``bwrap``
(own mount and PID namespaces, host root read-only) supervised by ``shim.py``.
Holders and shims are started with ``setsid -f`` so they are not children of the
agent and outlive it; a new PodRuntime on the same data_dir adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import inspect
import json
import os
import shutil
import shlex
import signal
import socket
import ssl
import struct
import sys
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...net import bridge as brmod
from ...net import netns as nsmod
from ...net.ipam import IPAM
from . import dnsconfig, envvars, images, volumes
from .shim import rfc3339nano

KDIR = Path(__file__).resolve().parent
SHIM = str(KDIR / "shim.py")
PAUSE = str(KDIR / "pause.py")
PY = sys.executable
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SKIP_ROOT = {"proc", "dev", "tmp", "run", "lost+found"}
# The start gate of a stdinOnce container: wait for the shim's go (one line on the gate fd),
# close the fd, then exec the command; a missing command is reported the way bwrap does, so
# the shim still calls it a StartError.
START_GATE = 10.0
GATE_SCRIPT = ('read -r -u {GATE_FD} _; exec {GATE_FD}<&-; '
               'command -v "$1" >/dev/null 2>&1 || '
               '{ echo "bwrap: execvp $1: No such file or directory" >&2; exit 1; }; exec "$@"')

Lookup = Callable[[str, str], Any]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def trunc_rfc3339(ts: str | None) -> str | None:
    """RFC3339Nano -> RFC3339 seconds (what the API shows)."""
    if not ts:
        return ts
    return ts.split(".")[0].rstrip("Z") + "Z"


def go_duration(sec: float) -> str:
    if sec < 1:
        return f"{int(round(sec * 1000))}ms"
    s = int(sec)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def proc_start_time(pid: int) -> str | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def alive(pid: int | None, start: str | None = None) -> bool:
    if not pid:
        return False
    st = proc_start_time(pid)
    if st is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except OSError:
        return False
    return start is None or st == start


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


async def _maybe_await(v: Any) -> Any:
    if inspect.isawaitable(v):
        return await v
    return v


@dataclass
class CState:
    name: str
    spec: dict
    init: bool = False
    attempt: int = -1              # index of the latest started run (= restartCount)
    running: bool = False
    pid: int | None = None
    pid_start: str | None = None
    shim_pid: int | None = None
    shim_start: str | None = None
    started_at: str | None = None
    exit: dict | None = None       # exit.json of the latest run
    last_exit: dict | None = None  # exit.json of the run before
    waiting: tuple[str, str] | None = None
    ready: bool = False
    started: bool = False
    next_delay: float = 0.0
    probe_task: asyncio.Task | None = None
    loop_task: asyncio.Task | None = None
    exit_fut: asyncio.Future | None = None
    kill_reason: str | None = None
    container_id: str | None = None
    image_delay: float = 0.0       # the next image pull back-off
    probe_error: str = ""          # why the last probe failed (for the Unhealthy event)

    @property
    def restart_count(self) -> int:
        return max(self.attempt, 0)


@dataclass
class PState:
    uid: str
    dir: Path
    pod: dict
    sandbox: dict = field(default_factory=dict)
    containers: dict[str, CState] = field(default_factory=dict)
    services: list = field(default_factory=list)
    get_configmap: Lookup | None = None
    get_secret: Lookup | None = None
    worker: asyncio.Task | None = None
    first_done: asyncio.Event = field(default_factory=asyncio.Event)
    initialized: bool = False
    init_failed: bool = False
    killed: bool = False
    sandbox_error: str | None = None
    conditions: dict = field(default_factory=dict)


class ExecTTY:
    """An exec session on a pseudo-terminal: ``master_fd`` for I/O, ``resize()``."""

    def __init__(self, proc: asyncio.subprocess.Process, master_fd: int) -> None:
        self.proc = proc
        self.master_fd = master_fd

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def wait(self) -> int:
        return await self.proc.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.master_fd)


class PodRuntime:
    def __init__(self, data_dir: Path, cluster: str, bridge: str, pod_cidr: str, dns_ip: str,
                 cluster_domain: str = "cluster.local", host_ip: str | None = None,
                 backoff_base: float = 10.0, backoff_max: float = 300.0,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.cluster = cluster
        self.bridge = bridge
        self.pod_cidr = pod_cidr
        self.dns_ip = dns_ip
        self.cluster_domain = cluster_domain
        self.ipam = IPAM(self.data_dir / "ipam", pod_cidr)
        self.host_ip = host_ip or self.ipam.gateway
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_change = on_change
        # on_event(pod uid, type, reason, message): what the kubelet records as Events
        self.on_event: Callable[[str, str, str, str], None] | None = None
        self.status_changed = asyncio.Event()
        self.pods: dict[str, PState] = {}
        (self.data_dir / "pods").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ node

    async def setup_node(self) -> None:
        await brmod.ensure_bridge(self.bridge, self.pod_cidr)

    async def teardown_node(self) -> None:
        for uid in list(self.pods) + [p.name for p in (self.data_dir / "pods").iterdir()]:
            await self.remove_pod(uid)
        await brmod.delete_bridge(self.bridge)

    # ------------------------------------------------------------------ helpers

    def _notify(self, ps: PState) -> None:
        self.status_changed.set()
        if self.on_change:
            try:
                self.on_change(ps.uid)
            except Exception:  # noqa: BLE001 - a callback must not break the runtime
                pass

    def _event(self, ps: PState, type_: str, reason: str, message: str) -> None:
        if self.on_event:
            try:
                self.on_event(ps.uid, type_, reason, message)
            except Exception:  # noqa: BLE001 - an event must not break the runtime
                pass

    def pod_dir(self, uid: str) -> Path:
        return self.data_dir / "pods" / uid

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path:
        ps = self.pods.get(pod_uid)
        n = None
        if ps and container in ps.containers:
            n = ps.containers[container].attempt
        if n is None or n < 0:
            logs = self.pod_dir(pod_uid) / "logs" / container
            nums = [int(p.stem) for p in logs.glob("*.log") if p.stem.isdigit()] \
                if logs.is_dir() else []
            n = max(nums) if nums else 0
        if previous:
            n -= 1
        return self.pod_dir(pod_uid) / "logs" / container / f"{max(n, 0) if n >= 0 else -1}.log"

    # ------------------------------------------------------------------ adoption

    def running_pods(self) -> list[dict]:
        """Pods whose holder process is alive, from the state on disk."""
        out = []
        for d in sorted((self.data_dir / "pods").iterdir()):
            sb = read_json(d / "sandbox.json")
            if not sb or not alive(sb.get("holderPid"), sb.get("holderStart")):
                continue
            conts = {}
            for cdir in (d / "containers").glob("*"):
                attempts = sorted((int(a.name) for a in (cdir / "attempts").glob("*")
                                   if a.name.isdigit()), reverse=True)
                if not attempts:
                    continue
                shim = read_json(cdir / "attempts" / str(attempts[0]) / "shim.json") or {}
                running = (alive(shim.get("shimPid")) and
                           not (cdir / "attempts" / str(attempts[0]) / "exit.json").exists())
                conts[cdir.name] = {"pid": shim.get("pid"), "running": running,
                                    "restartCount": attempts[0]}
            out.append({"uid": d.name, "name": sb.get("name"), "namespace": sb.get("namespace"),
                        "podIP": sb.get("ip"), "holderPid": sb.get("holderPid"),
                        "containers": conts})
        return out

    def _load(self, uid: str, pod: dict) -> PState:
        d = self.pod_dir(uid)
        ps = PState(uid=uid, dir=d, pod=pod)
        ps.sandbox = read_json(d / "sandbox.json") or {}
        ps.conditions = read_json(d / "conditions.json") or {}
        spec = pod.get("spec") or {}
        for init, lst in ((True, spec.get("initContainers") or []),
                          (False, spec.get("containers") or [])):
            for c in lst:
                cs = CState(name=c["name"], spec=c, init=init)
                self._load_container(ps, cs)
                ps.containers[cs.name] = cs
        return ps

    def _load_container(self, ps: PState, cs: CState) -> None:
        adir = ps.dir / "containers" / cs.name / "attempts"
        attempts = sorted((int(a.name) for a in adir.glob("*") if a.name.isdigit()))
        if not attempts:
            return
        n = attempts[-1]
        cs.attempt = n
        shim = read_json(adir / str(n) / "shim.json") or {}
        cs.pid, cs.pid_start = shim.get("pid"), shim.get("pidStart")
        cs.shim_pid, cs.shim_start = shim.get("shimPid"), shim.get("shimStart")
        cs.started_at = shim.get("startedAt")
        cs.container_id = shim.get("containerID")
        ex = read_json(adir / str(n) / "exit.json")
        if ex is None and alive(cs.shim_pid, cs.shim_start):
            cs.running = True
        elif ex is None:
            ex = {"exitCode": 137, "reason": "Unknown", "finishedAt": rfc3339nano(),
                  "startedAt": cs.started_at, "message": "the container's supervisor vanished"}
        cs.exit = ex
        if n > 0:
            cs.last_exit = read_json(adir / str(n - 1) / "exit.json")
        if cs.init and ex and ex.get("exitCode") == 0:
            cs.started = False

    # ------------------------------------------------------------------ sync

    async def sync_pod(self, pod: dict, env_services: list[dict] | None = None,
                       get_configmap: Lookup | None = None,
                       get_secret: Lookup | None = None) -> dict:
        """Make the pod run (idempotent) and return its status."""
        uid = pod["metadata"]["uid"]
        ps = self.pods.get(uid)
        if ps is None:
            ps = self._load(uid, pod)
            self.pods[uid] = ps
        ps.pod = pod
        ps.services = list(env_services or [])
        ps.get_configmap = get_configmap
        ps.get_secret = get_secret
        if not ps.killed and (ps.worker is None or ps.worker.done()):
            ps.dir.mkdir(parents=True, exist_ok=True)
            write_json(ps.dir / "pod.json", pod)
            ps.worker = asyncio.create_task(self._pod_worker(ps))
        waiter = asyncio.create_task(ps.first_done.wait())
        await asyncio.wait([waiter, ps.worker], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if ps.worker.done() and not ps.worker.cancelled() and ps.worker.exception():
            raise ps.worker.exception()  # type: ignore[misc]
        return self.pod_status(uid)

    async def _lookups(self, ps: PState) -> tuple[dict, dict]:
        cms_names, sec_names = envvars.referenced_objects(ps.pod)
        ns = ps.pod["metadata"].get("namespace") or "default"
        cms = {}
        secs = {}
        for n in cms_names:
            cms[n] = await _maybe_await(ps.get_configmap(ns, n)) if ps.get_configmap else None
        for n in sec_names:
            secs[n] = await _maybe_await(ps.get_secret(ns, n)) if ps.get_secret else None
        return cms, secs

    async def _pod_worker(self, ps: PState) -> None:
        try:
            await self._ensure_sandbox(ps)
        except Exception as e:
            ps.sandbox_error = str(e)
            ps.first_done.set()
            self._notify(ps)
            raise
        policy = ps.pod["spec"].get("restartPolicy") or "Always"
        inits = [cs for cs in ps.containers.values() if cs.init]
        for cs in inits:
            while True:
                if cs.exit and cs.exit.get("exitCode") == 0 and not cs.running:
                    break
                if not cs.running and cs.exit is not None and cs.attempt >= 0:
                    # failed before: back off, then retry (or give up with Never)
                    if policy == "Never":
                        ps.init_failed = True
                        ps.first_done.set()
                        self._notify(ps)
                        return
                    await self._backoff(ps, cs)
                if not cs.running:
                    if not await self._try_start(ps, cs):
                        ps.first_done.set()
                        if cs.waiting and cs.waiting[0] == "ErrImagePull":
                            await self._image_backoff(ps, cs)
                            continue
                        return
                ps.first_done.set()
                self._notify(ps)
                await self._wait_exit(ps, cs)
                self._notify(ps)
        ps.initialized = True
        regular = [cs for cs in ps.containers.values() if not cs.init]
        starts = [asyncio.Event() for _ in regular]
        for cs, ev in zip(regular, starts):
            cs.loop_task = asyncio.create_task(self._container_loop(ps, cs, ev))
        for ev in starts:
            await ev.wait()
        ps.first_done.set()
        self._notify(ps)
        await asyncio.gather(*(cs.loop_task for cs in regular if cs.loop_task),
                             return_exceptions=True)

    async def _try_start(self, ps: PState, cs: CState) -> bool:
        image = cs.spec.get("image", "")
        if images.kind_of(image) is None:
            cs.waiting = ("ErrImagePull", images.pull_error_message(image))
            self._event(ps, "Normal", "Pulling", f'Pulling image "{image}"')
            self._event(ps, "Warning", "Failed", images.pull_error_message(image))
            self._event(ps, "Warning", "Failed", "Error: ErrImagePull")
            self._notify(ps)
            return False
        self._event(ps, "Normal", "Pulled", f'Container image "{image}" already present on machine')
        try:
            await self._start_container(ps, cs)
        except envvars.ConfigError as e:
            cs.waiting = ("CreateContainerConfigError", str(e))
            self._event(ps, "Warning", "Failed", f"Error: {e}")
            self._notify(ps)
            return False
        self._event(ps, "Normal", "Created", f"Created container {cs.name}")
        self._event(ps, "Normal", "Started", f"Started container {cs.name}")
        return True

    async def _image_backoff(self, ps: PState, cs: CState) -> None:
        """After a failed pull: ErrImagePull shows briefly (until the kubelet's next sync, as
        upstream), then ImagePullBackOff for the back-off (base, doubling, capped); the caller
        then pulls again."""
        await asyncio.sleep(min(1.0, self.backoff_base))
        if ps.killed:
            return
        cs.waiting = ("ImagePullBackOff",
                      f'Back-off pulling image "{cs.spec.get("image", "")}"')
        self._event(ps, "Normal", "BackOff", cs.waiting[1])
        self._event(ps, "Warning", "Failed", "Error: ImagePullBackOff")
        self._notify(ps)
        delay = cs.image_delay or self.backoff_base
        cs.image_delay = min(delay * 2, self.backoff_max)
        await asyncio.sleep(delay)

    async def _backoff(self, ps: PState, cs: CState) -> None:
        delay = cs.next_delay
        cs.next_delay = self.backoff_base if delay == 0 else min(delay * 2, self.backoff_max)
        if delay <= 0:
            return
        md = ps.pod["metadata"]
        cs.waiting = ("CrashLoopBackOff",
                      f"back-off {go_duration(delay)} restarting failed container={cs.name} "
                      f"pod={md.get('name')}_{md.get('namespace') or 'default'}({ps.uid})")
        self._event(ps, "Warning", "BackOff", f"Back-off restarting failed container {cs.name} in pod "
                    f"{md.get('name')}_{md.get('namespace') or 'default'}({ps.uid})")
        self._notify(ps)
        await asyncio.sleep(delay)

    async def _container_loop(self, ps: PState, cs: CState, first: asyncio.Event) -> None:
        policy = ps.pod["spec"].get("restartPolicy") or "Always"
        while not ps.killed:
            if not cs.running:
                if cs.attempt >= 0 and cs.exit is not None:
                    code = cs.exit.get("exitCode", 1)
                    if policy == "Never" or (policy == "OnFailure" and code == 0):
                        first.set()
                        return
                    await self._backoff(ps, cs)
                    if ps.killed:
                        return
                ok = await self._try_start(ps, cs)
                first.set()
                if not ok:
                    if cs.waiting and cs.waiting[0] == "ErrImagePull":
                        await self._image_backoff(ps, cs)
                        continue
                    await asyncio.sleep(self.backoff_base)
                    continue
            first.set()
            self._notify(ps)
            cs.probe_task = asyncio.create_task(self._probes(ps, cs))
            try:
                await self._wait_exit(ps, cs)
            finally:
                cs.probe_task.cancel()
            if cs.exit and cs.started_at:
                # a run that lasted long enough resets the back-off
                try:
                    from .logs import parse_time
                    ran = (parse_time(cs.exit["finishedAt"]) -
                           parse_time(cs.started_at)).total_seconds()
                    if ran > 2 * self.backoff_max:
                        cs.next_delay = 0.0
                except (KeyError, ValueError):
                    pass
            self._notify(ps)

    # ------------------------------------------------------------------ sandbox

    async def _ensure_sandbox(self, ps: PState) -> None:
        sb = ps.sandbox
        if sb and alive(sb.get("holderPid"), sb.get("holderStart")):
            return
        pod = ps.pod
        md = pod["metadata"]
        d = ps.dir
        for sub in ("etc", "tmp", "volumes", "containers", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "tmp", 0o1777)
        netns = nsmod.pod_netns_name(self.cluster, ps.uid)
        veth = brmod.veth_name(self.cluster, ps.uid)
        ip = self.ipam.allocate(ps.uid)
        hostname = dnsconfig.pod_hostname(pod)
        sb = {"uid": ps.uid, "name": md.get("name"), "namespace": md.get("namespace"),
              "netns": netns, "veth": veth, "ip": ip, "hostname": hostname,
              "startTime": sb.get("startTime") or now_rfc3339()}
        ps.sandbox = sb
        write_json(d / "sandbox.json", sb)
        await nsmod.create(netns)
        await brmod.attach_pod(self.bridge, netns, veth, ip, self.ipam.prefixlen,
                               self.ipam.gateway)
        host_resolv = await asyncio.to_thread(_read, "/etc/resolv.conf")
        (d / "etc" / "resolv.conf").write_text(dnsconfig.resolv_conf(
            pod, [self.dns_ip] if self.dns_ip else [], self.cluster_domain, host_resolv))
        (d / "etc" / "hosts").write_text(dnsconfig.hosts_file(pod, [ip], self.cluster_domain,
                                                              _read("/etc/hosts")))
        (d / "etc" / "hostname").write_text(hostname + "\n")
        pidfile = d / "holder.pid"
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        await _detached("ip", "netns", "exec", netns, "unshare", "--uts", "--ipc", "--", PY,
                        PAUSE, hostname, str(pidfile))
        pid = await _wait_file_int(pidfile)
        sb["holderPid"] = pid
        sb["holderStart"] = proc_start_time(pid)
        write_json(d / "sandbox.json", sb)
        self._set_condition(ps, "PodReadyToStartContainers", "True")

    # ------------------------------------------------------------------ containers

    def _mount_args(self, ps: PState, cs: CState, binds: list[tuple[str, str, bool]]
                    ) -> list[str]:
        """bwrap arguments: host root read-only on a tmpfs root, plus ``binds``
        (host source, destination, read-only)."""
        args: list[str] = []
        for e in sorted(os.listdir("/")):
            if e in SKIP_ROOT:
                continue
            p = "/" + e
            if os.path.islink(p):
                args += ["--symlink", os.readlink(p), p]
            else:
                args += ["--ro-bind", p, p]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run"]
        shadows: list[str] = []
        binds = sorted(binds, key=lambda b: b[1].rstrip("/").count("/"))
        for _src, dest, _ro in binds:
            parent = os.path.dirname(dest.rstrip("/"))
            top = "/" + dest.strip("/").split("/")[0]
            if top in ("/tmp", "/run", "/dev", "/proc") or parent == "/":
                continue
            anc = parent
            while anc != "/" and not os.path.isdir(anc):
                anc = os.path.dirname(anc)
            if os.path.lexists(dest) or anc == "/" or anc == top and top in ("/tmp",):
                continue
            if os.path.realpath(anc) != anc or anc in shadows:
                continue
            # replace the read-only host directory by a tmpfs copy of its entries so
            # the missing mount point can be created
            shadows.append(anc)
            args += ["--tmpfs", anc]
            for e in sorted(os.listdir(anc)):
                p = os.path.join(anc, e)
                if os.path.islink(p):
                    args += ["--symlink", os.readlink(p), p]
                else:
                    args += ["--ro-bind", p, p]
        for src, dest, ro in binds:
            args += ["--ro-bind" if ro else "--bind", src, dest]
        args += ["--remount-ro", "/"]
        for s in shadows:
            args += ["--remount-ro", s]
        return args

    async def _start_container(self, ps: PState, cs: CState) -> None:
        pod = ps.pod
        spec = cs.spec
        image = spec.get("image", "")
        kind = images.kind_of(image)
        ns = pod["metadata"].get("namespace") or "default"
        cms, secs = await self._lookups(ps)
        svc_env = envvars.service_env(ps.services, ns,
                                      pod["spec"].get("enableServiceLinks", True) is not False)
        status_pod = dict(pod)
        status_pod["status"] = {**(pod.get("status") or {}), "podIP": ps.sandbox["ip"],
                                "podIPs": [{"ip": ps.sandbox["ip"]}], "hostIP": self.host_ip,
                                "hostIPs": [{"ip": self.host_ip}]}
        env = envvars.container_env(status_pod, spec, svc_env, cms, secs)
        full_env = {"PATH": DEFAULT_PATH, "HOSTNAME": ps.sandbox["hostname"]}
        if kind in ("nginx", "echo-nginx"):
            full_env.update({"NGINX_VERSION": "1.22.1"})
        full_env.update(env)
        full_env.setdefault("HOME", "/root")
        cmd, args = envvars.expand_command(spec, env)
        argv = images.command_for(image, cmd, args)
        # per-pod and per-container places
        cdir = ps.dir / "containers" / cs.name
        cdir.mkdir(parents=True, exist_ok=True)
        binds: list[tuple[str, str, bool]] = []
        mounts = {m.get("mountPath", "").rstrip("/") for m in spec.get("volumeMounts") or []}
        for f in ("hosts", "hostname", "resolv.conf"):
            if f"/etc/{f}" not in mounts:
                binds.append((str(ps.dir / "etc" / f), f"/etc/{f}", False))
        binds.append((str(ps.dir / "tmp"), "/tmp", False))
        if images.AGNHOST in argv and images.AGNHOST.startswith("/tmp/"):
            # the source tree is under /tmp, which the pod's own /tmp hides: bind the script back
            binds.append((images.AGNHOST, images.AGNHOST, True))
        if kind in ("nginx", "echo-nginx"):
            binds += self._prepare_nginx(ps, cs, kind, full_env, mounts)
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for m in spec.get("volumeMounts") or []:
            v = vols.get(m.get("name"))
            if v is None:
                raise envvars.ConfigError(f'volume "{m.get("name")}" not found')
            vdir = ps.dir / "volumes" / v["name"]
            src = await asyncio.to_thread(volumes.prepare, status_pod, v, vdir, cms, secs)
            if m.get("subPath"):
                src = Path(src) / m["subPath"]
                if not src.exists() and "hostPath" not in v:
                    src.mkdir(parents=True, exist_ok=True)
            binds.append((str(src), m["mountPath"], bool(m.get("readOnly"))))
        wd = spec.get("workingDir") or "/"
        if wd != "/" and not os.path.isdir(wd) and wd.rstrip("/") not in mounts:
            wdir = cdir / "workdir"
            wdir.mkdir(exist_ok=True)
            binds.append((str(wdir), wd, False))
        attempt = cs.attempt + 1
        adir = cdir / "attempts" / str(attempt)
        if adir.exists():
            shutil.rmtree(adir)
        adir.mkdir(parents=True)
        logdir = ps.dir / "logs" / cs.name
        logdir.mkdir(parents=True, exist_ok=True)
        log = logdir / f"{attempt}.log"
        # kubectl run -i: the first run of a stdinOnce container waits (at most START_GATE
        # seconds) for its first attach client before the command starts; see shim.py
        gate = bool(spec.get("stdin") and spec.get("stdinOnce")) and attempt == 0
        if gate:
            argv = ["/bin/bash", "-c", GATE_SCRIPT, "gate", *argv]
        full = ["ip", "netns", "exec", ps.sandbox["netns"], "nsenter", "-t",
                str(ps.sandbox["holderPid"]), "-u", "-i", "--", "bwrap",
                *self._mount_args(ps, cs, binds),
                "--unshare-pid", "--as-pid-1", "--info-fd", "{INFO_FD}", "--chdir", wd,
                "--", *argv]
        cfg = {"argv": full, "env": full_env, "log": str(log), "state_dir": str(adir),
               "stdin": bool(spec.get("stdin")), "stdin_once": bool(spec.get("stdinOnce")),
               "gate": START_GATE if gate else 0}
        write_json(adir / "config.json", cfg)
        await _detached(PY, SHIM, str(adir / "config.json"))
        shim = await _wait_shim(adir / "shim.json")
        cid = os.urandom(32).hex()
        shim["pidStart"] = proc_start_time(shim["pid"]) if shim.get("pid") else None
        shim["shimStart"] = proc_start_time(shim["shimPid"])
        shim["containerID"] = cid
        # the shim rewrote nothing after its first write; keep our additions beside it
        write_json(adir / "shim.json", shim)
        cs.last_exit = cs.exit if cs.attempt >= 0 else None
        cs.attempt = attempt
        cs.exit = None
        cs.waiting = None
        cs.running = True
        cs.ready = False
        cs.started = False
        cs.kill_reason = None
        cs.pid, cs.pid_start = shim.get("pid"), shim["pidStart"]
        cs.shim_pid, cs.shim_start = shim["shimPid"], shim["shimStart"]
        cs.started_at = shim.get("startedAt")
        cs.container_id = cid
        cs.exit_fut = None

    def _prepare_nginx(self, ps: PState, cs: CState, kind: str, env: dict,
                       mounts: set[str]) -> list[tuple[str, str, bool]]:
        cdir = ps.dir / "containers" / cs.name / "nginx"
        for sub in ("conf.d", "log", "lib"):
            (cdir / sub).mkdir(parents=True, exist_ok=True)
        (cdir / "nginx.conf").write_text(images.NGINX_CONF)
        if kind == "echo-nginx":
            port = env.get("NGINX_PORT") or "80"
            (cdir / "conf.d" / "default.conf").write_text(images.ECHO_NGINX_SITE %
                                                          {"port": port})
        elif not (cdir / "conf.d" / "default.conf").exists():
            (cdir / "conf.d" / "default.conf").write_text(images.NGINX_DEFAULT_SITE)
        html = ps.dir / "html"
        if not html.exists():
            html.mkdir()
            for name, data in images.nginx_html_source().items():
                (html / name).write_bytes(data)
            os.chmod(html, 0o755)
        binds = [(str(cdir / "nginx.conf"), "/etc/nginx/nginx.conf", False),
                 (str(cdir / "log"), "/var/log/nginx", False),
                 (str(cdir / "lib"), "/var/lib/nginx", False)]
        if "/etc/nginx/conf.d" not in mounts:
            binds.append((str(cdir / "conf.d"), "/etc/nginx/conf.d", False))
        if "/usr/share/nginx/html" not in mounts:
            binds.append((str(html), "/usr/share/nginx/html", False))
        return [b for b in binds if b[1] not in mounts]

    async def _wait_exit(self, ps: PState, cs: CState) -> dict:
        """Wait until the container's shim has exited; record the exit."""
        if cs.running and cs.shim_pid:
            await _wait_pid(cs.shim_pid, cs.shim_start)
        adir = ps.dir / "containers" / cs.name / "attempts" / str(cs.attempt)
        ex = None
        for _ in range(50):
            ex = read_json(adir / "exit.json")
            if ex:
                break
            await asyncio.sleep(0.02)
        if not ex:
            ex = {"exitCode": 137, "reason": "Error", "finishedAt": rfc3339nano(),
                  "startedAt": cs.started_at, "message": ""}
        if cs.kill_reason and ex.get("reason") in ("Error", "Completed"):
            ex = dict(ex, killReason=cs.kill_reason)
        cs.exit = ex
        cs.running = False
        cs.ready = False
        cs.started = False
        return ex

    async def _stop_container(self, cs: CState, grace: float) -> None:
        if not cs.running or not cs.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            if alive(cs.pid, cs.pid_start):
                os.kill(cs.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(_wait_pid(cs.shim_pid, cs.shim_start), max(grace, 0))
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                if alive(cs.pid, cs.pid_start):
                    os.kill(cs.pid, signal.SIGKILL)
            await _wait_pid(cs.shim_pid, cs.shim_start)

    # ------------------------------------------------------------------ probes

    async def _probes(self, ps: PState, cs: CState) -> None:
        spec = cs.spec
        startup = spec.get("startupProbe")
        if startup:
            ok = await self._probe_until(ps, cs, startup, want_success=True)
            if not ok:
                await self._probe_kill(ps, cs, "Startup probe failed")
                return
        cs.started = True
        self._notify(ps)
        tasks = []
        if spec.get("readinessProbe"):
            tasks.append(asyncio.create_task(self._readiness(ps, cs, spec["readinessProbe"])))
        else:
            cs.ready = True
            self._notify(ps)
        if spec.get("livenessProbe"):
            tasks.append(asyncio.create_task(self._liveness(ps, cs, spec["livenessProbe"])))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _probe_until(self, ps: PState, cs: CState, probe: dict, want_success: bool
                           ) -> bool:
        """Startup semantics: True after successThreshold successes, False after
        failureThreshold consecutive failures."""
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        fails = 0
        while True:
            if await self._run_probe(ps, cs, probe):
                return True
            fails += 1
            self._event(ps, "Warning", "Unhealthy", f"Startup probe failed: {cs.probe_error}")
            if fails >= probe.get("failureThreshold", 3):
                return False
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def _readiness(self, ps: PState, cs: CState, probe: dict) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        succ = fails = 0
        while True:
            ok = await self._run_probe(ps, cs, probe)
            if ok:
                succ, fails = succ + 1, 0
                if succ >= probe.get("successThreshold", 1) and not cs.ready:
                    cs.ready = True
                    self._notify(ps)
            else:
                succ, fails = 0, fails + 1
                self._event(ps, "Warning", "Unhealthy", f"Readiness probe failed: {cs.probe_error}")
                if fails >= probe.get("failureThreshold", 3) and cs.ready:
                    cs.ready = False
                    self._notify(ps)
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def _liveness(self, ps: PState, cs: CState, probe: dict) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        fails = 0
        while True:
            if await self._run_probe(ps, cs, probe):
                fails = 0
            else:
                fails += 1
                self._event(ps, "Warning", "Unhealthy", f"Liveness probe failed: {cs.probe_error}")
                if fails >= probe.get("failureThreshold", 3):
                    self._event(ps, "Normal", "Killing",
                                f"Container {cs.name} failed liveness probe, will be restarted")
                    await self._probe_kill(ps, cs, "Liveness probe failed")
                    return
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def _probe_kill(self, ps: PState, cs: CState, reason: str) -> None:
        cs.kill_reason = reason
        grace = cs.spec.get("terminationGracePeriodSeconds") or \
            ps.pod["spec"].get("terminationGracePeriodSeconds", 30)
        for p in ("livenessProbe", "startupProbe"):
            pr = cs.spec.get(p) or {}
            if pr.get("terminationGracePeriodSeconds") is not None:
                grace = pr["terminationGracePeriodSeconds"]
        await self._stop_container(cs, grace)

    def _resolve_port(self, cs: CState, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in cs.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"port {port} not found")

    async def _run_probe(self, ps: PState, cs: CState, probe: dict) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                h = probe["httpGet"]
                host = h.get("host") or ps.sandbox["ip"]
                port = self._resolve_port(cs, h.get("port", 80))
                code = await asyncio.wait_for(
                    _http_probe(host, port, h.get("path", "/"), h.get("scheme", "HTTP"),
                                h.get("httpHeaders") or []), timeout)
                cs.probe_error = f"HTTP probe failed with statuscode: {code}"
                return 200 <= code < 400
            if "tcpSocket" in probe:
                t = probe["tcpSocket"]
                port = self._resolve_port(cs, t.get("port"))
                _, w = await asyncio.wait_for(
                    asyncio.open_connection(t.get("host") or ps.sandbox["ip"], port), timeout)
                w.close()
                return True
            if "exec" in probe:
                proc = await self.exec(ps.uid, cs.name, probe["exec"].get("command") or [],
                                       stdin=False)
                try:
                    await asyncio.wait_for(proc.communicate(), timeout)
                except asyncio.TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                    cs.probe_error = f"command timed out after {timeout}s"
                    return False
                cs.probe_error = f"command exited with {proc.returncode}"
                return proc.returncode == 0
        except asyncio.TimeoutError:
            cs.probe_error = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            return False
        except (OSError, ValueError) as e:
            cs.probe_error = f"dial tcp: {e.strerror or e}" if isinstance(e, OSError) else str(e)
            return False
        return True

    # ------------------------------------------------------------------ exec/attach

    def _container(self, pod_uid: str, container: str) -> CState:
        ps = self.pods.get(pod_uid)
        if ps is None:
            pod = read_json(self.pod_dir(pod_uid) / "pod.json")
            if pod is None:
                raise KeyError(f"pod {pod_uid} not found")
            ps = self._load(pod_uid, pod)
            self.pods[pod_uid] = ps
        cs = ps.containers.get(container)
        if cs is None:
            raise KeyError(f"container {container} not found in pod {pod_uid}")
        if not cs.running or not alive(cs.pid, cs.pid_start):
            raise RuntimeError(f"container {container} is not running")
        return cs

    def _exec_env(self, pod_uid: str, cs: CState) -> dict:
        cfg = read_json(self.pod_dir(pod_uid) / "containers" / cs.name / "attempts" /
                        str(cs.attempt) / "config.json") or {}
        return cfg.get("env") or {"PATH": DEFAULT_PATH}

    async def exec(self, pod_uid: str, container: str, argv: list[str], tty: bool = False,
                   stdin: bool = True) -> Any:
        """Run ``argv`` in the container. Without tty: an asyncio Process with pipes;
        with tty: an :class:`ExecTTY` (master fd + resize)."""
        cs = self._container(pod_uid, container)
        env = self._exec_env(pod_uid, cs)
        if tty:
            env = dict(env)
            env.setdefault("TERM", "xterm")
        if tty:
            # The container has its own devpts (bwrap --dev): a terminal made here would be
            # "not a tty" inside. script(1), run inside the container, opens the session's
            # terminal from the container's /dev/ptmx and relays to ours, passing on resizes.
            argv = ["script", "-qefc", shlex.join(argv), "/dev/null"]
        base = ["nsenter", "-t", str(cs.pid), "-a", "-r", "-w", "--", *argv]
        if tty:
            master, slave = os.openpty()
            # a sane size until the client's first resize arrives
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            try:
                proc = await asyncio.create_subprocess_exec(
                    "setsid", "-c", *base, stdin=slave, stdout=slave, stderr=slave, env=env)
            finally:
                os.close(slave)
            return ExecTTY(proc, master)
        return await asyncio.create_subprocess_exec(
            *base, env=env,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def attach(self, pod_uid: str, container: str
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the container's stdin/output (see shim.py for the framing)."""
        cs = self._container(pod_uid, container)
        adir = self.pod_dir(pod_uid) / "containers" / cs.name / "attempts" / str(cs.attempt)
        fd = os.open(adir, os.O_PATH)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(f"/proc/self/fd/{fd}/attach.sock")
        finally:
            os.close(fd)
        return await asyncio.open_unix_connection(sock=sock)

    # ------------------------------------------------------------------ kill/remove

    async def kill_pod(self, pod: dict, grace_seconds: float | None = None) -> dict:
        uid = pod["metadata"]["uid"]
        ps = self.pods.get(uid)
        if ps is None:
            ps = self._load(uid, read_json(self.pod_dir(uid) / "pod.json") or pod)
            ps.sandbox = read_json(self.pod_dir(uid) / "sandbox.json") or {}
            self.pods[uid] = ps
        ps.killed = True
        if grace_seconds is None:
            grace_seconds = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        tasks = [ps.worker] + [cs.loop_task for cs in ps.containers.values()] + \
            [cs.probe_task for cs in ps.containers.values()]
        for t in tasks:
            if t and not t.done():
                t.cancel()
        for t in tasks:
            if t:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        running = [cs for cs in ps.containers.values() if cs.running]
        for cs in running:
            self._event(ps, "Normal", "Killing", f"Stopping container {cs.name}")
        await asyncio.gather(*(self._stop_container(cs, grace_seconds) for cs in running))
        for cs in running:
            await self._wait_exit(ps, cs)
        for cs in ps.containers.values():
            cs.waiting = None if cs.exit else cs.waiting
        hp, hs = ps.sandbox.get("holderPid"), ps.sandbox.get("holderStart")
        if alive(hp, hs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(hp, signal.SIGKILL)
            await _wait_pid(hp, hs)
        self._set_condition(ps, "PodReadyToStartContainers", "False")
        self._notify(ps)
        return self.pod_status(uid)

    async def remove_pod(self, uid: str) -> None:
        """Stop everything of the pod and delete its netns, veth, address and files."""
        d = self.pod_dir(uid)
        ps = self.pods.get(uid)
        sb = (ps.sandbox if ps and ps.sandbox else None) or read_json(d / "sandbox.json") or {}
        pod = (ps.pod if ps else None) or read_json(d / "pod.json") or \
            {"metadata": {"uid": uid}, "spec": {}}
        if d.exists() or ps:
            await self.kill_pod(pod, 0)
        # stray processes of the pod (anything still in its network namespace)
        netns = sb.get("netns") or nsmod.pod_netns_name(self.cluster, uid)
        if nsmod.exists(netns):
            out = await nsmod.run("ip", "netns", "pids", netns, check=False)
            for p in out.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(p), signal.SIGKILL)
        await brmod.detach_pod(sb.get("veth") or brmod.veth_name(self.cluster, uid))
        await nsmod.delete(netns)
        self.ipam.release(uid)
        self.pods.pop(uid, None)
        if d.exists():
            await asyncio.to_thread(shutil.rmtree, d, True)
        self.status_changed.set()

    # ------------------------------------------------------------------ status

    def _set_condition(self, ps: PState, ctype: str, status: str) -> None:
        cur = ps.conditions.get(ctype)
        if cur is None or cur[0] != status:
            ps.conditions[ctype] = [status, now_rfc3339()]
            with contextlib.suppress(OSError):
                write_json(ps.dir / "conditions.json", ps.conditions)

    def _container_status(self, ps: PState, cs: CState) -> dict:
        image = cs.spec.get("image", "")
        st: dict[str, Any] = {"name": cs.name, "image": images.normalize(image),
                              "imageID": "", "ready": cs.ready,
                              "restartCount": cs.restart_count, "started": cs.started,
                              "lastState": {}, "state": {}}
        if cs.attempt >= 0:
            st["imageID"] = images.image_id(image)
            st["containerID"] = f"tinykube://{cs.container_id or ''}"

        def term(ex: dict) -> dict:
            t = {"exitCode": ex.get("exitCode", 0), "reason": ex.get("reason") or "Error",
                 "startedAt": trunc_rfc3339(ex.get("startedAt")),
                 "finishedAt": trunc_rfc3339(ex.get("finishedAt")),
                 "containerID": st.get("containerID", "")}
            if ex.get("message"):
                t["message"] = ex["message"]
            return t
        if cs.running:
            st["state"] = {"running": {"startedAt": trunc_rfc3339(cs.started_at)}}
            if cs.last_exit:
                st["lastState"] = {"terminated": term(cs.last_exit)}
        elif cs.waiting:
            w = {"reason": cs.waiting[0]}
            if cs.waiting[1]:
                w["message"] = cs.waiting[1]
            st["state"] = {"waiting": w}
            if cs.exit:
                st["lastState"] = {"terminated": term(cs.exit)}
        elif cs.exit:
            st["state"] = {"terminated": term(cs.exit)}
            if cs.last_exit:
                st["lastState"] = {"terminated": term(cs.last_exit)}
        else:
            reason = "PodInitializing" if (not cs.init and not ps.initialized and any(
                c.init for c in ps.containers.values())) else "ContainerCreating"
            st["state"] = {"waiting": {"reason": reason}}
        if cs.init:
            st["started"] = cs.running and cs.started
        return st

    def pod_status(self, uid: str) -> dict:
        ps = self.pods[uid]
        pod = ps.pod
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        inits = [cs for cs in ps.containers.values() if cs.init]
        regular = [cs for cs in ps.containers.values() if not cs.init]
        init_statuses = [self._container_status(ps, cs) for cs in inits]
        statuses = [self._container_status(ps, cs) for cs in regular]
        initialized = ps.initialized or all(
            cs.exit and cs.exit.get("exitCode") == 0 and not cs.running for cs in inits)
        # phase, following the kubelet's getPhase
        if ps.init_failed:
            phase = "Failed"
        elif not initialized:
            phase = "Pending"
        else:
            running = waiting = stopped = succeeded = 0
            for cs in regular:
                if cs.running:
                    running += 1
                elif cs.waiting or cs.attempt < 0:
                    if cs.exit:
                        stopped += 1
                    else:
                        waiting += 1
                elif cs.exit:
                    stopped += 1
                    if cs.exit.get("exitCode") == 0:
                        succeeded += 1
            if waiting:
                phase = "Pending"
            elif running:
                phase = "Running"
            elif stopped:
                if policy == "Always":
                    phase = "Running"
                elif stopped == succeeded:
                    phase = "Succeeded"
                elif policy == "Never":
                    phase = "Failed"
                else:
                    phase = "Running"
            else:
                phase = "Pending"
            if ps.killed and phase == "Running":
                phase = "Succeeded" if all(cs.exit and cs.exit.get("exitCode") == 0
                                           for cs in regular) else "Failed"
        # conditions
        done = phase in ("Succeeded", "Failed")
        not_ready = [cs.name for cs in regular if not cs.ready]
        if ps.sandbox.get("holderPid") and not ps.killed:
            self._set_condition(ps, "PodReadyToStartContainers", "True")
        self._set_condition(ps, "Initialized", "True" if initialized else "False")
        cr = "True" if not not_ready and regular else "False"
        self._set_condition(ps, "ContainersReady", cr)
        self._set_condition(ps, "Ready", cr)
        scheduled = None
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled":
                scheduled = c
        if scheduled is None:
            self._set_condition(ps, "PodScheduled", "True")
        conds = []

        def cond(t: str, reason: str | None = None, message: str | None = None) -> dict:
            s, ts = ps.conditions.get(t, ["False", now_rfc3339()])
            c = {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": ts}
            if s != "True" and reason:
                c["reason"] = reason
            if s != "True" and message:
                c["message"] = message
            return c
        if "PodReadyToStartContainers" in ps.conditions:
            conds.append(cond("PodReadyToStartContainers"))
        pending_inits = [cs.name for cs in inits
                         if not (cs.exit and cs.exit.get("exitCode") == 0)]
        conds.append(cond("Initialized", "ContainersNotInitialized",
                          f"containers with incomplete status: [{' '.join(pending_inits)}]"))
        ready_reason = "PodCompleted" if done else "ContainersNotReady"
        msg = None if done else f"containers with unready status: [{' '.join(not_ready)}]"
        conds.append(cond("Ready", ready_reason, msg))
        conds.append(cond("ContainersReady", ready_reason, msg))
        conds.append(scheduled or cond("PodScheduled"))
        status: dict[str, Any] = {"phase": phase, "conditions": conds,
                                  "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}]}
        ip = ps.sandbox.get("ip")
        if ip and not done:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        elif ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        if ps.sandbox.get("startTime"):
            status["startTime"] = ps.sandbox["startTime"]
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        status["containerStatuses"] = statuses
        status["qosClass"] = _qos(spec)
        return status


def _qos(spec: dict) -> str:
    conts = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    reqs = [c.get("resources") or {} for c in conts]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    for r in reqs:
        lim, req = r.get("limits") or {}, r.get("requests") or {}
        if not ("cpu" in lim and "memory" in lim):
            return "Burstable"
        for k in ("cpu", "memory"):
            if k in req and str(req[k]) != str(lim[k]):
                return "Burstable"
    return "Guaranteed"


async def _detached(*argv: str) -> None:
    """Start ``argv`` in a new session, not as our child (``setsid -f``), with no
    file descriptors of ours, so it outlives the agent."""
    proc = await asyncio.create_subprocess_exec(
        "setsid", "-f", *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        close_fds=True)
    await proc.wait()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


async def _wait_file_int(path: Path, timeout: float = 15.0) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            await asyncio.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {path}")


async def _wait_shim(path: Path, timeout: float = 30.0) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        d = read_json(path)
        if d:
            return d
        ex = read_json(path.with_name("exit.json"))
        if ex:
            raise RuntimeError(f"container failed to start: {ex}")
        await asyncio.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {path}")


async def _wait_pid(pid: int | None, start: str | None = None) -> None:
    """Wait for any process (not only children) to exit, via a pidfd."""
    if not pid or not alive(pid, start):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        if alive(pid, start):
            await fut
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _http_probe(host: str, port: int, path: str, scheme: str, headers: list[dict]
                      ) -> int:
    """The response's status code (0 if there was none)."""
    ctx = None
    if scheme.upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    r, w = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        hdrs = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.30", "Accept": "*/*",
                "Connection": "close"}
        for h in headers:
            hdrs[h.get("name", "")] = h.get("value", "")
        req = f"GET {path or '/'} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        w.write(req.encode())
        await w.drain()
        line = await r.readline()
        parts = line.decode(errors="replace").split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    finally:
        w.close()
