"""Retention: what a bundle folder (export dir or inbox) keeps, and what it throws away."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imgsync.bundle.bundledir import BundleDir, bundle_name

VERSIONS = ["sha256:" + str(n) * 64 for n in range(1, 6)]


def bundles_of(folder: Path, ref: str, count: int) -> list[str]:
    """``count`` bundles of ``ref``, oldest first (mtimes a minute apart)."""
    names = []
    for age, version in zip(range(count, 0, -1), VERSIONS, strict=False):
        path = folder / bundle_name(ref, version)
        path.write_bytes(b"x")
        stamp = time.time() - 60 * age
        os.utime(path, (stamp, stamp))
        names.append(path.name)
    return names


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_retention_keeps_the_current_bundle_and_the_newest_older_ones(
    tmp_path: Path, keep: int
) -> None:
    folder = BundleDir(tmp_path)
    names = bundles_of(tmp_path, "a:1", 4)
    other = bundles_of(tmp_path, "b:1", 2)
    current = names[-1]

    removed = folder.prune("a:1", current, keep)

    left = sorted(p.name for p in tmp_path.iterdir())
    newest_older = names[:-1][::-1][: keep - 1]
    assert left == sorted([current, *newest_older, *other])
    assert removed == [n for n in names if n not in left]  # oldest first


def test_a_bundle_newer_than_the_current_one_is_a_later_version_and_stays(
    tmp_path: Path,
) -> None:
    """An apply of v2 must not remove v3's bundle, uploaded while v2 was loading."""
    folder = BundleDir(tmp_path)
    v1, v2, v3 = bundles_of(tmp_path, "a:1", 3)
    assert folder.prune("a:1", v2, keep=1) == [v1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([v2, v3])


def test_retention_of_one_reference_leaves_similar_names_alone(tmp_path: Path) -> None:
    folder = BundleDir(tmp_path)
    (old, current) = bundles_of(tmp_path, "a:1", 2)
    lookalike = tmp_path / (old.removesuffix(".tar") + "x.tar")
    lookalike.write_bytes(b"x")
    folder.prune("a:1", current, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([current, lookalike.name])


def test_old_temp_files_go_and_young_ones_stay(tmp_path: Path) -> None:
    young, old = tmp_path / ".tmp-1234abcd-a.tar", tmp_path / ".tmp-5678abcd-b.tar"
    young.write_bytes(b"upload in flight")
    old.write_bytes(b"left by a crashed upload")
    stamp = time.time() - 3601
    os.utime(old, (stamp, stamp))
    assert BundleDir(tmp_path).clean_temp(older_than=3600) == [old.name]
    assert young.exists() and not old.exists()


def test_only_markers_under_their_final_names_are_markers(tmp_path: Path) -> None:
    # one still arriving (.part-) and one being written (.tmp-) are not markers yet
    for name in ["web_1.marker.json", ".part-db_1.marker.json", ".tmp-1a2b-api_1.marker.json"]:
        (tmp_path / name).write_text("{")
    inbox = BundleDir(tmp_path)
    assert [p.name for p in inbox.marker_paths()] == ["web_1.marker.json"]
    assert list(inbox.marker_signatures()) == ["web_1.marker.json"]


def test_bundles_no_marker_names_go_once_a_day_old_and_the_others_stay(tmp_path: Path) -> None:
    day_old = time.time() - 86400 - 60
    for name in ["web_1.0123456789ab.tar", "gone_1.0123456789ab.tar", "new_1.0123456789ab.tar"]:
        (tmp_path / name).write_bytes(b"x")
    for name in ["web_1.0123456789ab.tar", "gone_1.0123456789ab.tar"]:
        os.utime(tmp_path / name, (day_old, day_old))
    (tmp_path / "web_1.marker.json").write_text("{}")
    removed = BundleDir(tmp_path).clean_orphans(older_than=86400)
    assert removed == ["gone_1.0123456789ab.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "new_1.0123456789ab.tar", "web_1.0123456789ab.tar", "web_1.marker.json",
    ]  # fmt: skip
