"""Container log files: one line per output line, ``<RFC3339Nano> <stream> F <text>``."""

from __future__ import annotations

import datetime
from pathlib import Path


def parse_time(ts: str) -> datetime.datetime:
    """Parse RFC3339 / RFC3339Nano (Python keeps microseconds)."""
    ts = ts.strip()
    if ts.endswith("Z"):
        ts = ts[:-1] + "+00:00"
    main, plus, tz = ts.partition("+")
    if not plus:
        idx = ts.rfind("-")
        main, tz = ts[:idx], ts[idx + 1:]
        sign = "-"
    else:
        sign = "+"
    if "." in main:
        base, frac = main.split(".", 1)
        main = base + "." + (frac + "000000")[:6]
    return datetime.datetime.fromisoformat(f"{main}{sign}{tz}")


def parse_line(line: str) -> tuple[str, str, str] | None:
    """(timestamp, stream, text) of one stored line."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4:
        if len(parts) == 3:
            return parts[0], parts[1], ""
        return None
    return parts[0], parts[1], parts[3]


def read_log(path: Path, timestamps: bool = False, since: datetime.datetime | None = None,
             tail_lines: int | None = None, limit_bytes: int | None = None,
             stream: str | None = None) -> bytes:
    """The log as ``kubectl logs`` prints it."""
    try:
        raw = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return b""
    out: list[str] = []
    for line in raw:
        p = parse_line(line)
        if p is None:
            continue
        ts, st, text = p
        if stream and st != stream:
            continue
        if since is not None:
            try:
                if parse_time(ts) < since:
                    continue
            except ValueError:
                pass
        out.append(f"{ts} {text}\n" if timestamps else text + "\n")
    if tail_lines is not None:
        out = out[-tail_lines:] if tail_lines > 0 else []
    data = "".join(out).encode()
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data
