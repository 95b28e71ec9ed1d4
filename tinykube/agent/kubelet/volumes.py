"""Pod volumes on disk: emptyDir, configMap, secret, downwardAPI, projected, hostPath."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

from . import envvars


def _atomic_write(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Kubernetes' AtomicWriter layout: ``..<ts>/`` data, ``..data`` link, per-key links."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = "..%s" % time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime()) + \
        f".{time.time_ns() % 10**9}"
    data_dir = target / stamp
    data_dir.mkdir()
    for rel, (content, mode) in files.items():
        p = data_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        os.chmod(p, mode)
    tmp_link = target / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(stamp, tmp_link)
    old = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
    os.replace(tmp_link, target / "..data")
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink() and not link.exists():
            os.symlink(f"..data/{top}", link)
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)


def _items(data: dict[str, bytes], items: list[dict] | None, default_mode: int
           ) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for it in items:
        if it.get("key") in data:
            out[it.get("path") or it["key"]] = (data[it["key"]], it.get("mode", default_mode))
    return out


def _downward_files(pod: dict, items: list[dict], mode: int) -> dict[str, tuple[bytes, int]]:
    out = {}
    for it in items or []:
        if "fieldRef" in it:
            val = envvars.field_ref(pod, it["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in it:
            ref = it["resourceFieldRef"]
            cname = ref.get("containerName")
            cont = next((c for c in pod.get("spec", {}).get("containers", [])
                         if c.get("name") == cname), {})
            val = envvars.resource_field_ref(pod, cont, ref)
        else:
            continue
        out[it["path"]] = (val.encode(), it.get("mode", mode))
    return out


def _cm_data(cm: dict) -> dict[str, bytes]:
    d = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    d.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return d


def _secret_data(sec: dict) -> dict[str, bytes]:
    d = {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}
    d.update({k: v.encode() for k, v in (sec.get("stringData") or {}).items()})
    return d


def prepare(pod: dict, vol: dict, path: Path, configmaps: dict, secrets: dict) -> Path:
    """Create or refresh the volume's directory; returns the host path to bind."""
    if "hostPath" in vol:
        hp = Path(vol["hostPath"].get("path", "/"))
        t = vol["hostPath"].get("type", "")
        if t == "DirectoryOrCreate":
            hp.mkdir(parents=True, exist_ok=True)
        elif t == "FileOrCreate" and not hp.exists():
            hp.touch()
        return hp
    if "configMap" in vol:
        src = vol["configMap"]
        cm = configmaps.get(src.get("name", ""))
        if cm is None and not src.get("optional"):
            raise envvars.ConfigError(f'configmap "{src.get("name")}" not found')
        _atomic_write(path, _items(_cm_data(cm or {}), src.get("items"),
                                   src.get("defaultMode", 0o644)))
        return path
    if "secret" in vol:
        src = vol["secret"]
        sec = secrets.get(src.get("secretName", ""))
        if sec is None and not src.get("optional"):
            raise envvars.ConfigError(f'secret "{src.get("secretName")}" not found')
        _atomic_write(path, _items(_secret_data(sec or {}), src.get("items"),
                                   src.get("defaultMode", 0o644)))
        return path
    if "downwardAPI" in vol:
        src = vol["downwardAPI"]
        _atomic_write(path, _downward_files(pod, src.get("items"), src.get("defaultMode",
                                                                            0o644)))
        return path
    if "projected" in vol:
        src = vol["projected"]
        mode = src.get("defaultMode", 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for s in src.get("sources") or []:
            if "configMap" in s:
                cm = configmaps.get(s["configMap"].get("name", "")) or {}
                files.update(_items(_cm_data(cm), s["configMap"].get("items"), mode))
            elif "secret" in s:
                sec = secrets.get(s["secret"].get("name", "")) or {}
                files.update(_items(_secret_data(sec), s["secret"].get("items"), mode))
            elif "downwardAPI" in s:
                files.update(_downward_files(pod, s["downwardAPI"].get("items"), mode))
            elif "serviceAccountToken" in s:
                files[s["serviceAccountToken"].get("path", "token")] = (b"", mode)
        _atomic_write(path, files)
        return path
    # emptyDir and anything else: a plain per-pod directory
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)
    return path
