"""``imgsync status``: what each peer runs, as last seen by a sync, read from the source's
state DB — no network, no engine (``--fleet`` asks each relay for its site's rows too:
:mod:`imgsync.source.fleet`).

StatusRows are peer x image: the configured peers in config order, each with the config's exact
references (``source.images`` without wildcards, limited by the peer's own ``images`` and
groups) and every other image a sync recorded for it that the config still selects (a
label selector can only be told by the engine, so with ``source.labels`` every recorded
image stays). A row is *current* when the peer's version equals the version the source
exported last for that image; ``status`` exits 0 when every row is current.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imgsync import config as cfg
from imgsync import reference
from imgsync.adapters.state import PairRecord, StateDB
from imgsync.model import StatusRow
from imgsync.source import selection


def run(config: cfg.Config, config_path: Path, fleet: bool = False) -> list[StatusRow]:
    """The status rows; with ``fleet``, each relay's own after it (asked over SSH)."""
    rows = _own(config, config_path)
    if not fleet:
        return rows
    from imgsync.source import fleet as relays

    return rows + relays.relay_rows(config)


def _own(config: cfg.Config, config_path: Path) -> list[StatusRow]:
    cfg.require_source(config, config_path)
    state = StateDB.existing(Path(config.state.path))
    if state is None:  # no sync ran on this host yet
        return build_rows(config, [], {})
    try:
        records, exports = state.pair_records(), state.latest_exports()
        return build_rows(config, records, exports, state.peer_engines())
    finally:
        state.close()


def build_rows(
    config: cfg.Config,
    records: list[PairRecord],
    exports: dict[str, tuple[str, float]],
    engines: dict[str, tuple[str | None, str | None]] | None = None,
) -> list[StatusRow]:
    """The status table from the state DB's records (pure); ``engines``: per peer, its
    engine and store as last seen."""
    source = config.source
    selectors = list(source.images) if source else []
    by_label = bool(source and source.labels)
    exact = [s for s in selectors if not reference.is_pattern(s)]
    latest = _latest_versions(records, exports)
    rows = []
    for peer_config in config.peers:
        peer = cfg.peer_settings(config, peer_config)
        mine = {r.reference: r for r in records if r.peer == peer.name}
        reached = any(r.last_success is not None for r in mine.values())
        still = [i for i in mine if by_label or any(reference.match(s, i) for s in selectors)]
        recorded = sorted(image for image in still if image not in exact)
        for image in selection.for_peer(exact + recorded, peer.images):
            record = mine.get(image)
            row = _row(peer.name, image, record, latest.get(image), reached)
            engine, store = (engines or {}).get(peer.name, (None, None))
            rows.append(replace(row, engine=engine, store=store))
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
) -> StatusRow:
    if record is None:
        return StatusRow(peer, image, None, exported, reached)
    failed = record.last_action == "failed"
    return StatusRow(
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


def all_current(rows: list[StatusRow]) -> bool:
    return all(row.current for row in rows)
