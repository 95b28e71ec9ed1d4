"""Server-side Table output (meta.k8s.io/v1 Table) for every kind tinykube serves.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells verbatim,
so the columns and the formatting of every cell follow upstream Kubernetes' printers
(pkg/printers/internalversion/printers.go). The API server always generates the wide set of
columns (priority 1 included); kubectl hides priority > 0 columns unless `-o wide`.

Objects are plain JSON dicts as the API returns them (v1 field names).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tinykube.api.resources import Resource

__all__ = ["column_definitions", "row_cells", "to_table", "human_duration", "format_label_selector",
           "format_labels"]

# --------------------------------------------------------------------------------------------
# Durations and timestamps

_NS = 1_000_000_000
_MIN = 60 * _NS
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR
_YEAR = 365 * _DAY


def _human_ns(d: int) -> str:
    """apimachinery duration.HumanDuration for a duration of d nanoseconds."""
    seconds = -((-d) // _NS) if d < 0 else d // _NS  # Go int() truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = d // _MIN
    if minutes < 10:
        s = (d // _NS) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = d // _HOUR
    if hours < 8:
        m = (d // _MIN) % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def human_duration(seconds: float | timedelta) -> str:
    """Exactly apimachinery's duration.HumanDuration: `5s`, `119s`, `3m10s`, `70m`, `3h1m`,
    `47h`, `2d1h`, `8d`, `2y1d`, `8y`; `0s` for up to 2s in the future, `<invalid>` beyond."""
    if isinstance(seconds, timedelta):
        return _human_ns((seconds // timedelta(microseconds=1)) * 1000)
    return _human_ns(int(round(seconds * _NS)))


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t


def _since(value: Any, now: datetime) -> str:
    """translateTimestampSince: human age of an RFC 3339 timestamp, `<unknown>` when unset."""
    t = _parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(now - t)


def _created_at(obj: dict) -> str:
    """The default table's `Created At` cell: creationTimestamp in UTC, RFC 3339."""
    t = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Label helpers (labels.FormatLabels, metav1.FormatLabelSelector)

def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: `a=b,c=d` sorted by key, `<none>` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(sel: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(sel).String(); "" for nil or empty selectors."""
    if not sel:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in sel.get("matchExpressions") or []:
        key, op = e.get("key", ""), e.get("operator", "")
        values = sorted(e.get("values") or [])
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, "!" + key))
        else:
            return "<error>"
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def format_label_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: the selector string, `<none>` when it is empty."""
    s = _selector_string(sel)
    return s or "<none>"


# --------------------------------------------------------------------------------------------
# Column definitions

_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, although "
             "some resources may allow a client to request the generation of an appropriate name "
             "automatically. Name is primarily intended for creation idempotence and configuration "
             "definition. Cannot be updated. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_AGE_DOC = ("CreationTimestamp is a timestamp representing the server time when this object was "
            "created. It is not guaranteed to be set in happens-before order across separate "
            "operations. Clients may not set this value. It is represented in RFC3339 form and is "
            "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/"
            "api-conventions.md#metadata")
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."


