"""Helpers shared by the benchmarks in this folder: free ports, percentiles, an API server on
its own, a whole cluster via `tinykube up` / `down --purge`, and py-spy profile summaries.

Benchmark clusters use their own ranges (service 10.131.0.0/16, pod 10.204.0.0/16) so they never
collide with the test suite or another engineer's cluster on the same host."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tinykube.testing import StandaloneApiServer, free_port  # noqa: E402,F401 (re-exported)

TINYKUBE = [sys.executable, "-m", "tinykube.cli.main"]
BENCH_SERVICE_CIDR = "10.131.0.0/16"
BENCH_POD_CIDR = "10.204.0.0/16"


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; nan when empty."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


class ApiServerProc(StandaloneApiServer):
    """`tinykube apiserver` alone on a free loopback port, with its own data dir."""

    def __init__(self, root: Path):
        super().__init__(root, name=f"bench{os.getpid() % 100000}")


class BenchCluster:
    """A whole cluster via `tinykube up`; `down --purge` on exit, whatever happened."""

    def __init__(self, name: str, data_dir: Path | None = None):
        self.name = name
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"tk-{name}-"))
        self.api_port = free_port()

    def tk(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
        r = subprocess.run([*TINYKUBE, *args, "--name", self.name, "--data-dir", str(self.data_dir)],
                           capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise RuntimeError(f"tinykube {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def config(self):
        from tinykube.cluster import ClusterConfig
        return ClusterConfig.load(self.data_dir)

    def __enter__(self) -> "BenchCluster":
        try:
            self.tk("up", "--api-port", str(self.api_port), "--service-cidr", BENCH_SERVICE_CIDR,
                    "--pod-cidr", BENCH_POD_CIDR)
        except BaseException:
            for f in sorted((self.data_dir / "logs").glob("*.log")):
                lines = f.read_text(errors="replace").splitlines()[-8:]
                print(f"--- {f.name}\n" + "\n".join(lines), file=sys.stderr)
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.tk("down", "--purge", check=False)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def existing_or_new_cluster(kubeconfig: str | None, name: str):
    """Yields a kubeconfig path: the given one (a cluster someone else runs), or a new bench
    cluster that is torn down afterwards."""
    if kubeconfig:
        yield Path(kubeconfig)
        return
    with BenchCluster(name) as c:
        yield c.kubeconfig


def py_spy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: str) -> subprocess.Popen | None:
    """py-spy record of `pid` for `seconds` into collapsed-stack text at `out`."""
    exe = py_spy()
    if not exe:
        print("(py-spy not installed: pip install py-spy into the venv to profile)")
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "200", "--format", "raw", "--output", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: str, top: int = 15) -> str:
    """Top self-time frames and top inclusive frames of a py-spy raw (collapsed) profile."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            cnt = int(n)
            total += cnt
            frames = [fr for fr in stack.split(";") if not fr.startswith("process ")
                      and not fr.startswith("thread ")]
            if not frames:
                continue
            self_t[_short(frames[-1])] += cnt
            for fr in set(_short(x) for x in frames):
                incl[fr] += cnt
    out = [f"  {total} samples (200 Hz, busy threads only)", "  top self time:"]
    for fr, c in self_t.most_common(top):
        out.append(f"    {100 * c / total:5.1f}%  {fr}")
    out.append("  top inclusive time (tinykube frames):")
    shown = 0
    for fr, c in incl.most_common():
        if "tinykube/" in fr and "/main.py" not in fr:
            out.append(f"    {100 * c / total:5.1f}%  {fr}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file-relative path:line)"
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            return head + "(" + tail.split(marker, 1)[1]
    return frame
