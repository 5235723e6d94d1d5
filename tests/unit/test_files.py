"""Files are replaced whole or not at all; state carries a format number."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from imgsync.adapters import fsutil
from imgsync.adapters.state import StateDB
from imgsync.errors import StateError
from imgsync.model import Action, Result


def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "m.json"
    fsutil.write_atomic(final, b"old")
    with pytest.raises(RuntimeError), fsutil.atomic_writer(final) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("killed")
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_written_files_are_not_world_readable(tmp_path: Path) -> None:
    final = tmp_path / "m.json"
    fsutil.write_atomic(final, b"x")
    assert stat.S_IMODE(final.stat().st_mode) & 0o007 == 0


def test_state_records_results_and_the_last_known_version(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    v = "sha256:" + "1" * 64
    db.record_results(
        "r1",
        [
            Result("p1", "a:1", v, Action.LOADED, 10, 1.0),
            Result("p2", "a:1", v, Action.FAILED, 0, 0.1, "host key"),
        ],
    )
    assert db.peer_versions("p1") == {"a:1": v}
    assert db.peer_versions("p2") == {}
    db.close()
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600


def test_a_state_db_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="format 99"):
        StateDB(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="unusable"):
        StateDB(path)
