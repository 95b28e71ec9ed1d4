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
        md = pod["metadata"]
        kw = {"namespace": md["namespace"], "pod": md["name"]}
        if sub != "portforward":
            kw["container"] = self.container(pod, request.query.get("container"))
        if sub == "log":
            self.check_log_ready(pod, kw["container"], request.query.get("previous") in ("true", "1"))
        url = await self.agent_url(pod)
        handler = {"exec": streams.handle_exec, "attach": streams.handle_attach,
                   "portforward": streams.handle_portforward, "log": streams.proxy_logs}.get(sub)
        if handler is None:
            raise errors.method_not_allowed()
        return await handler(request, url, self.session, **kw)

    @staticmethod
    def container(pod: dict, wanted: str | None) -> str:
        names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        name = pod["metadata"]["name"]
        if not wanted:
            wanted = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
            if not wanted:
                if len(names) != 1:
                    raise errors.bad_request(
                        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")
                wanted = names[0]
        if wanted not in names:
            raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted

    @staticmethod
    def check_log_ready(pod: dict, container: str, previous: bool) -> None:
        """Logs of a container that never started are a 400, worded as the kubelet words it."""
        name = pod["metadata"]["name"]
        for st in pod.get("status", {}).get("containerStatuses", []) or []:
            if st.get("name") != container:
                continue
            if previous and not st.get("lastState", {}).get("terminated"):
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found')
            waiting = st.get("state", {}).get("waiting")
            if waiting and not st.get("lastState", {}).get("terminated") and not previous:
                raise errors.bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {waiting.get("reason", "")}')
            return
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
