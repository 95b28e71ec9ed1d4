"""/etc/resolv.conf and /etc/hosts for a pod, computed the way the kubelet does."""

from __future__ import annotations

MAX_NAMESERVERS = 3
MAX_SEARCH = 32
MAX_SEARCH_CHARS = 2048


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf text."""
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        f = line.split()
        if f[0] == "nameserver" and len(f) > 1:
            ns.append(f[1])
        elif f[0] in ("search", "domain"):
            search = f[1:]
        elif f[0] == "options":
            opts.extend(f[1:])
    return ns, search, opts


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _merge_options(base: list[str], extra: list[dict]) -> list[str]:
    order: list[str] = []
    vals: dict[str, str | None] = {}
    for o in base:
        name, _, val = o.partition(":")
        if name not in vals:
            order.append(name)
        vals[name] = val if val else None
    for o in extra or []:
        name = o.get("name", "")
        if not name:
            continue
        if name not in vals:
            order.append(name)
        v = o.get("value")
        vals[name] = v if v not in (None, "") else None
    return [n if vals[n] is None else f"{n}:{vals[n]}" for n in order]


def dns_settings(pod: dict, cluster_dns: list[str], cluster_domain: str,
                 host_resolv: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(nameservers, searches, options, warnings) for ``pod``."""
    spec = pod.get("spec", {})
    ns_name = pod.get("metadata", {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_net = bool(spec.get("hostNetwork"))
    warnings: list[str] = []
    mode = "cluster"
    if policy == "None":
        mode = "none"
    elif policy == "Default":
        mode = "host"
    elif policy == "ClusterFirst" and host_net:
        mode = "host"
    if mode == "cluster" and not cluster_dns:
        warnings.append("MissingClusterDNS")
        mode = "host"
    h_ns, h_search, h_opts = parse_resolv_conf(host_resolv)
    if mode == "none":
        nameservers, searches, options = [], [], []
    elif mode == "host":
        nameservers, searches, options = list(h_ns), list(h_search), list(h_opts)
    else:
        nameservers = list(cluster_dns)
        searches = [f"{ns_name}.svc.{cluster_domain}", f"svc.{cluster_domain}",
                    cluster_domain] + h_search
        options = ["ndots:5"]
    cfg = spec.get("dnsConfig") or {}
    nameservers = _dedup(nameservers + list(cfg.get("nameservers") or []))
    searches = _dedup(searches + list(cfg.get("searches") or []))
    options = _merge_options(options, cfg.get("options") or [])
    if len(nameservers) > MAX_NAMESERVERS:
        warnings.append("DNSConfigForming")
        nameservers = nameservers[:MAX_NAMESERVERS]
    searches = [s for s in searches if len(s) <= 253]
    if len(searches) > MAX_SEARCH:
        warnings.append("DNSConfigForming")
        searches = searches[:MAX_SEARCH]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return nameservers, searches, options, warnings


def resolv_conf(pod: dict, cluster_dns: list[str], cluster_domain: str = "cluster.local",
                host_resolv: str = "") -> str:
    nameservers, searches, options, _ = dns_settings(pod, cluster_dns, cluster_domain,
                                                     host_resolv)
    lines = [f"nameserver {n}" for n in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n" if lines else ""


def pod_hostname(pod: dict) -> str:
    spec = pod.get("spec", {})
    name = spec.get("hostname") or pod.get("metadata", {}).get("name", "")
    return name[:63].rstrip("-.") if len(name) > 63 else name


def hosts_file(pod: dict, pod_ips: list[str], cluster_domain: str = "cluster.local",
               host_hosts: str = "") -> str:
    """The kubelet-managed /etc/hosts of a pod."""
    spec = pod.get("spec", {})
    if spec.get("hostNetwork"):
        return "# Kubernetes-managed hosts file (host network).\n" + host_hosts
    hostname = pod_hostname(pod)
    ns = pod.get("metadata", {}).get("namespace") or "default"
    out = ["# Kubernetes-managed hosts file.",
           "127.0.0.1\tlocalhost",
           "::1\tlocalhost ip6-localhost ip6-loopback",
           "fe00::0\tip6-localnet",
           "fe00::0\tip6-mcastprefix",
           "fe00::1\tip6-allnodes",
           "fe00::2\tip6-allrouters"]
    sub = spec.get("subdomain")
    for ip in pod_ips:
        if sub:
            out.append(f"{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}")
        else:
            out.append(f"{ip}\t{hostname}")
    text = "\n".join(out) + "\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            text += f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) + "\n"
    return text
