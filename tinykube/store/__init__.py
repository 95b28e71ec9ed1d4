"""Storage backends behind one interface (base.Store); open_store picks one from a URL."""
from __future__ import annotations

import os
from urllib.parse import parse_qs

from .base import (Event, Expired, KeyExists, KeyNotFound, RevisionMismatch, Store,
                   StoreError, revision_of)

__all__ = ["open_store", "Store", "Event", "StoreError", "KeyExists", "KeyNotFound",
           "RevisionMismatch", "Expired", "revision_of"]

SUPPORTED = ("sqlite:///ABSOLUTE/PATH.db (or a bare file path), "
             "etcd://HOST:PORT[,HOST:PORT...][?prefix=/KEY-PREFIX]")


def open_store(url: str, **options) -> Store:
    """Open the store named by url.

    `sqlite:///abs/path.db` (three slashes then an absolute path) or a bare file path opens
    a SqliteStore; `etcd://host:port[,host2:port2][?prefix=/tinykube-<name>]` an EtcdStore
    speaking HTTP to those endpoints (`etcds://` HTTPS), its keys under the prefix. Keyword
    options go to the store's constructor. Any other scheme is a ValueError.
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
            return _open_etcd(url, "https" if scheme == "etcds" else "http", rest, options)
        else:
            raise ValueError(f"unknown store URL scheme {scheme!r}; supported: {SUPPORTED}")
    else:
        path = url
    from .sqlite import SqliteStore
    return SqliteStore(os.path.abspath(path), **options)


def _open_etcd(url: str, http: str, rest: str, options: dict) -> Store:
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    endpoints = []
    for host in hosts.split(","):
        host = host.strip()
        if not host or "/" in host or "@" in host:
            raise ValueError(f"etcd store URL needs HOST:PORT endpoints separated by commas, "
                             f"like etcd://127.0.0.1:2379?prefix=/tinykube: {url!r}")
        has_port = host.rsplit(":", 1)[-1].isdigit() and (not host.startswith("[")
                                                          or "]:" in host)
        endpoints.append(f"{http}://{host if has_port else host + ':2379'}")
    params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = set(params) - {"prefix"}
    if unknown:
        raise ValueError(f"unknown etcd store URL parameter(s) {sorted(unknown)} "
                         f"(only prefix=): {url!r}")
    prefix = params.get("prefix", [""])[-1]
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"etcd store prefix must start with '/': {url!r}")
    from .etcd import EtcdStore
    return EtcdStore(endpoints, prefix, **options)
