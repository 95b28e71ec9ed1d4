"""Storage backends behind one interface (base.Store); open_store picks one from a URL."""
from __future__ import annotations

import os

from .base import (Event, Expired, KeyExists, KeyNotFound, RevisionMismatch, Store,
                   StoreError, revision_of)

__all__ = ["open_store", "Store", "Event", "StoreError", "KeyExists", "KeyNotFound",
           "RevisionMismatch", "Expired", "revision_of"]

SUPPORTED = "sqlite:///ABSOLUTE/PATH.db (or a bare file path)"


def open_store(url: str, **options) -> Store:
    """Open the store named by url.

    `sqlite:///abs/path.db` (three slashes then an absolute path) or a bare file path opens
    a SqliteStore; keyword options go to its constructor. Any other scheme is a ValueError.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"store URL must be a non-empty string; supported: {SUPPORTED}")
    if "://" in url:
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme == "sqlite":
            if not rest.startswith("/") or rest == "/":
                raise ValueError(f"sqlite store URL needs an absolute path, "
                                 f"like sqlite:///var/lib/tinykube/store.db: {url!r}")
            path = rest
        elif scheme in ("etcd", "etcd3", "etcds"):
            raise ValueError("etcd store not available in this build; supported: " + SUPPORTED)
        else:
            raise ValueError(f"unknown store URL scheme {scheme!r}; supported: {SUPPORTED}")
    else:
        path = url
    from .sqlite import SqliteStore
    return SqliteStore(os.path.abspath(path), **options)
