"""Nothing the API server acknowledged is lost: concurrent writers, kill -9 mid-stream, restart."""
from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request

from tests.conftest import ApiServer


def _opener(srv: ApiServer):
    pki = srv.cluster.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    base = f"https://127.0.0.1:{srv.cluster.api_port}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return json.loads(r.read())
    return call


def test_kill_9_loses_no_acknowledged_write(tmp_path):
    srv = ApiServer(tmp_path)
    srv.start()
    call = _opener(srv)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{w}-{i}"
            try:
                out = call("POST", "/api/v1/namespaces/default/configmaps",
                           {"metadata": {"name": name}, "data": {"i": str(i)}})
            except (OSError, urllib.error.URLError):
                return  # the server died under us: this write was never acknowledged
            with lock:
                acked[name] = int(out["metadata"]["resourceVersion"])
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.stop(kill=True)  # SIGKILL while writers are mid-request
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 50, "the writers did not get going"

    srv.start()
    try:
        items = call("GET", "/api/v1/namespaces/default/configmaps")["items"]
        stored = {o["metadata"]["name"]: int(o["metadata"]["resourceVersion"]) for o in items}
        missing = [n for n in acked if n not in stored]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert all(stored[n] == rv for n, rv in acked.items())
        after = call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "after"}})
        assert int(after["metadata"]["resourceVersion"]) > max(acked.values())
    finally:
        srv.stop()
