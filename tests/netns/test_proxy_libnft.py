"""nft.apply through libnftables in one process (the agent's path in its own namespace) and its
`nft -f -` fallback, each run in a child process inside a network namespace made here."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent('''
    import asyncio, json, sys
    sys.path.insert(0, sys.argv[1])
    from tinykube.agent.proxy import nft

    async def main():
        nft.LIBNFT_IDLE_RELEASE = 0.05
        lib = nft.libnftables()
        await nft.apply("add table ip tkt\\nadd chain ip tkt c\\nadd set ip tkt ids { type mark; }\\n")
        await asyncio.sleep(0.3)    # idle: the context is freed, the next call makes one
        print(json.dumps({"inprocess": lib is not None,
                          "freed": lib is None or lib._ctx is None}))
        await nft.apply("add element ip tkt ids { 7 comment \\"ns/svc/tcp/80\\" }\\n")
        try:
            # one transaction: the bad rule makes the good chain not appear either
            await nft.apply("add chain ip tkt d\\nadd rule ip tkt nosuch accept\\n")
        except nft.NftError as e:
            print(json.dumps({"error": str(e)}))
        ex = await nft.existing("tkt")
        print(json.dumps({"chains": sorted(ex.chains), "ids": ex.ids}))
        await nft.delete_table("tkt")
        await nft.delete_table("tkt")          # idempotent
        print(json.dumps({"exists": await nft.table_exists("tkt")}))

    asyncio.run(main())
''')


def _run(env_extra: dict[str, str]) -> list[dict]:
    import json
    ns = f"tkt-lib-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, str(ROOT)],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={**os.environ, **env_extra})
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _check(out: list[dict]) -> None:
    assert "No such file or directory" in out[1]["error"]
    assert out[2] == {"chains": ["c"], "ids": {"7": "ns/svc/tcp/80"}}
    assert out[3] == {"exists": False}


def test_apply_in_process():
    try:
        import nftables  # noqa: F401
    except ImportError:
        if not os.path.exists("/usr/lib/python3/dist-packages/nftables/nftables.py"):
            pytest.skip("python3-nftables not installed")
    out = _run({})
    assert out[0] == {"inprocess": True, "freed": True}
    _check(out)


def test_apply_exec_fallback():
    out = _run({"TINYKUBE_NFT_EXEC": "1"})
    assert out[0] == {"inprocess": False, "freed": True}
    _check(out)
