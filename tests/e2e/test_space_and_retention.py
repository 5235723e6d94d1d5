"""Disk space and retention on the real lab: a full inbox or export dir fails the image it
cannot hold and leaves everything in place; old bundles and replaced images go away.

Small file systems are tmpfs mounts made for the test (we run as root) and always unmounted.
Seeds are 6000+: the build cache gives equal seeds equal image IDs, and an image that another
test's tag names is (rightly) never pruned.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle.bundledir import BundleDir, marker_name
from imgsync.engines.docker import Engine
from imgsync.errors import StorageError
from imgsync.source.export import export_image
from lab import Lab

from .helpers import actions, build, by_peer_image, receiver_configs, sync_json

pytestmark = pytest.mark.lab

MIB = 1024 * 1024
NUMBERS = re.compile(r"need (\d+) bytes, (\d+) free")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``path`` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def source_table(lab: Lab, images: list[str], **changes: Any) -> dict[str, Any]:
    """The lab's [source] table with ``changes`` (for ``write_configs(extra=...)``)."""
    table = {"docker_host": lab.source.url, "images": images, "export_dir": str(lab.export_dir)}
    return {"source": {**table, **changes}}


def bundles(folder: Path, image: str) -> list[str]:
    stem = marker_name(image).removesuffix(".marker.json")
    return sorted(p.name for p in folder.glob(f"{stem}.*.tar"))


def present(lab: Lab, peer: str, image_id: str) -> bool:
    return any(i.id == image_id for i in lab.peer(peer).docker.client().images.list(all=True))


def test_a_peer_whose_inbox_is_too_small_fails_that_image_alone_and_keeps_running(
    lab: Lab, tmp_path: Path
) -> None:
    image = "space-inbox/web:1"
    v1 = build(lab, image, seed=6060)
    lab.write_configs([image])
    assert sync_json(lab)[0] == 0
    p1, p2 = lab.peer("p1"), lab.peer("p2")

    with tmpfs(tmp_path / "tiny-inbox", "2m") as tiny:
        lab.write_configs([image], peer_overrides={"p1": {"inbox": str(tiny)}})
        v2 = build(lab, image, seed=6061, size=8 * MIB)
        lab.reset_counters()
        code, report = sync_json(lab)

        assert code == 1, report
        assert actions(report) == {("p1", image): "failed", ("p2", image): "loaded"}
        error = by_peer_image(report)[("p1", image)]["error"]
        assert error.startswith(f"peer p1: not enough space in inbox {tiny} for {image}: "), error
        need, free = map(int, NUMBERS.search(error).groups())  # type: ignore[union-attr]
        assert need > 8 * MIB and 0 < free <= 2 * MIB, error
        assert p1.docker.image_id(image) == v1, "p1 keeps running what it had"
        assert p2.docker.image_id(image) == v2
        uploaded = [p.name for p in tiny.iterdir() if p.name != ".imgsync-apply.lock"]
        assert uploaded == [], "nothing was uploaded into the tiny inbox"
        assert p1.relay.bytes_up < 200_000, "only the inventory question went to p1"


def test_an_export_dir_too_small_fails_the_image_and_keeps_the_previous_export(
    lab: Lab, tmp_path: Path
) -> None:
    image = "space-export/web:1"
    v1 = build(lab, image, seed=6062, size=1 * MIB)
    with tmpfs(tmp_path / "small-export", "24m") as export_dir:
        lab.write_configs([image], extra=source_table(lab, [image], export_dir=str(export_dir)))
        code, report = sync_json(lab)
        assert code == 0, report
        before = {p.name: p.read_bytes() for p in export_dir.iterdir()}
        assert len(before) == 2  # v1's bundle and marker

        build(lab, image, seed=6063, size=8 * MIB)
        code, report = sync_json(lab)

        assert code == 1, report
        assert actions(report) == {("p1", image): "failed", ("p2", image): "failed"}
        for result in report["results"]:
            error = result["error"]
            assert f"not enough space in export dir {export_dir} for {image}: " in error, error
            need, free = map(int, NUMBERS.search(error).groups())  # type: ignore[union-attr]
            assert need > 8 * MIB and free < need, error
        assert {p.name: p.read_bytes() for p in export_dir.iterdir()} == before
        for peer in lab.peers:
            assert peer.docker.image_id(image) == v1, peer.name


