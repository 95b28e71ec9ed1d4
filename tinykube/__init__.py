"""tinykube: a Kubernetes-compatible cluster in Python for Service networking."""
