"""Protocol details no kubectl run pins down: SPDY PING/SYN_REPLY, v4 WebSocket, errors."""
from __future__ import annotations

import json
import socket

import aiohttp
import pytest

from tinykube.apiserver import spdy


def _spdy_connect(cluster, path: str, protocols: list[str]) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", cluster.api_port), timeout=30)
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
           + "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
           + "Content-Length: 0\r\n\r\n")
    s.sendall(req.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    return s, head


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.parser, self.comp = sock, spdy.FrameParser(), spdy.HeaderCompressor()
        self.pending: list = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self):
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.pending += self.parser.feed(chunk)
        return self.pending.pop(0)


def test_spdy_exec_replies_pings_and_streams(cluster):
    path = "/api/v1/namespaces/default/pods/p1/exec?command=sh&command=-c&command=echo+o%3Bexit+7" \
           "&container=c1&stdout=true&stderr=true"
    sock, head = _spdy_connect(cluster, path, ["v4.channel.k8s.io", "channel.k8s.io"])
    assert head.startswith(b"HTTP/1.1 101")
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
    c = _Client(sock)
    c.send(spdy.encode_ping(1))
    assert c.frame() == spdy.Ping(1)
    for sid, t in ((1, "error"), (3, "stdout"), (5, "stderr")):
        c.send(spdy.encode_syn_stream(c.comp, sid, {"streamtype": t}))
        assert c.frame() == spdy.SynReply(sid, {})
    out: dict[int, bytes] = {1: b"", 3: b"", 5: b""}
    fins: set[int] = set()
    while fins != {1, 3, 5}:
        f = c.frame()
        assert isinstance(f, spdy.DataFrame), f
        out[f.stream_id] += f.data
        if f.fin:
            fins.add(f.stream_id)
    assert out[3] == b"o\n" and out[5] == b""
    st = json.loads(out[1])
    assert st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    c.send(spdy.encode_goaway(5))
    assert c.frame() is None  # the server hangs up after the client's GOAWAY
    sock.close()


def test_spdy_protocol_negotiation_failure(cluster):
    sock, head = _spdy_connect(cluster, "/api/v1/namespaces/default/pods/p1/exec?command=true&container=c1",
                               ["v9.channel.k8s.io"])
    assert head.startswith(b"HTTP/1.1 403")
    sock.close()


def _ws_exec(cluster, query: str, protocols: tuple[str, ...], stdin: list[bytes] = ()):
    async def go():
        msgs = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{cluster.api_port}/api/v1/namespaces/default/pods/p1/exec?"
                                    + query, protocols=protocols) as ws:
                proto = ws.protocol
                for m in stdin:
                    await ws.send_bytes(m)
                async for msg in ws:
                    msgs.append((msg.type, msg.data))
                code = ws.close_code
        return proto, msgs, code
    return cluster.call(go())


def test_websocket_v4_client(cluster):
    proto, msgs, code = _ws_exec(cluster, "command=cat&container=c1&stdin=true&stdout=true&stderr=true",
                                 ("v4.channel.k8s.io",), [b"\x00hello", b"\xff\x00"])
    assert proto == "v4.channel.k8s.io"
    assert code == 1000
    # a v4 client cannot close stdin; 255 frames are never sent to it
    datas = [d for t, d in msgs if t == aiohttp.WSMsgType.BINARY]
    assert all(d[0] in (1, 2, 3) for d in datas)


def test_websocket_v5_success_status_and_close_1000(cluster):
    proto, msgs, code = _ws_exec(cluster, "command=echo&command=x&container=c1&stdout=true&stderr=true",
                                 ("v5.channel.k8s.io",))
    assert proto == "v5.channel.k8s.io" and code == 1000
    datas = [d for t, d in msgs if t == aiohttp.WSMsgType.BINARY]
    assert b"\x01x\n" in datas
    assert datas[-1][0] == 3 and json.loads(datas[-1][1:]) == {"metadata": {}, "status": "Success"}


def test_exec_without_upgrade_is_400(cluster):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{cluster.api_port}/api/v1/namespaces/default/pods/p1/exec"
                              "?command=true&container=c1") as r:
                return r.status, await r.json()
    status, body = cluster.call(go())
    assert status == 400 and body["message"] == "Upgrade request required" and body["kind"] == "Status"


def test_exec_without_container_is_400(cluster):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{cluster.api_port}/api/v1/namespaces/default/pods/p1/exec"
                              "?command=true") as r:
                return r.status, await r.json()
    status, body = cluster.call(go())
    assert status == 400 and "container name must be specified" in body["message"]


def test_agent_portforward_pod_without_ip(cluster):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{cluster.agent_port}/portforward/default/noip?port=80") as ws:
                return [(m.type, m.data) for m in [await ws.receive()]]
    [(t, d)] = cluster.call(go())
    assert t == aiohttp.WSMsgType.TEXT and "has no IP address" in d


def test_agent_portforward_bad_port(cluster):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{cluster.agent_port}/portforward/default/p1?port=x") as r:
                return r.status
    assert cluster.call(go()) == 400


@pytest.mark.parametrize("minor", [27, 33])
def test_tty_resize_reaches_the_process(cluster, minor):
    import shlex
    import subprocess
    cmd = shlex.join(cluster.kubectl_args(minor, "exec", "-it", "p1", "--", "sh", "-c",
                                          'while [ "$(stty size)" = "0 0" ]; do sleep 0.05; done'))
    r = subprocess.run(["script", "-qec", f"stty rows 20 cols 70; {cmd}", "/dev/null"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout
    assert (70, 20) in cluster.runtime.last.sizes
