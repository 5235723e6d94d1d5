"""Podman hosts as peers (``[receiver] engine = "podman"``): imgsync on the peer loads through
Podman's Docker-compatible API (``podman system service``), no Docker there.

Each lab here has one Podman peer (Debian 12's podman 4.3, storage of its own); the source is
Docker 20.10 (legacy ``docker save``) in one run of the module and Docker 26 (containerd
store: OCI layout) in the other. What the node holds is read with the podman CLI, loads are
counted from its events log, bytes at the lab's relay.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from lab import Lab, build_image
from lab.cluster import ENGINE_26, ENGINE_HOST, PODMAN_HOST
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
        peers=1,
        source_engine=request.param,
        peer_engines=[PODMAN_HOST],
    )
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


def node(lab: Lab) -> PodmanNode:
    found = lab.peers[0].docker
    assert isinstance(found, PodmanNode)
    return found


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
    version = by_peer_image(report)[("p1", image)]["version"]
    assert node(podman).image_id(image) == version  # Podman's ID is the config digest
    # one name, the qualified one, whichever layout the source saved in (a legacy load alone
    # would have left it under localhost/)
    assert {n for n in node(podman).images() if "pm/first" in n} == {f"docker.io/{image}"}
    assert node(podman).diff_ids(image) == source_layers(podman, image)


def test_a_second_sync_moves_no_bundle_and_loads_nothing(podman: Lab) -> None:
    image = "pm/again:1"
    build_image(podman.source.client(), image, [("app.bin", 2 * MB)], seed=9200)
    podman.write_configs([image])
    assert sync_json(podman)[0] == 0
    podman.reset_counters()
    loads = node(podman).loads()
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert set(actions(report).values()) == {"unchanged"}, report
    assert node(podman).loads() == loads
    assert podman.peers[0].relay.bytes_up < 64 * 1024


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
    row = by_peer_image(report)[("p1", image)]
    assert (row["action"], row["transfer"]) == ("loaded", "thin" if thin else "full"), row
    assert (podman.peers[0].relay.bytes_up < 4 * MB) == thin, podman.peers[0].relay.bytes_up
    assert node(podman).image_id(image) == row["version"]
    assert node(podman).diff_ids(image) == source_layers(podman, image)
    code, report = sync_json(podman)
    assert set(actions(report).values()) == {"unchanged"}, report


def test_an_image_removed_on_the_peer_is_sent_again_next_cycle(podman: Lab) -> None:
    image = "pm/removed:1"
    build_image(podman.source.client(), image, [("app.bin", MB)], seed=9400)
    podman.write_configs([image])
    assert sync_json(podman)[0] == 0
    node(podman).podman("rmi", f"docker.io/{image}")
    assert node(podman).image_id(image) is None
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert actions(report)[("p1", image)] == "loaded", report
    assert node(podman).image_id(image) == by_peer_image(report)[("p1", image)]["version"]


def test_sync_json_and_check_name_podman_and_its_version(podman: Lab) -> None:
    image = "pm/facts:1"
    build_image(podman.source.client(), image, [("app.bin", MB)], seed=9500)
    podman.write_configs([image])
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert report["peers"]["p1"] == {"engine": "podman 4.3.1", "store": "podman"}, report
    done = podman.run_imgsync("check", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "podman 4.3.1" in done.stdout, done.stdout


def test_check_names_a_wrong_podman_socket(podman: Lab) -> None:
    podman.write_configs(["pm/facts:1"])
    try:
        receiver_configs(podman, address=f"unix://{podman.root}/no-such.sock")
        done = podman.run_imgsync("check", timeout=120)
        assert done.returncode != 0, done.stdout
        assert "FAIL" in done.stdout and "no-such.sock" in done.stdout, done.stdout
    finally:
        receiver_configs(podman)


def test_an_agentless_podman_peer_loads_once_through_its_cli_then_leaves_the_image_alone(
    podman: Lab,
) -> None:
    """No imgsync on the peer: ``docker_command`` is the podman CLI (on the node's storage)."""
    image = "pm/agentless:1"
    build_image(podman.source.client(), image, [("app.bin", 2 * MB)], seed=9600)
    cli = {"mode": "agentless", "apply_command": "false",
           "docker_command": shlex.join(node(podman).podman_argv())}  # fmt: skip
    podman.write_configs([image], peer_overrides={"p1": cli})
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    version = by_peer_image(report)[("p1", image)]["version"]
    assert node(podman).image_id(image) == version
    loads = node(podman).loads()
    podman.reset_counters()
    code, report = sync_json(podman)
    assert code == 0, failures(report) or report
    assert actions(report)[("p1", image)] == "unchanged", report
    assert node(podman).loads() == loads
    assert podman.peers[0].relay.bytes_up < 64 * 1024
