"""Kubernetes nodes as peers: containerd alone, no Docker (``[receiver] engine =
"containerd"``), the way k3s and kubeadm run it — the CRI plugin on, images in ``k8s.io``.

Each lab here has two such peers, p1 on Debian 12's containerd 1.6 and p2 on the Debian 13
root's 1.7 (each with its own root, state and socket, reached through its own sshd); the
source is Docker 20.10 (legacy ``docker save``) in one run of the module and Docker 26
(containerd store: OCI layout, an index) in the other. What the node holds is read with
``ctr`` and its events, never from imgsync's report; bytes are counted at the lab's relay.
kubelet itself is not in the lab: what it would see is asked of the CRI plugin (its
``ListImages``, tests/e2e/cri.py), and its image GC is played by removing the image's names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, build_image
from lab.cluster import CONTAINERD_16, CONTAINERD_17, ENGINE_26, ENGINE_HOST
from lab.containerd_node import ContainerdNode, qualified
from lab.images import load_oci_image

from . import cri
from .helpers import actions, by_peer_image, failures, receiver_configs, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024
LOADS = {"/images/create", "/images/update", "/snapshot/commit"}  # what an import does


@pytest.fixture(scope="module", params=[ENGINE_HOST, ENGINE_26], ids=["source-20.10", "source-26"])
def k8s(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker26: None
) -> Iterator[Lab]:
    the_lab = Lab(
        tmp_path_factory.mktemp("k8s"),
        peers=2,
        source_engine=request.param,
        peer_engines=[CONTAINERD_16, CONTAINERD_17],
    )
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


def node(lab: Lab, name: str) -> ContainerdNode:
    found = lab.peer(name).docker
    assert isinstance(found, ContainerdNode)
    return found


def nodes(lab: Lab) -> list[ContainerdNode]:
    return [node(lab, peer.name) for peer in lab.peers]


def source_identity(lab: Lab, image: str) -> tuple[str, ...]:
    return tuple(lab.source.client().images.get(image).attrs["RootFS"]["Layers"])


def node_diff_ids(ctd: ContainerdNode, config: str) -> tuple[str, ...]:
    return tuple(json.loads(ctd.ctr("content", "get", config).stdout)["rootfs"]["diff_ids"])


def test_a_first_sync_puts_the_image_where_kubelet_looks_under_the_sources_version(
    k8s: Lab,
) -> None:
    image = "k8s/first:1"
    build_image(k8s.source.client(), image, [("base.bin", 4 * MB), ("app.bin", MB)], seed=8100)
    k8s.write_configs([image])
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    for ctd in nodes(k8s):
        version = by_peer_image(report)[(ctd.name, image)]["version"]
        assert ctd.config_digest(qualified(image)) == version, ctd.name
        assert node_diff_ids(ctd, version) == source_identity(k8s, image), ctd.name
        assert ctd.pinned(qualified(image)), ctd.name
        # what kubelet sees, asked of the CRI itself: the image by its version and name, and
        # pinned against its image GC where containerd honours the label (1.7)
        seen = {i.id: i for i in cri.list_images(ctd.socket)}
        assert qualified(image) in seen[version].repo_tags, (ctd.name, seen.get(version))
        assert seen[version].pinned == (ctd.name == "p2"), (ctd.name, seen[version])


def test_a_second_sync_moves_no_bundle_and_imports_nothing(k8s: Lab, tmp_path: Path) -> None:
    image = "k8s/again:1"
    build_image(k8s.source.client(), image, [("app.bin", 2 * MB)], seed=8200)
    k8s.write_configs([image])
    assert sync_json(k8s)[0] == 0
    k8s.reset_counters()
    with (
        node(k8s, "p1").events(tmp_path / "p1.log") as p1,
        node(k8s, "p2").events(tmp_path / "p2.log") as p2,
    ):
        code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    assert set(actions(report).values()) == {"unchanged"}, report
    assert not LOADS & set(p1) and not LOADS & set(p2), (p1, p2)
    assert all(p.relay.bytes_up < 64 * 1024 for p in k8s.peers)


def test_a_new_version_crosses_thin_from_an_oci_source_and_full_from_a_legacy_one(
    k8s: Lab,
) -> None:
    image = "k8s/next:1"
    client = k8s.source.client()
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB)], seed=8300)
    k8s.write_configs([image])
    assert sync_json(k8s)[0] == 0
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB), ("fix.bin", MB)], seed=8300)
    k8s.reset_counters()
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    thin = k8s.source.containerd_store  # a legacy bundle cannot leave out a layer here
    for ctd, peer in zip(nodes(k8s), k8s.peers, strict=True):
        row = by_peer_image(report)[(ctd.name, image)]
        assert (row["action"], row["transfer"]) == ("loaded", "thin" if thin else "full"), row
        assert (peer.relay.bytes_up < 4 * MB) == thin, (ctd.name, peer.relay.bytes_up)
        assert ctd.config_digest(qualified(image)) == row["version"], ctd.name
        assert node_diff_ids(ctd, row["version"]) == source_identity(k8s, image)
    code, report = sync_json(k8s)
    assert set(actions(report).values()) == {"unchanged"}, report


def test_an_image_kubelets_gc_removed_is_sent_again_next_cycle(k8s: Lab) -> None:
    image = "k8s/collected:1"
    build_image(k8s.source.client(), image, [("app.bin", MB)], seed=8400)
    k8s.write_configs([image])
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    for ctd in nodes(k8s):
        version = ctd.config_digest(qualified(image))
        ctd.ctr("images", "rm", qualified(image), version)  # as the CRI's RemoveImage does
        assert ctd.image_id(image) is None
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    for ctd in nodes(k8s):
        assert actions(report)[(ctd.name, image)] == "loaded", report
        assert (
            ctd.config_digest(qualified(image))
            == by_peer_image(report)[(ctd.name, image)]["version"]
        )


def test_sync_json_names_containerd_and_its_version_for_each_node(k8s: Lab) -> None:
    image = "k8s/facts:1"
    build_image(k8s.source.client(), image, [("app.bin", MB)], seed=8500)
    k8s.write_configs([image])
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    assert report["peers"]["p1"]["engine"].startswith("containerd 1.6."), report["peers"]
    assert report["peers"]["p2"]["engine"].startswith("containerd 1.7."), report["peers"]
    assert {p["store"] for p in report["peers"].values()} == {"containerd"}


def _check(lab: Lab) -> dict[str, list[str]]:
    done = lab.run_imgsync("check", timeout=120)
    lines: dict[str, list[str]] = {}
    peer = ""
    for line in done.stdout.splitlines():
        if line and not line.startswith(" "):
            peer = line.split()[0]
        lines.setdefault(peer, []).append(line)
    return lines


def test_check_passes_on_a_good_node_and_names_the_fix_for_a_wrong_socket_or_namespace(
    k8s: Lab,
) -> None:
    k8s.write_configs(["k8s/first:1"])
    good = _check(k8s)
    assert any("containerd 1.6" in line and "CRI on" in line for line in good["p1"]), good
    assert any("pinning on" in line for line in good["p2"]), good
    assert not any("FAIL" in line for lines in good.values() for line in lines), good

    wrong: dict[str, Any] = {"address": str(k8s.root / "no-such.sock")}
    try:
        receiver_configs(k8s, **wrong)
        broken = _check(k8s)
        assert any("FAIL" in line for line in broken["p1"]), broken
        text = "\n".join(broken["p1"])
        assert "no-such.sock" in text and "[receiver] address must be its socket" in text, text
        receiver_configs(k8s, namespace="default")
        broken = _check(k8s)
        text = "\n".join(broken["p2"])
        assert "namespace default is not where kubelet looks" in text, broken
        assert 'namespace = "k8s.io"' in text, broken
    finally:
        receiver_configs(k8s)


def test_a_multi_platform_image_from_a_docker_26_source_imports_its_one_platform(
    k8s: Lab,
) -> None:
    """Docker 26 saves a pulled multi-platform image as an index naming an arm64 manifest
    that is not in the file; the node imports the one platform it runs."""
    if not k8s.source.containerd_store:
        pytest.skip("a multi-platform image needs the containerd store (the Docker 26 source)")
    image = "k8s/multi:1"
    load_oci_image(k8s.source.client(), image, [("lib.bin", MB)], seed=8600, multi_platform=True)
    k8s.write_configs([image])
    code, report = sync_json(k8s)
    assert code == 0, failures(report) or report
    for ctd in nodes(k8s):
        version = by_peer_image(report)[(ctd.name, image)]["version"]
        assert ctd.config_digest(qualified(image)) == version, ctd.name
        assert node_diff_ids(ctd, version) == source_identity(k8s, image), ctd.name
