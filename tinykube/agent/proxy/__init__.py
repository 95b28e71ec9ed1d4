"""The agent's service proxy: Services and EndpointSlices programmed into nftables."""
from .proxier import Proxier, delete_rules, read_counters
from .render import ProxyConfig, render_all, render_full, render_incremental, render_service

__all__ = ["Proxier", "ProxyConfig", "delete_rules", "read_counters", "render_all",
           "render_full", "render_incremental", "render_service"]
