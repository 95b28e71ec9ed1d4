"""Objects shaped like the API returns them, for feeding a Zone in tests."""
from __future__ import annotations


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(ns: str, name: str, cluster_ips=("10.96.0.20",), ports=(("http", 80, "TCP"),),
            type_: str = "ClusterIP", external_name: str | None = None) -> dict:
    spec: dict = {"type": type_}
    if type_ == "ExternalName":
        spec["externalName"] = external_name
    else:
        ips = list(cluster_ips)
        spec["clusterIP"] = ips[0] if ips else ""
        spec["clusterIPs"] = ips
        spec["ports"] = [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def headless(ns: str, name: str, ports=(("http", 80, "TCP"),)) -> dict:
    return service(ns, name, cluster_ips=("None",), ports=ports)


def endpoint(ip: str | list, hostname: str | None = None, ready: bool | None = True) -> dict:
    ep: dict = {"addresses": [ip] if isinstance(ip, str) else list(ip)}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpointslice(ns: str, name: str, svc: str, endpoints, ports=(("http", 80, "TCP"),),
                  address_type: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": name,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type,
            "endpoints": list(endpoints),
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}


def ask(handler, name: str, rdtype: str = "A", *, tcp: bool = False, payload: int | None = None,
        want_dnssec: bool = False):
    """Answer a dnspython query through a Handler without sockets (zone-level tests);
    returns the parsed dnspython response."""
    import dns.message
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                               payload=payload or 512, want_dnssec=want_dnssec)
    r = handler.answer(q.to_wire(), tcp)
    if r is None:
        return None
    assert isinstance(r, bytes), "an in-zone answer must not need the network"
    return dns.message.from_wire(r)
