"""Agentless peers on both image stores: p1 on the host's Docker 20.10 (classic store), p2 on
Docker 26 with the containerd store, both agentless (``apply_command`` is ``false``: no
imgsync runs there). On p2 the image ID after a load is a manifest digest, never the
version, and nothing on the peer records what was loaded: the source must still see the
same image (same layers, same runtime config) and leave it alone.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imgsync.model import runtime_config
from lab import Lab, build_image
from lab.cluster import ENGINE_26, ENGINE_HOST

from .helpers import actions, by_peer_image, loads_since, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024
CLASSIC, CONTAINERD = "p1", "p2"
TIMEOUT = 600  # the machine is shared: other labs run beside this one


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, docker26: None) -> Iterator[Lab]:
    the_lab = Lab(
        tmp_path_factory.mktemp("agentless-engines"),
        peers=2,
        source_engine=ENGINE_HOST,
        peer_engines=[ENGINE_HOST, ENGINE_26],
    )
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


def agentless(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every peer agentless, its docker CLI pointed at its own dockerd."""
    return {
        peer.name: {
            "mode": "agentless",
            "apply_command": "false",
            "docker_command": shlex.join(["docker", "-H", peer.docker.url]),
        }
        for peer in lab.peers
    }


def _identity(client: Any, ref: str) -> tuple[tuple[str, ...], Any]:
    """What makes two images the same on any engine: their diff IDs and runtime config."""
    attrs = client.images.get(ref).attrs
    runtime = runtime_config(attrs.get("Config"), attrs.get("Architecture"), attrs.get("Os"))
    return tuple(attrs["RootFS"]["Layers"]), runtime


def test_agentless_peers_on_both_stores_load_once_then_leave_the_image_alone(
    fleet: Lab,
) -> None:
    image = "agentless-stores/app:1"
    source = fleet.source.client()
    version = build_image(source, image, [("base.bin", 4 * MB), ("app.bin", MB)], seed=8100)
    fleet.write_configs([image], peer_overrides=agentless(fleet))

    since = time.time()
    code, report = sync_json(fleet, timeout=TIMEOUT)
    assert code == 0, report
    assert actions(report) == {(CLASSIC, image): "loaded", (CONTAINERD, image): "loaded"}
    want = _identity(source, image)
    for peer in fleet.peers:
        assert _identity(peer.docker.client(), image) == want, peer.name
        assert by_peer_image(report)[(peer.name, image)]["version"] == version
    assert loads_since(fleet, since) == {CLASSIC: 1, CONTAINERD: 1}
    # the classic peer's ID is the version; the containerd peer's is its own manifest digest
    assert fleet.peer(CLASSIC).docker.image_id(image) == version
    assert fleet.peer(CONTAINERD).docker.image_id(image) != version
    # what each peer's Docker is, from `docker info` through its docker_command
    assert report["peers"][CLASSIC]["store"] == "classic", report["peers"]
    assert report["peers"][CONTAINERD]["store"] == "containerd", report["peers"]
    assert report["peers"][CONTAINERD]["engine"].startswith("26."), report["peers"]

    since = time.time()
    fleet.reset_counters()
    code, report = sync_json(fleet, timeout=TIMEOUT)
    assert code == 0, report
    assert set(actions(report).values()) == {"unchanged"}, report
    assert all(row["bytes_sent"] == 0 for row in report["results"]), report
    assert loads_since(fleet, since) == {CLASSIC: 0, CONTAINERD: 0}
    assert all(p.relay.bytes_up < 64 * 1024 for p in fleet.peers), [
        (p.name, p.relay.bytes_up) for p in fleet.peers
    ]

    # a new version: the same two layers and one more
    new = build_image(
        source, image, [("base.bin", 4 * MB), ("app.bin", MB), ("fix.bin", MB)], seed=8100
    )
    assert new != version
    since = time.time()
    code, report = sync_json(fleet, timeout=TIMEOUT)
    assert code == 0, report
    assert actions(report) == {(CLASSIC, image): "loaded", (CONTAINERD, image): "loaded"}
    assert loads_since(fleet, since) == {CLASSIC: 1, CONTAINERD: 1}
    want = _identity(source, image)
    for peer in fleet.peers:
        assert _identity(peer.docker.client(), image) == want, peer.name
        assert by_peer_image(report)[(peer.name, image)]["version"] == new


def test_an_agentless_containerd_peer_reloads_an_image_whose_runtime_config_differs(
    fleet: Lab,
) -> None:
    """Same layers, another config (one more label) under the tag: not the same image."""
    image, by_hand = "agentless-labels/app:1", "agentless-labels/by-hand:1"
    source = fleet.source.client()
    layers = [("app.bin", MB)]
    build_image(source, image, layers, seed=8200)
    build_image(source, by_hand, layers, seed=8200, labels={"changed": "by-hand"})
    assert _identity(source, by_hand)[0] == _identity(source, image)[0]
    fleet.write_configs([image], peer_overrides=agentless(fleet))
    assert sync_json(fleet, timeout=TIMEOUT)[0] == 0

    # on p2 someone puts the labelled image (the very same layers) under the tag
    peer = fleet.peer(CONTAINERD).docker.client()
    peer.images.load(b"".join(source.images.get(by_hand).save(named=True)))
    peer.images.get(by_hand).tag(*image.split(":"))
    assert _identity(peer, image)[0] == _identity(source, image)[0]
    assert _identity(peer, image)[1] != _identity(source, image)[1]

    since = time.time()
    code, report = sync_json(fleet, timeout=TIMEOUT)
    assert code == 0, report
    assert actions(report) == {(CLASSIC, image): "unchanged", (CONTAINERD, image): "loaded"}
    assert loads_since(fleet, since) == {CLASSIC: 0, CONTAINERD: 1}
    assert _identity(peer, image) == _identity(source, image)
