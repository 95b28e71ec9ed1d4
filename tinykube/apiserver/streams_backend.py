"""Routes pods/exec, attach, portforward and log to the node agent that runs the pod."""
from __future__ import annotations

import ssl

import aiohttp
from aiohttp import web

from tinykube.api import errors
from tinykube.api.resources import get as get_resource
from tinykube.cluster import ClusterConfig


class AgentStreams:
    def __init__(self, registry, cluster: ClusterConfig):
        self.registry = registry
        self.cluster = cluster
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            pki = self.cluster.data_dir / "pki"
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.check_hostname = False  # node agents are addressed by IP; the CA pins them
            ctx.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        return self._session

    async def agent_url(self, pod: dict) -> str:
        node_name = pod.get("spec", {}).get("nodeName")
        name = pod["metadata"]["name"]
        if not node_name:
            raise errors.bad_request(f'pod {name} does not have a host assigned')
        node = await self.registry.get(get_resource("nodes"), None, node_name)
        st = node.get("status", {})
        port = st.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port")
        addr = next((a["address"] for a in st.get("addresses", []) if a.get("type") == "InternalIP"), None)
        if not port or not addr:
            raise errors.service_unavailable(f'node "{node_name}" has no agent endpoint')
        return f"https://{addr}:{port}"

    async def handle(self, request: web.Request, sub: str, pod: dict) -> web.StreamResponse:
        from . import streams
        url = await self.agent_url(pod)
        return await streams.handle(request, sub, pod, url, self.session)