def _col(name: str, desc: str, *, type_: str = "string", fmt: str = "", priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": desc, "priority": priority}


def _name_col(priority: int = 0) -> dict:
    return _col("Name", _NAME_DOC, fmt="name", priority=priority)


def _age_col() -> dict:
    return _col("Age", _AGE_DOC)


_COLUMNS: dict[tuple[str, str], list[dict]] = {
    ("", "Pod"): [
        _name_col(),
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col("Restarts", "The number of times the containers in this pod have been restarted and "
                         "when the last container in this pod has restarted."),
        _age_col(),
        _col("IP", "podIP address allocated to the pod. Routable at least within the cluster. "
                   "Empty if not yet allocated.", priority=1),
        _col("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
        _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on "
                               "the node, but it cannot be scheduled right away as preemption "
                               "victims receive their graceful termination periods.", priority=1),
        _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod "
                                "readiness.", priority=1),
    ],
    ("", "Service"): [
        _name_col(),
        _col("Type", "type determines how the Service is exposed."),
        _col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned "
                           "randomly."),
        _col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster "
                            "will also accept traffic for this service."),
        _col("Port(s)", "The list of ports that are exposed by this service."),
        _age_col(),
        _col("Selector", "Route service traffic to pods with label keys and values matching this "
                         "selector.", priority=1),
    ],
    ("", "Endpoints"): [
        _name_col(),
        _col("Endpoints", "The set of all endpoints is the union of all subsets."),
        _age_col(),
    ],
    ("", "Node"): [
        _name_col(),
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        _age_col(),
        _col("Version", "Kubelet Version reported by the node."),
        _col("Internal-IP", "List of addresses reachable to the node.", priority=1),
        _col("External-IP", "List of addresses reachable to the node.", priority=1),
        _col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian "
                         "GNU/Linux 7 (wheezy)).", priority=1),
        _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. "
                               "3.16.0-0.bpo.4-amd64).", priority=1),
        _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime "
                                  "remote API (e.g. containerd://1.4.2).", priority=1),
    ],
    ("", "Event"): [
        _col("Last Seen", "The time at which the most recent occurrence of this event was "
                          "recorded."),
        _col("Type", "Type of this event (Normal, Warning), new types could be added in the "
                     "future"),
        _col("Reason", "This should be a short, machine understandable string that gives the "
                       "reason for the transition into the object's current status."),
        _col("Object", "The object that this event is about."),
        _col("Subobject", "If referring to a piece of an object instead of an entire object, "
                          "this string should contain a valid JSON/Go field access statement.",
             priority=1),
        _col("Source", "The component reporting this event. Should be a short machine "
                       "understandable string.", priority=1),
        _col("Message", "A human-readable description of the status of this operation."),
        _col("First Seen", "The time at which the event was first recorded. (Time of server "
                           "receipt is in TypeMeta.)", priority=1),
        _col("Count", "The number of times this event has occurred.", priority=1),
        _name_col(priority=1),
    ],
    ("", "Namespace"): [
        _name_col(),
        _col("Status", "The status of the namespace"),
        _age_col(),
    ],
    ("", "ConfigMap"): [
        _name_col(),
        _col("Data", "Data contains the configuration data."),
        _age_col(),
    ],
    ("", "Secret"): [
        _name_col(),
        _col("Type", "Used to facilitate programmatic handling of secret data."),
        _col("Data", "Data contains the secret data."),
        _age_col(),
    ],
    ("", "ServiceAccount"): [
        _name_col(),
        _col("Secrets", "Secrets is a list of the secrets in the same namespace that pods "
                        "running using this ServiceAccount are allowed to use."),
        _age_col(),
    ],
    ("apps", "Deployment"): [
        _name_col(),
        _col("Ready", "Number of the pod with ready state"),
        _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that "
                           "have the desired template spec."),
        _col("Available", "Total number of available pods (ready for at least minReadySeconds) "
                          "targeted by this deployment."),
        _age_col(),
        _col("Containers", _CONTAINERS_DOC, priority=1),
        _col("Images", _IMAGES_DOC, priority=1),
        _col("Selector", "Label selector for pods.", priority=1),
    ],
    ("apps", "ReplicaSet"): [
        _name_col(),
        _col("Desired", "Replicas is the number of desired replicas.", type_="integer"),
        _col("Current", "Replicas is the most recently observed number of replicas.",
             type_="integer"),
        _col("Ready", "The number of ready replicas for this replica set.", type_="integer"),
        _age_col(),
        _col("Containers", _CONTAINERS_DOC, priority=1),
        _col("Images", _IMAGES_DOC, priority=1),
        _col("Selector", "Selector is a label query over pods that should match the replica "
                         "count.", priority=1),
    ],
    ("apps", "StatefulSet"): [
        _name_col(),
        _col("Ready", "Number of the pod with ready state"),
        _age_col(),
        _col("Containers", _CONTAINERS_DOC, priority=1),
        _col("Images", _IMAGES_DOC, priority=1),
    ],
    ("apps", "DaemonSet"): [
        _name_col(),
        _col("Desired", "The total number of nodes that should be running the daemon pod.",
             type_="integer"),
        _col("Current", "The number of nodes that are running at least 1 daemon pod and are "
                        "supposed to run the daemon pod.", type_="integer"),
        _col("Ready", "The number of nodes that should be running the daemon pod and have one "
                      "or more of the daemon pod running and ready.", type_="integer"),
        _col("Up-to-date", "The total number of nodes that are running updated daemon pod",
             type_="integer"),
        _col("Available", "The number of nodes that should be running the daemon pod and have "
                          "one or more of the daemon pod running and available.",
             type_="integer"),
        _col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit "
                              "on a node."),
        _age_col(),
        _col("Containers", _CONTAINERS_DOC, priority=1),
        _col("Images", _IMAGES_DOC, priority=1),
        _col("Selector", "A label query over pods that are managed by the daemon set.",
             priority=1),
    ],
    ("apps", "ControllerRevision"): [
        _name_col(),
        _col("Controller", "Controller of the object"),
        _col("Revision", "Revision indicates the revision of the state represented by Data."),
        _age_col(),
    ],
    ("discovery.k8s.io", "EndpointSlice"): [
        _name_col(),
        _col("AddressType", "addressType specifies the type of address carried by this "
                            "EndpointSlice."),
        _col("Ports", "ports specifies the list of network ports exposed by each endpoint in "
                      "this slice."),
        _col("Endpoints", "endpoints is a list of unique endpoints in this slice."),
        _age_col(),
    ],
    ("networking.k8s.io", "Ingress"): [
        _name_col(),
        _col("Class", "The name of the IngressClass resource that should be used for additional "
                      "configuration"),
        _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", "Address is a list containing ingress points for the load-balancer"),
        _col("Ports", "Ports of TLS configurations that open"),
        _age_col(),
    ],
    ("networking.k8s.io", "IngressClass"): [
        _name_col(),
        _col("Controller", "Controller that is responsible for handling this class"),
        _col("Parameters", "A reference to a resource with additional parameters"),
        _age_col(),
    ],
    ("coordination.k8s.io", "Lease"): [
        _name_col(),
        _col("Holder", "holderIdentity contains the identity of the holder of a current lease."),
        _age_col(),
    ],
}
# events.k8s.io Events are the same objects as core Events and print the same way upstream.
_COLUMNS[("events.k8s.io", "Event")] = _COLUMNS[("", "Event")]

