"""The inbox (which others may be able to write) is used safely: names are opened only as the
regular files they name — a planted symbolic link is never followed, a FIFO never waited
on — and a file that cannot fit is refused before a byte of it is written."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from imgsync.bundle.bundledir import BundleDir
from imgsync.bundle.verify import verify
from imgsync.config import ReceiverConfig
from imgsync.errors import StorageError
from imgsync.model import Marker
from imgsync.receiver import receive

REF = "docker.io/acme/web:1"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    return victim


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_receiving_into_a_planted_link_refuses_and_leaves_its_target_alone(
    inbox: Path, outside: Path
) -> None:
    (inbox / ".part-web_1.tar").symlink_to(outside)
    receiver = ReceiverConfig(inbox=str(inbox), docker_host="unix:///nonexistent.sock")
    with pytest.raises(StorageError, match="symbolic link"):
        receive.receive_chunks(receiver, "web_1.tar", 4, 0, iter([b"evil"]), scan=False)
    assert outside.read_bytes() == b"precious"


def test_the_inventory_skips_and_removes_planted_links_and_fifos(inbox: Path) -> None:
    (inbox / ".part-zero.tar").symlink_to("/dev/zero")
    os.mkfifo(inbox / ".part-pipe.tar")
    (inbox / ".part-real.tar").write_bytes(b"half")
    found: list[dict[str, tuple[int, str]]] = []
    asking = threading.Thread(target=lambda: found.append(BundleDir(inbox).partials()), daemon=True)
    asking.start()
    asking.join(10)
    assert not asking.is_alive(), "the inventory hung on a planted name"
    assert found == [{"real.tar": (4, hashlib.sha256(b"half").hexdigest())}]
    assert sorted(p.name for p in inbox.iterdir()) == [".part-real.tar"]


def test_a_bundle_that_is_a_link_is_refused_before_it_is_read(inbox: Path, outside: Path) -> None:
    (inbox / "web_1.tar").symlink_to(outside)
    marker = Marker(REF, "sha256:" + "1" * 64, (), "web_1.tar", 8, "0" * 64, "now")
    with pytest.raises(StorageError, match="symbolic link"):
        verify(inbox / "web_1.tar", marker)


def test_a_marker_that_is_a_link_is_refused(inbox: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "m.json"
    elsewhere.write_text("{}")
    bundles = BundleDir(inbox)
    bundles.marker_path(REF).symlink_to(elsewhere)
    with pytest.raises(StorageError, match="symbolic link"):
        bundles.read_marker(REF)


def test_a_file_larger_than_the_inbox_has_room_for_is_refused_before_a_byte_is_written(
    inbox: Path,
) -> None:
    receiver = ReceiverConfig(inbox=str(inbox), docker_host="unix:///nonexistent.sock")
    with pytest.raises(StorageError, match="not enough space in inbox"):
        receive.receive_chunks(receiver, "web_1.tar", 10**15, 0, iter([b"x" * 100]), scan=False)
    assert list(inbox.iterdir()) == []
