"""The state DB and the cycle lock are opened only as the files they name: a symbolic link
planted in the state folder is refused, and its target left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsync.adapters.lock import cycle_lock
from imgsync.adapters.state import StateDB
from imgsync.errors import StateError, StorageError


def test_a_state_db_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    (tmp_path / "state.db").symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        StateDB(tmp_path / "state.db")
    assert target.read_bytes() == b"precious"


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    (tmp_path / "imgsync.lock").symlink_to(target)
    with pytest.raises(StorageError, match="symbolic link"), cycle_lock(tmp_path / "imgsync.lock"):
        pass
    assert target.read_bytes() == b"precious"
