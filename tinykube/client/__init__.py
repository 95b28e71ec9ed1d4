"""The one client every tinykube component uses: REST calls and list+watch informers.

Nothing but the API server reads the store; components see the cluster only through this.
"""
from .rest import Client, kubeconfig_ssl_context
from .informer import Informer

__all__ = ["Client", "Informer", "kubeconfig_ssl_context"]
