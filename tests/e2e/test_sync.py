"""`imgsync sync` on the real lab: a source dockerd, two peers each with dockerd + sshd.

Every test uses its own image names, so the peers' engines carry no coupling between tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import Lab

from .helpers import actions, build, by_peer_image, loads_since, sync_json

pytestmark = pytest.mark.lab


def test_first_sync_loads_exact_images_and_a_second_sync_sends_nothing(lab: Lab) -> None:
    images = ["first/web:1", "first/worker:1"]
    source_ids = {ref: build(lab, ref, seed=i) for i, ref in enumerate(images)}
    lab.write_configs(images)

    code, report = sync_json(lab)
    assert code == 0, report
    assert report["ok"] is True
    assert set(actions(report).values()) == {"loaded"}
    assert len(report["results"]) == 4
    for peer in lab.peers:
        for ref, image_id in source_ids.items():
            assert peer.docker.image_id(ref) == image_id, (peer.name, ref)
            assert by_peer_image(report)[(peer.name, ref)]["version"] == image_id

    lab.reset_counters()
    since = time.time()
    code, report = sync_json(lab)
    assert code == 0, report
    assert set(actions(report).values()) == {"unchanged"}
    assert all(r["bytes_sent"] == 0 for r in report["results"])
    assert loads_since(lab, since) == {"p1": 0, "p2": 0}
    for peer in lab.peers:
        assert peer.relay.bytes_total < 1_000_000, (peer.name, peer.relay.bytes_total)


def test_only_the_image_that_changed_is_exported_sent_and_loaded(lab: Lab) -> None:
    images = ["change/web:1", "change/worker:1"]
    build(lab, images[0], seed=10)
    build(lab, images[1], seed=11)
    lab.write_configs(images)
    assert sync_json(lab)[0] == 0
    export_dir = Path(lab.export_dir)
    worker_files = {p.name: p.stat().st_mtime_ns for p in export_dir.glob("change_worker*")}

    new_id = build(lab, images[0], seed=12, size=3 * 1024 * 1024)
    lab.reset_counters()
    since = time.time()
    code, report = sync_json(lab)

    assert code == 0, report
    assert actions(report) == {
        ("p1", images[0]): "loaded",
        ("p1", images[1]): "unchanged",
        ("p2", images[0]): "loaded",
        ("p2", images[1]): "unchanged",
    }
    assert {p.name: p.stat().st_mtime_ns for p in export_dir.glob("change_worker*")} == worker_files
    assert loads_since(lab, since) == {"p1": 1, "p2": 1}
    for peer in lab.peers:
        assert peer.docker.image_id(images[0]) == new_id
        sent = by_peer_image(report)[(peer.name, images[0])]["bytes_sent"]
        assert 3 * 1024 * 1024 < sent < peer.relay.bytes_up <= sent + 1_000_000
    # one version per image is kept: the superseded bundle is gone on both sides
    assert len(list(export_dir.glob("change_web*.tar"))) == 1
    assert len(list(lab.peers[0].inbox.glob("change_web*.tar"))) == 1


def test_a_corrupted_bundle_is_refused_and_the_next_sync_heals_the_peer(lab: Lab) -> None:
    image = "corrupt/web:1"
    image_id = build(lab, image, seed=20)
    lab.write_configs([image])
    assert sync_json(lab)[0] == 0
    p1 = lab.peer("p1")
    (tarball,) = p1.inbox.glob("corrupt_web*.tar")
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    tarball.write_bytes(bytes(data))
    p1.docker.remove_image(image)

    applied = lab.run_imgsync("apply", "--json", config=p1.config_path)
    assert applied.returncode == 1, applied
    assert '"action": "failed"' in applied.stdout and "sha256" in applied.stdout
    assert p1.docker.image_id(image) is None
    assert not tarball.exists(), "a bundle that failed verification must be removed"

    code, report = sync_json(lab)
    assert code == 0, report
    assert actions(report)[("p1", image)] == "loaded"
    assert actions(report)[("p2", image)] == "unchanged"
    assert p1.docker.image_id(image) == image_id


def test_a_peer_with_a_changed_host_key_is_refused_alone(lab: Lab) -> None:
    image = "hostkey/web:1"
    build(lab, image, seed=30)
    lab.write_configs([image])
    assert sync_json(lab)[0] == 0
    p2 = lab.peer("p2")
    old_id = p2.docker.image_id(image)
    new_id = build(lab, image, seed=31)
    p2.sshd.rotate_host_key()
    try:
        p2.relay.reset()
        since = time.time()
        code, report = sync_json(lab)
        assert code == 1
        assert report["ok"] is False
        assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
        error = by_peer_image(report)[("p2", image)]["error"]
        assert "host key" in error and p2.sshd.fingerprint() in error
        assert lab.peer("p1").docker.image_id(image) == new_id
        assert p2.docker.image_id(image) == old_id
        assert loads_since(lab, since)["p2"] == 0
        assert p2.relay.bytes_up < 10_000, "nothing but the key exchange may reach the peer"
    finally:
        lab.write_known_hosts()


@pytest.mark.parametrize("failure", ["stopped", "silent"])
def test_an_unreachable_peer_fails_in_bounded_time_and_the_other_is_updated(
    lab: Lab, failure: str
) -> None:
    image = f"down-{failure}/web:1"
    new_id = build(lab, image, seed=40 if failure == "stopped" else 41)
    lab.write_configs([image], ssh_overrides={"connect_timeout": 3})
    p2 = lab.peer("p2")
    if failure == "stopped":
        p2.sshd.stop()
    else:
        p2.relay.set_silent(True)  # accepts, then never answers
    try:
        started = time.monotonic()
        code, report = sync_json(lab, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        if failure == "stopped":
            p2.sshd.start()
        else:
            p2.relay.set_silent(False)
    assert code == 1
    assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
    assert "p2" in by_peer_image(report)[("p2", image)]["error"]
    assert lab.peer("p1").docker.image_id(image) == new_id
    p1_work = by_peer_image(report)[("p1", image)]["seconds"]
    assert elapsed < 3 + p1_work + 15, elapsed  # connect timeout + the other peer + start-up
