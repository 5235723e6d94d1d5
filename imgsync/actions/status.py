"""``imgsync status``: what each peer runs, as last seen by a sync, read from the source's
state DB — no network, no engine.

Rows are peer x image: the configured peers in config order, each with the config's exact
references (``source.images`` without wildcards, limited by the peer's own ``images`` and
groups) and every other image a sync recorded for it that the config still selects (a
label selector can only be told by the engine, so with ``source.labels`` every recorded
image stays). A row is *current* when the peer's version equals the version the source
exported last for that image; ``status`` exits 0 when every row is current.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgsync import config as cfg
from imgsync.adapters.state import PairRecord, StateDB
from imgsync.render.results import human_bytes, short
from imgsync.source import selection
from imgsync.text import printable_text

NEVER_REACHED = "never reached"
NOT_EXPORTED = "not exported"


@dataclass(frozen=True)
class Row:
    """One peer x image of ``imgsync status``."""

    peer: str
    image: str
    version: str | None  # what the peer ran at its last successful sync of the image
    exported: str | None  # the version the source exported last (None: never)
    reached: bool  # some sync ever succeeded with this peer (any image)
    last_success: float | None = None
    bytes_sent: int | None = None  # of the last sync that moved bytes
    seconds: float | None = None
    error: str | None = None  # the last sync's error, when it failed

    @property
    def current(self) -> bool:
        return self.exported is not None and self.version == self.exported

    def to_json_dict(self) -> dict[str, object]:
        return {
            "peer": self.peer,
            "image": self.image,
            "version": self.version,
            "current": self.current,
            "last_success": iso_time(self.last_success),
            "bytes_sent": self.bytes_sent,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "error": self.error,
        }


def run(config: cfg.Config, config_path: Path) -> list[Row]:
    cfg.require_source(config, config_path)
    state = StateDB.existing(Path(config.state.path))
    if state is None:  # no sync ran on this host yet
        return build_rows(config, [], {})
    try:
        return build_rows(config, state.pair_records(), state.latest_exports())
    finally:
        state.close()


def build_rows(
    config: cfg.Config, records: list[PairRecord], exports: dict[str, tuple[str, float]]
) -> list[Row]:
    """The status table from the state DB's records (pure)."""
    source = config.source
    selectors = list(source.images) if source else []
    by_label = bool(source and source.labels)
    exact = [s for s in selectors if not selection.is_pattern(s)]
    latest = _latest_versions(records, exports)
    rows = []
    for peer_config in config.peers:
        peer = cfg.peer_settings(config, peer_config)
        mine = {r.reference: r for r in records if r.peer == peer.name}
        reached = any(r.last_success is not None for r in mine.values())
        still = [i for i in mine if by_label or any(selection.match(s, i) for s in selectors)]
        recorded = sorted(image for image in still if image not in exact)
        for image in selection.for_peer(exact + recorded, peer.images):
            record = mine.get(image)
            rows.append(_row(peer.name, image, record, latest.get(image), reached))
    return rows


def _latest_versions(
    records: list[PairRecord], exports: dict[str, tuple[str, float]]
) -> dict[str, str]:
    """Per image, the version exported last. A sync records an export only when it writes
    a bundle, so the version its latest results were about counts too when it is newer
    (the export dir outlived the state DB)."""
    newest = dict(exports)
    for r in records:
        if r.last_version is not None and r.last_at > newest.get(r.reference, ("", -1.0))[1]:
            newest[r.reference] = (r.last_version, r.last_at)
    return {image: version for image, (version, _at) in newest.items()}


def _row(
    peer: str, image: str, record: PairRecord | None, exported: str | None, reached: bool
) -> Row:
    if record is None:
        return Row(peer, image, None, exported, reached)
    failed = record.last_action == "failed"
    return Row(
        peer,
        image,
        record.running,
        exported,
        reached,
        last_success=record.last_success,
        bytes_sent=record.bytes_sent,
        seconds=record.seconds,
        error=(record.last_error or "failed") if failed else None,
    )


def all_current(rows: list[Row]) -> bool:
    return all(row.current for row in rows)


def iso_time(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(rows: list[Row]) -> str:
    return json.dumps(
        {"ok": all_current(rows), "peers": [row.to_json_dict() for row in rows]}, indent=2
    )


_HEADER = ("PEER", "IMAGE", "VERSION", "CURRENT", "LAST SYNC OK", "LAST TRANSFER", "ERROR")


def lines(rows: list[Row]) -> list[str]:
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


def _cells(row: Row) -> tuple[str, ...]:
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
    return (row.peer, row.image, version, current, when, transfer, error)


def summary(rows: list[Row]) -> str:
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
