"""``imgsync status`` printed: aligned columns and a summary line, or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from imgsync.model import StatusRow
from imgsync.render.results import human_bytes, short
from imgsync.text import printable_text

NEVER_REACHED = "never reached"
NOT_EXPORTED = "not exported"


def iso_time(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(rows: list[StatusRow]) -> str:
    """``status --json``: ok when every row is current, then every row."""
    ok = all(row.current for row in rows)
    return json.dumps({"ok": ok, "peers": [_row_json(row) for row in rows]}, indent=2)


def _row_json(row: StatusRow) -> dict[str, object]:
    return {
        "peer": row.peer,
        "image": row.image,
        "version": row.version,
        "current": row.current,
        "last_success": iso_time(row.last_success),
        "bytes_sent": row.bytes_sent,
        "seconds": None if row.seconds is None else round(row.seconds, 3),
        "error": row.error,
        "engine": row.engine,
        "store": row.store,
    }


_HEADER = (
    "PEER", "IMAGE", "VERSION", "CURRENT", "LAST SYNC OK", "LAST TRANSFER", "ENGINE", "ERROR"
)  # fmt: skip


def lines(rows: list[StatusRow]) -> list[str]:
    """Aligned columns, then a one-line summary."""
    table = [_HEADER] + [_cells(row) for row in rows]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(_HEADER) - 1)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        + "  "
        + cells[-1]
        for cells in table
    ]
    return [line.rstrip() for line in out] + [summary(rows)]


def _cells(row: StatusRow) -> tuple[str, ...]:
    if row.version is not None:
        version = short(row.version)
    else:
        version = "-" if row.reached else NEVER_REACHED
    current = NOT_EXPORTED if row.exported is None else ("yes" if row.current else "no")
    transfer = "-"
    if row.bytes_sent is not None:
        transfer = f"{human_bytes(row.bytes_sent)} in {row.seconds or 0.0:.1f}s"
    error = printable_text(" ".join((row.error or "-").split()))  # whatever the peer said
    when = iso_time(row.last_success) or "-"
    return (row.peer, row.image, version, current, when, transfer, engine_cell(row), error)


def engine_cell(row: StatusRow) -> str:
    """``20.10.24 classic``, ``26.1.5 containerd``, ``containerd 1.7.24``, ``podman 4.3.1``."""
    if row.engine is None:
        return "-"
    if row.store is None or row.store in row.engine:
        return printable_text(row.engine, 40)
    return printable_text(f"{row.engine} {row.store}", 40)


def summary(rows: list[StatusRow]) -> str:
    if not rows:
        return "ok: nothing to report yet (no exact image references, no sync recorded)"
    behind = [row for row in rows if not row.current]
    peers = len({row.peer for row in rows})
    if not behind:
        return f"ok: all {len(rows)} peer x image current across {peers} peer(s)"
    names = ", ".join(dict.fromkeys(row.peer for row in behind))
    return (
        f"NOT CURRENT: {len(behind)} of {len(rows)} peer x image across {peers} peer(s) "
        f"(on {names})"
    )