def test_a_disk_that_fills_during_the_save_leaves_the_previous_export(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = "space-enospc/web:1"
    build(lab, image, seed=6064, size=1 * MIB)
    engine = Engine(lab.source.url)
    try:
        with tmpfs(tmp_path / "filling-export", "12m") as path:
            folder = BundleDir(path)
            monkeypatch.setattr(BundleDir, "free_bytes", lambda self: 10**12)  # looked roomy
            export_image(engine, folder, image)
            before = {p.name: p.read_bytes() for p in path.iterdir()}

            build(lab, image, seed=6065, size=16 * MIB)
            with pytest.raises(StorageError) as failure:
                export_image(engine, folder, image)

            assert "No space left on device" in str(failure.value)
            assert image in str(failure.value)
            assert {p.name: p.read_bytes() for p in path.iterdir()} == before, "no temp left"
    finally:
        engine.close()


def test_retention_keeps_one_bundle_per_side_and_prune_removes_replaced_images(
    lab: Lab,
) -> None:
    image = "retain/web:1"
    lab.write_configs([image])
    receiver_configs(lab, prune=True)
    versions = []
    for seed in (6070, 6071, 6072):
        versions.append(build(lab, image, seed=seed))
        code, report = sync_json(lab)
        assert code == 0, report
        assert set(actions(report).values()) == {"loaded"}

    assert len(bundles(lab.export_dir, image)) == 1
    for peer in lab.peers:
        assert peer.docker.image_id(image) == versions[-1]
        assert len(bundles(peer.inbox, image)) == 1, peer.name
        for old in versions[:-1]:
            assert not present(lab, peer.name, old), f"{peer.name} still holds {old[:19]}"
        dangling = peer.docker.client().images.list(filters={"dangling": True})
        assert not {i.id for i in dangling} & set(versions), peer.name


def test_the_inbox_keeps_as_many_bundles_as_configured(lab: Lab) -> None:
    image = "retain2/web:1"
    lab.write_configs([image])
    receiver_configs(lab, keep=2)
    versions = []
    for seed in (6080, 6081, 6082):
        versions.append(build(lab, image, seed=seed))
        assert sync_json(lab)[0] == 0
    for peer in lab.peers:
        kept = bundles(peer.inbox, image)
        assert len(kept) == 2, (peer.name, kept)
        assert {name.split(".")[-2] for name in kept} == {v[7:19] for v in versions[1:]}


def test_the_export_dir_keeps_as_many_bundles_as_configured(lab: Lab) -> None:
    image = "retain3/web:1"
    lab.write_configs([image], extra=source_table(lab, [image], keep=2))
    for seed in (6083, 6084, 6085):
        build(lab, image, seed=seed)
        assert sync_json(lab)[0] == 0
    assert len(bundles(lab.export_dir, image)) == 2


def test_prune_keeps_an_image_a_container_uses_or_another_tag_names(lab: Lab) -> None:
    image = "retain-used/web:1"
    lab.write_configs([image])
    receiver_configs(lab, prune=True)
    v1 = build(lab, image, seed=6090)
    assert sync_json(lab)[0] == 0
    p1, p2 = lab.peer("p1"), lab.peer("p2")
    container = p1.docker.client().containers.create(image, command=["true"])
    p2.docker.client().images.get(image).tag("retain-used/web", "pinned")
    try:
        v2 = build(lab, image, seed=6091)
        code, report = sync_json(lab)
        assert code == 0, report
        assert set(actions(report).values()) == {"loaded"}
        for peer in lab.peers:
            assert peer.docker.image_id(image) == v2
            assert present(lab, peer.name, v1), (
                f"{peer.name} must keep the image a container uses or a tag names"
            )
        assert p2.docker.image_id("retain-used/web:pinned") == v1
    finally:
        container.remove(force=True)
        p2.docker.remove_image("retain-used/web:pinned")


def test_apply_removes_inbox_temp_files_of_dead_uploads_but_not_young_ones(lab: Lab) -> None:
    lab.write_configs(["temp/web:1"])
    p1 = lab.peer("p1")
    dead, young = p1.inbox / ".tmp-0badf00d-x.tar", p1.inbox / ".tmp-0000cafe-y.tar"
    dead.write_bytes(b"an upload that died two hours ago")
    young.write_bytes(b"an upload still in flight")
    stamp = time.time() - 2 * 3600
    os.utime(dead, (stamp, stamp))
    try:
        done = lab.run_imgsync("apply", config=p1.config_path)
        assert done.returncode == 0, done.stderr
        assert not dead.exists()
        assert young.exists()
    finally:
        young.unlink(missing_ok=True)
        dead.unlink(missing_ok=True)
