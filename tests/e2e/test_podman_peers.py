"""Podman hosts as peers (``[receiver] engine = "podman"``): imgsync on the peer loads through
Podman's Docker-compatible API (``podman system service``), no Docker there.

Each lab here has two Podman peers, p1 on Debian 12's podman 4.3 and p2 on the Debian 13
root's 5.x (each with storage of its own); the source is
Docker 20.10 (legacy ``docker save``) in one run of the module and Docker 26 (containerd
store: OCI layout) in the other. What the node holds is read with the podman CLI, loads are
counted from its events log, bytes at the lab's relay.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from lab import Lab, build_image
from lab.cluster import ENGINE_26, ENGINE_HOST, PODMAN_5, PODMAN_HOST
from lab.podman_node import PodmanNode

from .helpers import actions, by_peer_image, failures, receiver_configs, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024


@pytest.fixture(scope="module", params=[ENGINE_HOST, ENGINE_26], ids=["source-20.10", "source-26"])
def podman(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker26: None
) -> Iterator[Lab]:
    the_lab = Lab(
        tmp_path_factory.mktemp("podman"),
        peers=2,
        source_engine=request.param,
        peer_engines=[PODMAN_HOST, PODMAN_5],
    )
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


def nodes(lab: Lab) -> list[PodmanNode]:
    found = [peer.docker for peer in lab.peers]
    assert all(isinstance(n, PodmanNode) for n in found)
    return found  # type: ignore[return-value]


def source_layers(lab: Lab, image: str) -> tuple[str, ...]:
    return tuple(lab.source.client().images.get(image).attrs["RootFS"]["Layers"])


def test_a_first_sync_loads_the_image_under_its_name_with_the_sources_version(
    podman: Lab,
) -> None:
    image = "pm/first:1"
    build_image(podman.source.client(), image, [("base.bin", 4 * MB), ("app.bin", MB)], seed=9100)
    podman.write_configs([image])
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    for pm in nodes(podman):
        version = by_peer_image(report)[(pm.name, image)]["version"]
        assert pm.image_id(image) == version, pm.name  # Podman's ID is the config digest
        # one name, the qualified one, whichever layout the source saved in (a legacy load
        # alone would have left it under localhost/)
        assert {n for n in pm.images() if "pm/first" in n} == {f"docker.io/{image}"}, pm.name
        assert pm.diff_ids(image) == source_layers(podman, image), pm.name


def test_a_second_sync_moves_no_bundle_and_loads_nothing(podman: Lab) -> None:
    image = "pm/again:1"
    build_image(podman.source.client(), image, [("app.bin", 2 * MB)], seed=9200)
    podman.write_configs([image])
    assert sync_json(podman)[0] == 0
    podman.reset_counters()
    loads = [pm.loads() for pm in nodes(podman)]
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert set(actions(report).values()) == {"unchanged"}, report
    assert [pm.loads() for pm in nodes(podman)] == loads
    assert all(peer.relay.bytes_up < 64 * 1024 for peer in podman.peers)


def test_a_new_version_crosses_thin_from_an_oci_source_and_full_from_a_legacy_one(
    podman: Lab,
) -> None:
    image = "pm/next:1"
    client = podman.source.client()
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB)], seed=9300)
    podman.write_configs([image])
    assert sync_json(podman)[0] == 0
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB), ("fix.bin", MB)], seed=9300)
    podman.reset_counters()
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    thin = podman.source.containerd_store  # a legacy bundle cannot leave out a layer here
    for pm, peer in zip(nodes(podman), podman.peers, strict=True):
        row = by_peer_image(report)[(pm.name, image)]
        assert (row["action"], row["transfer"]) == ("loaded", "thin" if thin else "full"), row
        assert (peer.relay.bytes_up < 4 * MB) == thin, (pm.name, peer.relay.bytes_up)
        assert pm.image_id(image) == row["version"], pm.name
        assert pm.diff_ids(image) == source_layers(podman, image), pm.name
    code, report = sync_json(podman)
    assert set(actions(report).values()) == {"unchanged"}, report


def test_an_image_removed_on_the_peer_is_sent_again_next_cycle(podman: Lab) -> None:
    image = "pm/removed:1"
    build_image(podman.source.client(), image, [("app.bin", MB)], seed=9400)
    podman.write_configs([image])
    assert sync_json(podman)[0] == 0
    for pm in nodes(podman):
        pm.podman("rmi", f"docker.io/{image}")
        assert pm.image_id(image) is None
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    for pm in nodes(podman):
        assert actions(report)[(pm.name, image)] == "loaded", report
        assert pm.image_id(image) == by_peer_image(report)[(pm.name, image)]["version"]


def test_sync_json_and_check_name_podman_and_its_version(podman: Lab) -> None:
    image = "pm/facts:1"
    build_image(podman.source.client(), image, [("app.bin", MB)], seed=9500)
    podman.write_configs([image])
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert report["peers"]["p1"] == {"engine": "podman 4.3.1", "store": "podman"}, report
    assert report["peers"]["p2"]["engine"].startswith("podman 5."), report
    done = podman.run_imgsync("check", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "podman 4.3.1" in done.stdout and "podman 5." in done.stdout, done.stdout


def test_check_names_a_wrong_podman_socket(podman: Lab) -> None:
    podman.write_configs(["pm/facts:1"])
    try:
        receiver_configs(podman, address=f"unix://{podman.root}/no-such.sock")
        done = podman.run_imgsync("check", timeout=120)
        assert done.returncode != 0, done.stdout
        assert "FAIL" in done.stdout and "no-such.sock" in done.stdout, done.stdout
        assert "systemctl enable --now podman.socket" in done.stdout, done.stdout
    finally:
        receiver_configs(podman)


def test_an_agentless_podman_peer_loads_once_through_its_cli_then_leaves_the_image_alone(
    podman: Lab,
) -> None:
    """No imgsync on p1: its ``docker_command`` is the podman CLI, on the node's storage.
    (p2's podman runs in the Debian 13 root, where the peer's inbox path does not exist: an
    agentless ``podman load`` there would need the same path on both sides, so p2 keeps its
    agent here.)"""
    image = "pm/agentless:1"
    build_image(podman.source.client(), image, [("app.bin", 2 * MB)], seed=9600)
    p1 = nodes(podman)[0]
    cli = {"mode": "agentless", "apply_command": "false",
           "docker_command": shlex.join(p1.podman_argv())}  # fmt: skip
    podman.write_configs([image], peer_overrides={"p1": cli})
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert p1.image_id(image) == by_peer_image(report)[("p1", image)]["version"]
    loads = p1.loads()
    podman.reset_counters()
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert actions(report)[("p1", image)] == "unchanged", report
    assert p1.loads() == loads
    assert podman.peers[0].relay.bytes_up < 64 * 1024
