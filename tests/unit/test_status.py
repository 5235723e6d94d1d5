"""`imgsync status` from the state DB: which rows, what is current, what the table says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imgsync.actions import status
from imgsync.adapters.state import PairRecord, StateDB
from imgsync.config import Config
from imgsync.model import Action, Marker, Result
from imgsync.render import status as shown

WEB, WORKER, OLD_APP = "acme/web:1", "acme/worker:1", "acme/old:1"
V1, V2, V3 = ("sha256:" + c * 64 for c in "123")


def config(images: list[str], **source: Any) -> Config:
    peers = [{"name": "edge-1", "host": "192.0.2.1"}, {"name": "edge-2", "host": "192.0.2.2"}]
    return Config.model_validate({"source": {"images": images, **source}, "peers": peers})


def record(peer: str, image: str, **fields: Any) -> PairRecord:
    values: dict[str, Any] = {
        "last_at": 100.0, "last_action": "unchanged", "last_error": None, "last_version": V1,
        "running": V1, "last_success": 100.0, "bytes_sent": None, "seconds": None,
    }  # fmt: skip
    return PairRecord(peer, image, **{**values, **fields})


def marker(reference: str, version: str) -> Marker:
    return Marker(reference, version, (), "b.tar", 1, "0" * 64, "2024-01-01T00:00:00Z")


def test_a_peer_is_current_when_it_runs_the_version_exported_last() -> None:
    rows = status.build_rows(
        config(["acme/web:1"]),
        [record("edge-1", WEB, running=V2), record("edge-2", WEB, running=V1)],
        {WEB: (V2, 150.0)},
    )
    assert [(r.peer, r.image, r.version, r.current) for r in rows] == [
        ("edge-1", WEB, V2, True),
        ("edge-2", WEB, V1, False),
    ]
    assert not status.all_current(rows)
    assert status.all_current(rows[:1])


def test_a_failed_last_sync_shows_its_error_and_the_version_of_the_last_success() -> None:
    down = record(
        "edge-2", WEB, last_at=200.0, last_action="failed", last_version=V2,
        last_error="peer edge-2: cannot connect", running=V1, last_success=100.0,
    )  # fmt: skip
    (edge1, edge2) = status.build_rows(
        config(["acme/web:1"]), [record("edge-1", WEB, running=V2), down], {WEB: (V2, 150.0)}
    )
    assert edge1.error is None and edge1.current
    assert (edge2.version, edge2.current, edge2.error) == (V1, False, "peer edge-2: cannot connect")
    assert edge2.last_success == 100.0


def test_an_unchanged_image_stays_current_while_its_peer_is_down() -> None:
    down = record("edge-1", WEB, last_at=200.0, last_action="failed", last_error="unreachable")
    (row,) = status.build_rows(config(["acme/web:1"]), [down], {WEB: (V1, 50.0)})[:1]
    assert row.current and row.error == "unreachable"


def test_configured_images_show_for_peers_never_reached_and_images_never_exported() -> None:
    rows = status.build_rows(config(["acme/web:1", "acme/*:2"]), [], {})
    assert [(r.peer, r.image) for r in rows] == [("edge-1", WEB), ("edge-2", WEB)]
    assert all(r.version is None and not r.reached and r.exported is None for r in rows)
    lines = shown.lines(rows)
    assert "never reached" in lines[1] and "not exported" in lines[1]
    assert lines[-1].startswith("NOT CURRENT: 2 of 2")


def test_a_peer_that_was_reached_shows_no_version_for_an_image_it_never_got() -> None:
    failed = record("edge-1", WORKER, last_action="failed", running=None, last_success=None)
    rows = status.build_rows(
        config(["acme/web:1", "acme/worker:1"]),
        [record("edge-1", WEB), failed],
        {WEB: (V1, 50.0), WORKER: (V2, 60.0)},
    )
    by_key = {(r.peer, r.image): r for r in rows}
    assert by_key[("edge-1", WORKER)].reached and by_key[("edge-1", WORKER)].error == "failed"
    assert not by_key[("edge-2", WORKER)].reached
    cells = {line.split()[0] + " " + line.split()[1]: line for line in shown.lines(rows)[1:-1]}
    assert cells[f"edge-1 {WORKER}"].split()[2] == "-"
    assert "never reached" in cells[f"edge-2 {WORKER}"]


def test_recorded_images_the_config_no_longer_selects_are_left_out_unless_labels_select() -> None:
    records = [record("edge-1", WEB), record("edge-1", OLD_APP), record("ghost", WEB)]
    by_name = status.build_rows(config(["acme/web:1"]), records, {WEB: (V1, 1.0)})
    assert [(r.peer, r.image) for r in by_name] == [("edge-1", WEB), ("edge-2", WEB)]
    by_glob = status.build_rows(config(["acme/*"]), records, {WEB: (V1, 1.0)})
    assert [(r.peer, r.image) for r in by_glob] == [("edge-1", OLD_APP), ("edge-1", WEB)]
    by_label = status.build_rows(config([], labels=["imgsync"]), records, {WEB: (V1, 1.0)})
    assert {r.image for r in by_label} == {WEB, OLD_APP}


def test_a_peer_limited_to_some_images_shows_only_those() -> None:
    limited = Config.model_validate(
        {
            "source": {"images": ["acme/web:1", "acme/worker:1"]},
            "peers": [{"name": "edge-1", "host": "192.0.2.1", "images": ["acme/worker:*"]}],
        }
    )
    assert [r.image for r in status.build_rows(limited, [], {})] == [WORKER]


def test_a_version_distributed_after_the_last_recorded_export_counts_as_exported() -> None:
    newer = record("edge-1", WEB, last_at=300.0, last_version=V3, running=V3)
    (row,) = status.build_rows(config(["acme/web:1"]), [newer], {WEB: (V2, 200.0)})[:1]
    assert row.exported == V3 and row.current


def test_json_has_one_object_per_row_with_utc_times() -> None:
    moved = record("edge-1", WEB, last_success=0.0, bytes_sent=2_000_000, seconds=1.23456)
    rows = status.build_rows(config(["acme/web:1"]), [moved], {WEB: (V1, 1.0)})
    document = json.loads(shown.to_json(rows))
    assert document["ok"] is False
    assert document["peers"][0] == {
        "peer": "edge-1", "image": WEB, "version": V1, "current": True,
        "last_success": "1970-01-01T00:00:00Z", "bytes_sent": 2_000_000, "seconds": 1.235,
        "error": None, "engine": None, "store": None,
    }  # fmt: skip
    assert document["peers"][1]["last_success"] is None


def test_the_table_is_aligned_and_ends_with_a_summary() -> None:
    moved = record("edge-1", WEB, bytes_sent=2_000_000, seconds=1.5)
    rows = status.build_rows(config(["acme/web:1"]), [moved, record("edge-2", WEB)], {WEB: (V1, 1)})
    header, first, second, summary = shown.lines(rows)
    assert header.split()[:3] == ["PEER", "IMAGE", "VERSION"]
    assert header.index("VERSION") == first.index("111111111111") == second.index("111111111111")
    assert "2.0 MB in 1.5s" in first
    assert summary == "ok: all 2 peer x image current across 2 peer(s)"


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    return StateDB(tmp_path / "state.db")


def result(peer: str, action: Action, version: str | None, sent: int = 0, **kw: Any) -> Result:
    return Result(peer, WEB, version, action, bytes_sent=sent, seconds=sent / 1e6, **kw)


def test_the_state_db_gives_the_last_result_the_last_success_and_the_last_transfer(
    db: StateDB,
) -> None:
    db.record_export(marker(WEB, V1))
    db.record_results("r1", [result("edge-1", Action.LOADED, V1, sent=5_000_000)])
    db.record_results("r2", [result("edge-1", Action.UNCHANGED, V1)])
    db.record_export(marker(WEB, V2))
    db.record_results("r3", [result("edge-1", Action.FAILED, V2, sent=1_000, error="cut off")])
    db.record_results("r4", [result("edge-1", Action.FAILED, V2, error="unreachable")])

    (pair,) = db.pair_records()
    assert (pair.peer, pair.reference) == ("edge-1", WEB)
    assert (pair.last_action, pair.last_error, pair.last_version) == ("failed", "unreachable", V2)
    assert pair.running == V1 and pair.last_success is not None
    assert (pair.bytes_sent, pair.seconds) == (1_000, 0.001)
    assert db.latest_exports()[WEB][0] == V2


def test_status_reads_no_state_db_as_nothing_synced_and_creates_none(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    assert StateDB.existing(path) is None
    assert not path.parent.exists()


def test_each_row_names_its_peers_engine_as_last_seen() -> None:
    rows = status.build_rows(
        config(["acme/web:1"]),
        [record("edge-1", WEB), record("edge-2", WEB)],
        {WEB: (V1, 1)},
        {"edge-1": ("containerd 1.7.24", "containerd"), "edge-2": ("20.10.24", "classic")},
    )
    assert [(r.peer, r.engine, r.store) for r in rows] == [
        ("edge-1", "containerd 1.7.24", "containerd"), ("edge-2", "20.10.24", "classic")
    ]  # fmt: skip
    table = "\n".join(shown.lines(rows))
    assert "containerd 1.7.24" in table and "20.10.24 classic" in table
    assert json.loads(shown.to_json(rows))["peers"][0]["engine"] == "containerd 1.7.24"


def test_the_state_db_keeps_each_peers_engine_from_its_last_inventory(db: StateDB) -> None:
    docker = {"engine": "20.10.24", "store": "classic"}
    k8s = {"engine": "containerd 1.7.24", "store": "containerd"}
    db.record_results("r1", [result("edge-1", Action.LOADED, V1, **docker)])
    down = result("edge-2", Action.FAILED, None, error="unreachable")
    db.record_results("r2", [result("edge-1", Action.UNCHANGED, V1, **k8s), down])
    assert db.peer_engines() == {"edge-1": ("containerd 1.7.24", "containerd")}


def test_a_format_1_state_db_gains_the_engines_table_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    old = StateDB(path)
    old.record_results("r1", [result("edge-1", Action.LOADED, V1, sent=10)])
    old.close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE peer_engines")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    migrated = StateDB(path)
    assert [p.running for p in migrated.pair_records()] == [V1]
    migrated.record_results("r2", [result("edge-1", Action.UNCHANGED, V1, engine="podman 4.3.1",
                                          store="podman")])  # fmt: skip
    assert migrated.peer_engines() == {"edge-1": ("podman 4.3.1", "podman")}
