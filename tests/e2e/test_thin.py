"""Only the layers a peer lacks cross the wire, each verified against its diff ID before
load; a peer that cannot use a thin bundle gets the full one, visibly."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from imgsync.bundle import marker
from imgsync.bundle.bundledir import marker_name
from imgsync.bundle.verify import hash_file
from lab import Lab, build_image

from .helpers import actions, by_peer_image, loads_since, receiver_configs, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024


def test_a_new_version_sends_little_more_than_its_new_layer(lab: Lab) -> None:
    image = "thin/app:1"
    client = lab.source.client()
    build_image(client, image, [("base.bin", 30 * MB), ("app.bin", 1 * MB)], seed=9000)
    lab.write_configs([image])
    assert sync_json(lab)[0] == 0
    new_id = build_image(
        client, image, [("base.bin", 30 * MB), ("app.bin", 1 * MB), ("patch.bin", 4 * MB)],
        seed=9000,
    )  # fmt: skip
    new_layer = 4 * MB
    lab.reset_counters()
    code, report = sync_json(lab)
    assert code == 0, report
    for peer in lab.peers:
        result = by_peer_image(report)[(peer.name, image)]
        assert (result["action"], result["transfer"]) == ("loaded", "thin")
        assert peer.relay.bytes_up < 1.2 * new_layer, (peer.name, peer.relay.bytes_up)
        assert peer.docker.image_id(image) == new_id


def test_two_images_on_one_base_send_the_base_once(lab: Lab) -> None:
    images = ["shared/web:1", "shared/worker:1"]
    client = lab.source.client()
    build_image(client, images[0], [("base.bin", 20 * MB), ("web.bin", MB)], seed=9010)
    build_image(client, images[1], [("base.bin", 20 * MB), ("worker.bin", MB)], seed=9010)
    lab.write_configs(images)
    lab.reset_counters()
    code, report = sync_json(lab)
    assert code == 0, report
    for peer in lab.peers:
        worker = by_peer_image(report)[(peer.name, images[1])]
        assert worker["transfer"] == "thin" and worker["bytes_sent"] < 2 * MB, worker
        assert peer.relay.bytes_up < 20 * MB + 6 * MB, (peer.name, peer.relay.bytes_up)


def test_a_peer_that_lost_a_layer_gets_the_full_bundle_and_the_right_image(lab: Lab) -> None:
    """p1 holds old's layers only through old itself. The plan sends `new` thin, counting
    on them; but applying `old:2` first prunes `old:1`, and the layers go with it. The peer
    refuses the thin bundle, and the source sends the full one in the same cycle."""
    old, new = "fallback/old:1", "fallback/new:1"
    client = lab.source.client()
    build_image(client, old, [("lower.bin", 8 * MB)], seed=9020)
    lab.write_configs([old])
    assert sync_json(lab)[0] == 0
    build_image(client, old, [("other.bin", MB)], seed=9021)  # old moves on
    new_id = build_image(client, new, [("lower.bin", 8 * MB), ("top.bin", MB)], seed=9020)
    lab.write_configs([old, new])
    receiver_configs(lab, prune=True)  # after write_configs, which rewrites them
    try:
        code, report = sync_json(lab)
    finally:
        receiver_configs(lab)
    assert code == 0, report
    for peer in lab.peers:
        result = by_peer_image(report)[(peer.name, new)]
        assert (result["action"], result["transfer"]) == ("loaded", "full"), result
        assert peer.docker.image_id(new) == new_id


def test_a_tampered_layer_is_refused_before_load(lab: Lab) -> None:
    """The bundle on the source rots after its export (its marker rewritten to match, so
    only the layer digests can tell): the peer refuses it and loads nothing."""
    image = "tamper/app:1"
    build_image(lab.source.client(), image, [("payload.bin", 2 * MB)], seed=9030)
    lab.write_configs([image])
    p1 = lab.peer("p1")
    assert sync_json(lab, "--peer", "p2")[0] == 0  # export, and sync another peer
    marker_path = Path(lab.export_dir) / marker_name(image)
    current = marker.loads(marker_path.read_bytes(), "export")
    path = Path(lab.export_dir) / current.bundle
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the big layer
    path.write_bytes(bytes(data))
    sha256, size = hash_file(path)
    marker_path.write_bytes(marker.dumps(replace(current, sha256=sha256, size=size)))

    since = time.time()
    code, report = sync_json(lab, "--peer", "p1")
    assert code == 1
    assert actions(report)[("p1", image)] == "failed"
    error = by_peer_image(report)[("p1", image)]["error"]
    assert "corrupted or tampered" in error and "layer" in error, error
    assert loads_since(lab, since)["p1"] == 0
    assert p1.docker.image_id(image) is None
