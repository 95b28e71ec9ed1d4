"""kill -9 a process that is writing through SqliteStore, reopen: every acknowledged write is
there and the revision counter only moves forward."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from tinykube.store.base import KeyNotFound, revision_of
from tinykube.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]

# Eight concurrent workers. Each line is printed only after the write was acknowledged,
# except "intent" lines, printed before a delete is sent (so the parent knows which keys may
# be gone even if the acknowledgement never came).
CHILD = r"""
import asyncio, sys, uvloop
from tinykube.store.sqlite import SqliteStore
from tinykube.store.base import revision_of

def out(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()

async def worker(s, round_, w):
    n = 0
    while True:
        key = f"/registry/crash/r{round_}-w{w}-{n}"
        o = await s.create(key, {"metadata": {"name": key}, "n": n})
        out("C", key, revision_of(o))
        if n % 3 == 2:
            ckey = f"/registry/counter/r{round_}-w{w}"
            if n == 2:
                o = await s.create(ckey, {"n": n})
            else:
                o = await s.update(ckey, {"n": n})
            out("U", ckey, n, revision_of(o))
        if n % 5 == 4:
            victim = f"/registry/crash/r{round_}-w{w}-{n - 4}"
            out("I", victim)
            o = await s.delete(victim)
            out("D", victim, revision_of(o))
        n += 1

async def main():
    s = SqliteStore(sys.argv[1])
    out("READY", await s.current_revision())
    await asyncio.gather(*[worker(s, sys.argv[2], w) for w in range(8)])

uvloop.run(main())
"""


def run_and_kill(db: Path, round_: int, min_lines: int) -> list[list[str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(round_)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    data = b""
    try:
        while data.count(b"\n") < min_lines:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "child produced no output: " + proc.stderr.read1(65536).decode()
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, "child exited early: " + proc.stderr.read().decode()
            data += chunk
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data += proc.stdout.read()       # lines still in the pipe were acknowledged too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    complete = data[:data.rfind(b"\n") + 1].decode()
    return [line.split(" ") for line in complete.splitlines()]


async def check(db: Path, lines: list[list[str]], floor: int) -> int:
    """Assert every acknowledged write of `lines` is in the store; returns the highest
    acknowledged revision."""
    assert lines[0][0] == "READY"
    assert int(lines[0][1]) >= floor
    created: dict[str, int] = {}
    maybe_deleted: set[str] = set()
    deleted: dict[str, int] = {}
    counters: dict[str, tuple[int, int]] = {}
    acked: list[int] = []
    for line in lines[1:]:
        if line[0] == "C":
            created[line[1]] = int(line[2])
            acked.append(int(line[2]))
        elif line[0] == "U":
            counters[line[1]] = (int(line[2]), int(line[3]))
            acked.append(int(line[3]))
        elif line[0] == "I":
            maybe_deleted.add(line[1])
        elif line[0] == "D":
            deleted[line[1]] = int(line[2])
            acked.append(int(line[2]))
    assert len(acked) == len(set(acked)), "every acknowledged write has its own revision"
    assert min(acked) > floor, "revisions after a restart exceed every earlier one"
    top = max(acked)

    s = SqliteStore(db)
    try:
        assert await s.current_revision() >= top
        for key, rev in created.items():
            if key in deleted:
                continue
            if key in maybe_deleted:
                continue
            assert revision_of(await s.get(key)) == rev, key
        for key in deleted:
            try:
                await s.get(key)
            except KeyNotFound:
                pass
            else:
                raise AssertionError(f"acknowledged delete of {key} was lost")
        for key, (n, rev) in counters.items():
            obj = await s.get(key)
            assert obj["n"] >= n and revision_of(obj) >= rev, key
        # the history has every acknowledged change too
        seen = set()
        async for ev in s.watch("/registry/", floor):
            seen.add(ev.revision)
            if ev.revision >= top:
                break
        assert set(acked) <= seen
        nxt = await s.create("/registry/after-crash/" + str(top), {})
        assert revision_of(nxt) > top
        return revision_of(nxt)
    finally:
        await s.close()


async def test_acknowledged_writes_survive_kill_9(tmp_path):
    db = tmp_path / "crash.db"
    floor = 0
    for round_ in range(2):
        lines = run_and_kill(db, round_, min_lines=400)
        floor = await check(db, lines, floor)