_DEFAULT_COLUMNS = [
    _name_col(),
    _col("Created At", _AGE_DOC, type_="date"),
]


def column_definitions(res: Resource) -> list[dict]:
    """The Table columnDefinitions for a resource (every column, priority 1 included)."""
    cols = _COLUMNS.get((res.group, res.kind), _DEFAULT_COLUMNS)
    return [dict(c) for c in cols]


# --------------------------------------------------------------------------------------------
# Cells, one printer per kind

def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict) -> str:
    return _meta(obj).get("name", "")


def _age(obj: dict, now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _containers_cells(template: dict | None) -> tuple[str, str]:
    """layoutContainerCells: names and images of the template's containers, comma-joined."""
    containers = (((template or {}).get("spec") or {}).get("containers")) or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_restartable_init(container: dict | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list | None, ctype: str) -> bool:
    for c in conditions or []:
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return False


def _pod_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = _meta(obj)
    restarts = 0
    restartable_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs: dict[str, dict] = {}
    for c in spec.get("initContainers") or []:
        init_specs[c.get("name", "")] = c
        if _is_restartable_init(c):
            total += 1

    def later(current: datetime | None, cs: dict) -> datetime | None:
        term = ((cs.get("lastState") or {}).get("terminated"))
        if term is None:
            return current
        t = _parse_time(term.get("finishedAt"))
        if t is not None and (current is None or current < t):
            return t
        return current

    n_init = len(spec.get("initContainers") or [])
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        last_restart = later(last_restart, cs)
        restartable = _is_restartable_init(init_specs.get(cs.get("name", "")))
        if restartable:
            restartable_restarts += int(cs.get("restartCount") or 0)
            last_restartable_restart = later(last_restartable_restart, cs)
        state = cs.get("state") or {}
        term = state.get("terminated")
        waiting = state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if restartable and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{int(term.get('exitCode') or 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_restart = later(last_restart, cs)
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            term = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{int(term.get('exitCode') or 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status.get("conditions"), "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_str = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ip = ""
    ips = status.get("podIPs") or []
    if ips:
        pod_ip = ips[0].get("ip", "")
    elif status.get("podIP"):
        pod_ip = status["podIP"]
    gates = spec.get("readinessGates") or []
    gates_str = "<none>"
    if gates:
        true_count = 0
        for g in gates:
            for cond in status.get("conditions") or []:
                if cond.get("type") == g.get("conditionType"):
                    if cond.get("status") == "True":
                        true_count += 1
                    break
        gates_str = f"{true_count}/{len(gates)}"
    return [_name(obj), f"{ready}/{total}", reason, restarts_str, _age(obj, now),
            pod_ip or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_str]


def _pod_row_conditions(obj: dict) -> list[dict] | None:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return None


def _lb_status_string(lb: dict | None) -> str:
    """loadBalancerStatusStringer (wide: the server never clips): sorted unique IPs/hostnames."""
    result = set()
    for ing in (lb or {}).get("ingress") or []:
        if ing.get("ip"):
            result.add(ing["ip"])
        elif ing.get("hostname"):
            result.add(ing["hostname"])
    return ",".join(sorted(result))


def _service_external_ip(obj: dict) -> str:
    spec = obj.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        lb = _lb_status_string((obj.get("status") or {}).get("loadBalancer"))
        if external:
            return ",".join(([lb] if lb else []) + list(external))
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: list | None) -> str:
    pieces = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        if int(p.get("nodePort") or 0) > 0:
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            pieces.append(f"{p.get('port')}/{proto}")
    return ",".join(pieces) or "<none>"


def _service_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    cluster_ip = ips[0] if ips else "<none>"
    return [_name(obj), spec.get("type") or "ClusterIP", cluster_ip, _service_external_ip(obj),
            _service_ports(spec.get("ports")), _age(obj, now), format_labels(spec.get("selector"))]


def format_endpoints(obj: dict, ports: set[str] | None = None) -> str:
    """formatEndpoints: `ip:port` for every port x address, the first 3 then ` + N more...`."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return "<none>"
    out: list[str] = []
    limit = 3
    more = False
    count = 0
    for ss in subsets:
        addrs = ss.get("addresses") or []
        ss_ports = ss.get("ports") or []
        if not ss_ports:
            count += len(addrs)
            for a in addrs:
                if len(out) == limit:
                    more = True
                    break
                out.append(a.get("ip", ""))
            continue
        for port in ss_ports:
            if ports is None or port.get("name", "") in ports:
                count += len(addrs)
                for a in addrs:
                    if len(out) == limit:
                        more = True
                        break
                    out.append(_join_host_port(a.get("ip", ""), port.get("port")))
    ret = ",".join(out)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret


def _endpoints_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), format_endpoints(obj), _age(obj, now)]


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def _endpointslice_cells(obj: dict, now: datetime) -> list:
    limit = 3
    ports: list[str] = []
    more = False
    count = 0
    for p in obj.get("ports") or []:
        if len(ports) < limit:
            if p.get("port") is not None:
                ports.append(str(p["port"]))
            elif p.get("name") is not None:
                ports.append(p["name"])
            else:
                ports.append("*")
        elif len(ports) == limit:
            more = True
        count += 1
    ports_str = _list_with_more(ports, more, count, limit)

    eps: list[str] = []
    more = False
    count = 0
    for ep in obj.get("endpoints") or []:
        for addr in ep.get("addresses") or []:
            if len(eps) < limit:
                eps.append(addr)
            elif len(eps) == limit:
                more = True
            count += 1
    eps_str = _list_with_more(eps, more, count, limit)
    return [_name(obj), obj.get("addressType", ""), ports_str, eps_str, _age(obj, now)]


def _ingress_hosts(rules: list | None) -> str:
    rules = rules or []
    out: list[str] = []
    limit = 3
    more = False
    for r in rules:
        if len(out) == limit:
            more = True
        if not more and r.get("host"):
            out.append(r["host"])
    if not out:
        return "*"
    ret = ",".join(out)
    if more:
        return f"{ret} + {len(rules) - limit} more..."
    return ret


def _ingress_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    cls = spec.get("ingressClassName")
    address = _lb_status_string((obj.get("status") or {}).get("loadBalancer"))
    ports = "80, 443" if spec.get("tls") else "80"
    return [_name(obj), cls if cls is not None else "<none>", _ingress_hosts(spec.get("rules")),
            address, ports, _age(obj, now)]


def _ingressclass_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    params = spec.get("parameters")
    p = "<none>"
    if params is not None:
        p = params.get("kind", "")
        if params.get("apiGroup") is not None:
            p += "." + params["apiGroup"]
        p += "/" + params.get("name", "")
    return [_name(obj), spec.get("controller", ""), p, _age(obj, now)]


def _node_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = None
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c
    states = []
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for k, v in (_meta(obj).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}

    def addr(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    return [_name(obj), ",".join(states), ",".join(sorted(roles)) or "<none>", _age(obj, now),
            info.get("kubeletVersion", ""), addr("InternalIP"), addr("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event_fields(obj: dict) -> dict:
    """Core v1 field names for either a core/v1 or an events.k8s.io/v1 Event."""
    if "regarding" in obj or "note" in obj or obj.get("apiVersion") == "events.k8s.io/v1":
        return {
            "involvedObject": obj.get("regarding") or {},
            "message": obj.get("note") or "",
            "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
            "lastTimestamp": obj.get("deprecatedLastTimestamp"),
            "count": obj.get("deprecatedCount") or 0,
            "source": obj.get("deprecatedSource") or {},
            "eventTime": obj.get("eventTime"),
            "series": obj.get("series"),
            "reportingController": obj.get("reportingController") or "",
            "reportingInstance": obj.get("reportingInstance") or "",
        }
    return {
        "involvedObject": obj.get("involvedObject") or {},
        "message": obj.get("message") or "",
        "firstTimestamp": obj.get("firstTimestamp"),
        "lastTimestamp": obj.get("lastTimestamp"),
        "count": obj.get("count") or 0,
        "source": obj.get("source") or {},
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingController": obj.get("reportingComponent") or obj.get("reportingController") or "",
        "reportingInstance": obj.get("reportingInstance") or "",
    }


def _event_cells(obj: dict, now: datetime) -> list:
    ev = _event_fields(obj)
    if _parse_time(ev["firstTimestamp"]) is not None:
        first = _since(ev["firstTimestamp"], now)
    else:
        first = _since(ev["eventTime"], now)
    last = _since(ev["lastTimestamp"], now) if _parse_time(ev["lastTimestamp"]) else first
    count = int(ev["count"] or 0)
    series = ev["series"]
    if series is not None:
        last = _since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    inv = ev["involvedObject"]
    kind = (inv.get("kind") or "").lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    component = ev["source"].get("component") or ev["reportingController"]
    host = ev["source"].get("host") or ev["reportingInstance"]
    source = f"{component}, {host}" if host else component
    return [last, obj.get("type", ""), obj.get("reason", ""), target, inv.get("fieldPath", ""),
            source, ev["message"].strip(), first, count, _name(obj)]


def _namespace_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), (obj.get("status") or {}).get("phase", ""), _age(obj, now)]


def _configmap_cells(obj: dict, now: datetime) -> list:
    n = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_name(obj), n, _age(obj, now)]


def _secret_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)]


def _serviceaccount_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), len(obj.get("secrets") or []), _age(obj, now)]


def _replicas(spec: dict) -> int:
    r = spec.get("replicas")
    return 1 if r is None else int(r)


def _deployment_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells(spec.get("template"))
    return [_name(obj), f"{int(status.get('readyReplicas') or 0)}/{_replicas(spec)}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            _age(obj, now), names, images, _selector_string(spec.get("selector"))]


def _replicaset_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells(spec.get("template"))
    return [_name(obj), _replicas(spec), int(status.get("replicas") or 0),
            int(status.get("readyReplicas") or 0), _age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


def _statefulset_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells(spec.get("template"))
    return [_name(obj), f"{int(status.get('readyReplicas') or 0)}/{_replicas(spec)}",
            _age(obj, now), names, images]


def _daemonset_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    template = spec.get("template") or {}
    names, images = _containers_cells(template)
    return [_name(obj), int(status.get("desiredNumberScheduled") or 0),
            int(status.get("currentNumberScheduled") or 0), int(status.get("numberReady") or 0),
            int(status.get("updatedNumberScheduled") or 0), int(status.get("numberAvailable") or 0),
            format_labels((template.get("spec") or {}).get("nodeSelector")), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def _controllerrevision_cells(obj: dict, now: datetime) -> list:
    controller = "<none>"
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            api_version = ref.get("apiVersion", "")
            group = api_version.split("/", 1)[0] if "/" in api_version else ""
            kind = ref.get("kind", "")
            gk = f"{kind}.{group}" if group else kind
            controller = f"{gk.lower()}/{ref.get('name', '')}" if gk else ref.get("name", "")
            break
    return [_name(obj), controller, int(obj.get("revision") or 0), _age(obj, now)]


def _lease_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), (obj.get("spec") or {}).get("holderIdentity") or "", _age(obj, now)]


def _default_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), _created_at(obj)]


_PRINTERS: dict[tuple[str, str], Callable[[dict, datetime], list]] = {
    ("", "Pod"): _pod_cells,
    ("", "Service"): _service_cells,
    ("", "Endpoints"): _endpoints_cells,
    ("", "Node"): _node_cells,
    ("", "Event"): _event_cells,
    ("events.k8s.io", "Event"): _event_cells,
    ("", "Namespace"): _namespace_cells,
    ("", "ConfigMap"): _configmap_cells,
    ("", "Secret"): _secret_cells,
    ("", "ServiceAccount"): _serviceaccount_cells,
    ("apps", "Deployment"): _deployment_cells,
    ("apps", "ReplicaSet"): _replicaset_cells,
    ("apps", "StatefulSet"): _statefulset_cells,
    ("apps", "DaemonSet"): _daemonset_cells,
    ("apps", "ControllerRevision"): _controllerrevision_cells,
    ("discovery.k8s.io", "EndpointSlice"): _endpointslice_cells,
    ("networking.k8s.io", "Ingress"): _ingress_cells,
    ("networking.k8s.io", "IngressClass"): _ingressclass_cells,
    ("coordination.k8s.io", "Lease"): _lease_cells,
}


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now


def row_cells(res: Resource, obj: dict, now: datetime | None = None) -> list:
    """The cells of one object's row, one per column of column_definitions(res)."""
    printer = _PRINTERS.get((res.group, res.kind), _default_cells)
    return printer(obj, _now(now))


# --------------------------------------------------------------------------------------------
# The whole Table

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def _row_object(res: Resource, obj: dict, include_object: str) -> dict | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def to_table(res: Resource, objs: list[dict], *, include_object: str = "Metadata",
             resource_version: str = "", continue_token: str = "",
             now: datetime | None = None, with_columns: bool = True) -> dict:
    """A meta.k8s.io/v1 Table of objs.

    include_object is the `includeObject` query value: `Metadata` (the default; rows carry a
    PartialObjectMetadata), `Object` (the full object) or `None` (no object). with_columns=False
    leaves columnDefinitions empty, as upstream does for watch events after the first."""
    if include_object not in INCLUDE_OBJECT_VALUES:
        raise ValueError(f"invalid includeObject {include_object!r}")
    when = _now(now)
    meta: dict[str, Any] = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": row_cells(res, obj, when)}
        if res.group == "" and res.kind == "Pod":
            conds = _pod_row_conditions(obj)
            if conds:
                row["conditions"] = conds
        o = _row_object(res, obj, include_object)
        if o is not None:
            row["object"] = o
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(res) if with_columns else [],
        "rows": rows,
    }
