"""Sessions and applies coordinate on the inbox: a session's inventory removes the temp files
of killed runs only when no apply holds the inbox (an ``apply --watch`` or another source's
apply may be writing its load record through a temp file at that moment); while one does,
only temp files too old to be anyone's go."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsync.adapters import fsutil
from imgsync.adapters.lock import cycle_lock
from imgsync.config import ReceiverConfig
from imgsync.receiver import inbox as inbox_module
from imgsync.receiver import inventory


class NoImages:
    def image_id(self, reference: str) -> str | None:
        return None


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ReceiverConfig:
    @contextlib.contextmanager
    def engine(receiver: ReceiverConfig) -> Iterator[NoImages]:
        yield NoImages()

    monkeypatch.setattr(inventory, "engine_for", engine)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return ReceiverConfig(inbox=str(inbox), docker_host="unix:///nonexistent.sock")


def temp_file(inbox: Path, name: str, age: float = 0.0) -> Path:
    path = inbox / f"{fsutil.TEMP_PREFIX}{name}"
    path.write_bytes(b"half a record")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_an_inventory_leaves_the_temp_file_of_an_apply_running_meanwhile(
    receiver: ReceiverConfig,
) -> None:
    inbox = Path(receiver.inbox)
    with cycle_lock(inbox / inbox_module.APPLY_LOCK):  # an apply is running: it holds the inbox
        writing = temp_file(inbox, "loaded.json")
        abandoned = temp_file(inbox, "old.json", age=inbox_module.TEMP_MAX_AGE + 60)
        inventory.inventory(receiver, ["docker.io/acme/web:1"], clean=True)
    assert writing.exists()
    assert not abandoned.exists()


def test_an_inventory_with_no_apply_running_removes_every_temp_file(
    receiver: ReceiverConfig,
) -> None:
    inbox = Path(receiver.inbox)
    leftover = temp_file(inbox, "loaded.json")
    inventory.inventory(receiver, ["docker.io/acme/web:1"], clean=True)
    assert not leftover.exists()
