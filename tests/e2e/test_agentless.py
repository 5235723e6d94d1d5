"""Agentless peers on the real lab: p2 runs only sshd and dockerd as far as imgsync knows
(its ``apply_command`` is ``false``, so any use of imgsync there fails); the source does the
peer's part over SSH with docker and coreutils.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle.bundledir import BundleDir
from imgsync.reference import file_stem
from lab import Lab

from .helpers import actions, build, by_peer_image, loads_since, sync_json

pytestmark = pytest.mark.lab

TIMEOUT = 600  # the machine is shared: other labs run beside this one


def agentless_p2(lab: Lab, **changes: Any) -> dict[str, dict[str, Any]]:
    """p2 as an agentless peer, its docker CLI pointed at p2's own dockerd."""
    docker = f"docker -H {lab.peer('p2').docker.url}"
    return {
        "p2": {"mode": "agentless", "apply_command": "false", "docker_command": docker, **changes}
    }


def leftovers(lab: Lab, image: str) -> list[str]:
    """Files p2's inbox holds for ``image``, partial uploads included."""
    stem = file_stem(image)
    return sorted(p.name for p in lab.peer("p2").inbox.iterdir() if stem in p.name)


def test_an_agentless_peer_gets_exact_images_once_and_then_new_versions(lab: Lab) -> None:
    images = ["agentless/web:1", "agentless/worker:1"]
    source_ids = {ref: build(lab, ref, seed=13000 + i) for i, ref in enumerate(images)}
    # zstd is what p1 gets; p2 cannot inflate it without imgsync, so it is sent raw
    lab.write_configs(images, peer_overrides=agentless_p2(lab, compression="zstd"))

    p2 = lab.peer("p2")
    p2.relay.reset()
    code, report = sync_json(lab, timeout=TIMEOUT)
    assert code == 0, report
    assert set(actions(report).values()) == {"loaded"}, report
    exported = BundleDir(Path(lab.export_dir))
    for ref, image_id in source_ids.items():
        assert p2.docker.image_id(ref) == image_id, ref
        assert lab.peer("p1").docker.image_id(ref) == image_id, ref
        result = by_peer_image(report)[("p2", ref)]
        marker = exported.read_marker(ref)
        assert marker is not None
        assert result["version"] == image_id
        assert result["transfer"] == "full" and result["bytes_sent"] == marker.size
        assert leftovers(lab, ref) == [], "an agentless peer keeps no bundles"
    bundles = sum(m.size for m in map(exported.read_marker, source_ids) if m is not None)
    assert bundles <= p2.relay.bytes_up < bundles * 1.05 + 1024 * 1024  # raw: no zstd for p2

    since = time.time()
    p2.relay.reset()
    code, report = sync_json(lab, timeout=TIMEOUT)
    assert code == 0, report
    assert set(actions(report).values()) == {"unchanged"}, report
    assert all(r["bytes_sent"] == 0 for r in report["results"])
    assert p2.relay.bytes_up < 64 * 1024, "an unchanged agentless peer is only asked"
    assert p2.docker.events_since(since, "load") == []

    new_id = build(lab, images[0], seed=13002, size=3 * 1024 * 1024)
    since = time.time()
    code, report = sync_json(lab, timeout=TIMEOUT)
    assert code == 0, report
    assert actions(report) == {
        ("p1", images[0]): "loaded",
        ("p1", images[1]): "unchanged",
        ("p2", images[0]): "loaded",
        ("p2", images[1]): "unchanged",
    }
    assert loads_since(lab, since) == {"p1": 1, "p2": 1}
    assert p2.docker.image_id(images[0]) == new_id
    assert p2.docker.image_id(images[1]) == source_ids[images[1]]
    assert leftovers(lab, images[0]) == []


def test_a_bundle_that_does_not_match_its_marker_is_never_loaded_and_then_healed(
    lab: Lab,
) -> None:
    image = "agentless-corrupt/web:1"
    old_id = build(lab, image, seed=13010)
    lab.write_configs([image], peer_overrides=agentless_p2(lab))
    assert sync_json(lab, timeout=TIMEOUT)[0] == 0
    new_id = build(lab, image, seed=13011)
    code, report = sync_json(lab, "--peer", "p1", timeout=TIMEOUT)  # exports the new version
    assert code == 0, report
    exported = BundleDir(Path(lab.export_dir))
    marker = exported.read_marker(image)
    assert marker is not None and marker.version == new_id
    tarball = exported.bundle_path(marker)
    try:
        data = bytearray(tarball.read_bytes())
        data[len(data) // 2] ^= 0x01  # same size: the source keeps its marker and sends this
        tarball.write_bytes(bytes(data))

        since = time.time()
        code, report = sync_json(lab, timeout=TIMEOUT)
        assert code == 1, report
        assert actions(report) == {("p1", image): "unchanged", ("p2", image): "failed"}
        error = by_peer_image(report)[("p2", image)]["error"]
        assert "p2" in error and "sha256" in error, error
        p2 = lab.peer("p2")
        assert p2.docker.image_id(image) == old_id
        assert p2.docker.events_since(since, "load") == []
        assert leftovers(lab, image) == []
    finally:  # the next export writes it again, intact
        tarball.unlink(missing_ok=True)
        exported.marker_path(image).unlink(missing_ok=True)

    code, report = sync_json(lab, timeout=TIMEOUT)
    assert code == 0, report
    assert actions(report) == {("p1", image): "unchanged", ("p2", image): "loaded"}
    assert lab.peer("p2").docker.image_id(image) == new_id
    assert leftovers(lab, image) == []


def test_an_agentless_peer_with_a_wrong_docker_command_fails_alone(lab: Lab) -> None:
    image = "agentless-nodocker/web:1"
    new_id = build(lab, image, seed=13020)
    overrides = agentless_p2(lab, docker_command="/nonexistent/docker", retry_wait=1)
    lab.write_configs([image], peer_overrides=overrides)

    code, report = sync_json(lab, timeout=TIMEOUT)
    assert code == 1, report
    assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
    error = by_peer_image(report)[("p2", image)]["error"]
    assert "peer p2" in error and "/nonexistent/docker" in error, error
    assert lab.peer("p1").docker.image_id(image) == new_id
    assert lab.peer("p2").docker.image_id(image) is None
