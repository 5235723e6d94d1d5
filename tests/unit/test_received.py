"""A relay reuses the whole bundle its receiver took in as its export — only that one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from imgsync.bundle.bundledir import BundleDir, bundle_name
from imgsync.model import Marker
from imgsync.source.received import adopt

REF = "docker.io/acme/web:1"
VERSION = "sha256:" + "ab" * 32
DATA = b"a whole docker save tarball" * 100


def received(inbox: Path, data: bytes = DATA, **changes: object) -> Marker:
    fields: dict[str, object] = {
        "reference": REF,
        "version": VERSION,
        "layers": ("sha256:" + "cd" * 32,),
        "bundle": bundle_name(REF, VERSION),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created": "2026-12-02T00:00:00Z",
    }
    fields.update(changes)
    marker = Marker(**fields)  # type: ignore[arg-type]
    folder = BundleDir(inbox)
    folder.create()
    (inbox / marker.bundle).write_bytes(data)
    folder.write_marker(marker)
    return marker


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[BundleDir, Path]:
    export = BundleDir(tmp_path / "export")
    export.create()
    return export, tmp_path / "inbox"


def test_the_whole_bundle_of_the_running_version_becomes_the_export_marker_last(
    dirs: tuple[BundleDir, Path],
) -> None:
    export, inbox = dirs
    marker = received(inbox)
    assert adopt(export, inbox, REF, VERSION) == marker
    assert export.read_marker(REF) == marker
    assert export.bundle_path(marker).read_bytes() == DATA
    assert [p.name for p in export.path.iterdir() if p.name.startswith(".")] == []


def test_another_version_than_the_engine_runs_is_not_taken(dirs: tuple[BundleDir, Path]) -> None:
    export, inbox = dirs
    received(inbox)
    assert adopt(export, inbox, REF, "sha256:" + "ee" * 32) is None
    assert export.read_marker(REF) is None


def test_a_thin_bundle_is_not_taken(dirs: tuple[BundleDir, Path]) -> None:
    export, inbox = dirs
    received(inbox, omitted=(0,))
    assert adopt(export, inbox, REF, VERSION) is None
    assert list(export.path.iterdir()) == []


def test_a_bundle_that_does_not_hash_to_its_marker_is_not_taken_and_leaves_no_file(
    dirs: tuple[BundleDir, Path],
) -> None:
    export, inbox = dirs
    marker = received(inbox)
    (inbox / marker.bundle).write_bytes(DATA.replace(b"whole", b"wh0le"))
    assert adopt(export, inbox, REF, VERSION) is None
    assert list(export.path.iterdir()) == []


def test_a_symlink_in_the_inbox_is_not_followed(
    dirs: tuple[BundleDir, Path], tmp_path: Path
) -> None:
    export, inbox = dirs
    marker = received(inbox)
    elsewhere = tmp_path / "elsewhere.tar"
    os.replace(inbox / marker.bundle, elsewhere)
    (inbox / marker.bundle).symlink_to(elsewhere)
    assert adopt(export, inbox, REF, VERSION) is None
    assert list(export.path.iterdir()) == []


def test_no_inbox_marker_means_nothing_to_take(dirs: tuple[BundleDir, Path]) -> None:
    export, inbox = dirs
    inbox.mkdir()
    assert adopt(export, inbox, REF, VERSION) is None
