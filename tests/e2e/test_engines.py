"""A fleet that mixes engines: the host's Docker 20.10 (classic image store) and Debian 13's
Docker 26 with the containerd image store, as source and as peers. The same image has
different IDs on the two stores; imgsync must see it as the same image all the same: load
it once, then leave it alone, and put it back when someone moves the tag.

Each lab here has two peers, p1 on 20.10 and p2 on Docker 26 (containerd store); the
source is 20.10 in one run of the module and Docker 26 in the other.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imgsync.bundle import saveformat
from imgsync.model import runtime_config
from lab import Lab, build_image
from lab.cluster import ENGINE_26, ENGINE_HOST
from lab.images import load_oci_image

from .helpers import actions, by_peer_image, failures, loads_since, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024
CLASSIC, CONTAINERD = "p1", "p2"


@pytest.fixture(scope="module", params=[ENGINE_HOST, ENGINE_26], ids=["source-20.10", "source-26"])
def mixed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker26: None
) -> Iterator[Lab]:
    the_lab = Lab(
        tmp_path_factory.mktemp("mixed"),
        peers=2,
        source_engine=request.param,
        peer_engines=[ENGINE_HOST, ENGINE_26],
    )
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


def _identity(lab_node_client: Any, ref: str) -> tuple[tuple[str, ...], Any]:
    """What makes two images the same on any engine: their diff IDs and runtime config."""
    attrs = lab_node_client.images.get(ref).attrs
    runtime = runtime_config(attrs.get("Config"), attrs.get("Architecture"), attrs.get("Os"))
    return tuple(attrs["RootFS"]["Layers"]), runtime


def _saved_config_digest(client: Any, ref: str) -> str:
    """The config digest of ``ref`` as ``docker save`` writes it (any engine, any layout)."""
    archive = saveformat.scan(io.BytesIO(b"".join(client.api.get_image(ref))))
    return archive.images[0].config_digest


def _source_images(lab: Lab, name: str, seed: int, extra: list[tuple[str, int]]) -> list[str]:
    """Build ``name/app:1`` on the source; on a Docker 26 source also load ``name/pulled:1``
    with gzip layer blobs, the way a pulled image sits in a containerd store."""
    client = lab.source.client()
    build_image(client, f"{name}/app:1", [("base.bin", 8 * MB), *extra], seed=seed)
    images = [f"{name}/app:1"]
    if lab.source.containerd_store:
        load_oci_image(client, f"{name}/pulled:1", [("lib.bin", 3 * MB)], seed=seed)
        images.append(f"{name}/pulled:1")
    return images


def test_the_same_image_on_both_stores_is_loaded_once_then_left_alone(mixed: Lab) -> None:
    images = _source_images(mixed, "same", 7100, [("app.bin", MB)])
    mixed.write_configs(images)
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    assert set(actions(report).values()) == {"loaded"}, actions(report)
    for image in images:
        want = _identity(mixed.source.client(), image)
        version = by_peer_image(report)[(CLASSIC, image)]["version"]
        for peer in mixed.peers:
            assert _identity(peer.docker.client(), image) == want, (peer.name, image)
            # byte for byte the same config: what the peer saves has the version's digest
            assert _saved_config_digest(peer.docker.client(), image) == version, peer.name
    # the peer's own ID differs on the containerd store, and nothing cares
    app = images[0]
    assert mixed.peer(CONTAINERD).docker.image_id(app) != mixed.peer(CLASSIC).docker.image_id(app)

    since = time.time()
    mixed.reset_counters()
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    assert set(actions(report).values()) == {"unchanged"}, actions(report)
    assert loads_since(mixed, since) == {CLASSIC: 0, CONTAINERD: 0}
    assert all(p.relay.bytes_up < 64 * 1024 for p in mixed.peers)


def test_sync_json_names_each_peers_engine_and_store(mixed: Lab) -> None:
    images = _source_images(mixed, "facts", 7200, [])
    mixed.write_configs(images)
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    peers = report["peers"]
    assert peers[CLASSIC]["store"] == "classic" and peers[CLASSIC]["engine"].startswith("20.10")
    assert peers[CONTAINERD]["store"] == "containerd"
    assert peers[CONTAINERD]["engine"].startswith("26.")
    row = by_peer_image(report)[(CONTAINERD, images[0])]
    assert (row["engine"], row["store"]) == (peers[CONTAINERD]["engine"], "containerd")


def test_check_names_each_peers_engine_and_store(mixed: Lab) -> None:
    mixed.write_configs(_source_images(mixed, "check", 7300, []))
    done = mixed.run_imgsync("check", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    docker_line: dict[str, str] = {}
    peer = ""
    for line in done.stdout.splitlines():
        if line and not line.startswith(" "):
            peer = line.split()[0]
        elif line[11:19].strip() == "docker":
            docker_line[peer] = line
    assert "Docker 20.10" in docker_line[CLASSIC], done.stdout
    assert "classic image store" in docker_line[CLASSIC], done.stdout
    assert "Docker 26." in docker_line[CONTAINERD], done.stdout
    assert "containerd image store" in docker_line[CONTAINERD], done.stdout


def test_a_new_version_reaches_every_peer_thin_where_the_store_allows(mixed: Lab) -> None:
    image = "next/app:1"
    client = mixed.source.client()
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB)], seed=7400)
    mixed.write_configs([image])
    assert sync_json(mixed)[0] == 0
    build_image(client, image, [("base.bin", 12 * MB), ("app.bin", MB), ("fix.bin", MB)], seed=7400)
    since = time.time()
    mixed.reset_counters()
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    want = _identity(client, image)
    # a legacy bundle (20.10 source) cannot go thin into a containerd store; an OCI one can
    thin_on_containerd = mixed.source.containerd_store
    for peer in mixed.peers:
        row = by_peer_image(report)[(peer.name, image)]
        thin = peer.name == CLASSIC or thin_on_containerd
        assert (row["action"], row["transfer"]) == ("loaded", "thin" if thin else "full"), row
        assert (peer.relay.bytes_up < 4 * MB) == thin, (peer.name, peer.relay.bytes_up)
        assert _identity(peer.docker.client(), image) == want, peer.name
    assert loads_since(mixed, since) == {CLASSIC: 1, CONTAINERD: 1}
    code, report = sync_json(mixed)
    assert set(actions(report).values()) == {"unchanged"}, report


def test_a_tag_moved_by_hand_on_a_containerd_peer_is_put_back(mixed: Lab) -> None:
    image, other = "moved/app:1", "moved/other:1"
    client = mixed.source.client()
    build_image(client, image, [("app.bin", MB)], seed=7500)
    build_image(client, other, [("other.bin", MB)], seed=7501)
    mixed.write_configs([image, other])
    assert sync_json(mixed)[0] == 0
    peer = mixed.peer(CONTAINERD).docker
    synced = peer.image_id(image)
    peer.client().images.get(other).tag("moved/app", "1")  # someone re-tags by hand
    assert peer.image_id(image) != synced

    since = time.time()
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    assert actions(report)[(CONTAINERD, image)] == "restored", report
    assert actions(report)[(CLASSIC, image)] == "unchanged", report
    assert peer.image_id(image) == synced
    assert _identity(peer.client(), image) == _identity(client, image)
    assert loads_since(mixed, since)[CONTAINERD] == 0  # put back by tag, not by a load


def test_a_moved_tag_whose_image_is_gone_is_loaded_again(mixed: Lab) -> None:
    image = "gone/app:1"
    client = mixed.source.client()
    build_image(client, image, [("app.bin", MB)], seed=7600)
    mixed.write_configs([image])
    assert sync_json(mixed)[0] == 0
    peer = mixed.peer(CONTAINERD).docker
    peer.remove_image(image)  # the tag and the image it named are gone
    build_image(peer.client(), image, [("local.bin", MB)], seed=7601)  # a local build takes it

    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    assert actions(report)[(CONTAINERD, image)] == "loaded", report
    assert _identity(peer.client(), image) == _identity(client, image)


def test_the_record_of_loads_is_what_the_peer_says_it_runs(mixed: Lab) -> None:
    """The containerd peer's record maps its own image ID to the source's version."""
    image = "record/app:1"
    build_image(mixed.source.client(), image, [("app.bin", MB)], seed=7700)
    mixed.write_configs([image])
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    version = by_peer_image(report)[(CONTAINERD, image)]["version"]
    peer = mixed.peer(CONTAINERD)
    records = json.loads((peer.inbox / ".imgsync-loaded.json").read_text())
    assert records["format"] == 1
    assert records["images"][peer.docker.image_id(image)] == version
    done = mixed.run_imgsync(
        "apply", "--inventory", "--json", "--image", image, config=peer.config_path
    )
    assert json.loads(done.stdout)["images"][image]["running"] == version, done.stderr


def _other_blobs_copy(saved: bytes) -> bytes:
    """The same image as an OCI layout with every layer blob stored the other way (gzip ↔
    plain tar): same diff IDs (chain IDs), other blob digests -- as when a peer got the
    image from somewhere else (a registry, another engine)."""
    import gzip
    import hashlib
    import io
    import tarfile

    files = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    index = json.loads(files["index.json"])
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(files[manifest_name])
    blobs = {name: data for name, data in files.items() if name.startswith("blobs/")}
    for layer in manifest["layers"]:
        blob = blobs.pop("blobs/sha256/" + layer["digest"].split(":")[1])
        if blob[:2] == b"\x1f\x8b":  # a build on Docker 26 stores gzip blobs: unpack them
            blob, media = gzip.decompress(blob), "application/vnd.oci.image.layer.v1.tar"
        else:
            blob, media = (
                gzip.compress(blob, mtime=0),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        layer.update(digest="sha256:" + hashlib.sha256(blob).hexdigest(), size=len(blob))
        layer["mediaType"] = media
        blobs["blobs/sha256/" + layer["digest"].split(":")[1]] = blob
    raw_manifest = json.dumps(manifest).encode()
    digest = hashlib.sha256(raw_manifest).hexdigest()
    blobs.pop(manifest_name)
    blobs["blobs/sha256/" + digest] = raw_manifest
    index["manifests"][0].update(digest="sha256:" + digest, size=len(raw_manifest))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in [("oci-layout", files["oci-layout"]),
                           ("index.json", json.dumps(index).encode()), *blobs.items()]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_layers_a_containerd_peer_holds_as_other_blobs_are_sent_and_the_image_stays_whole(
    mixed: Lab,
) -> None:
    """The containerd peer holds the base's layers (same chain IDs) but not as the blobs
    this source's bundles name: from a Docker 26 source, as other blobs (plain tar where
    the source has gzip), as after a pull; from a 20.10 source, whose legacy bundles name
    no blobs at all. A thin bundle would fail to load, or load and leave an image whose
    ``docker save`` is broken (seen with Docker 26.1): the peer gets those layers, and the
    image it ends with saves whole."""
    base, app = "blobs/base:1", "blobs/app:1"
    client = mixed.source.client()
    build_image(client, base, [("base.bin", 8 * MB)], seed=7800)
    peer = mixed.peer(CONTAINERD).docker
    saved = b"".join(client.api.get_image(base))
    peer.client().images.load(_other_blobs_copy(saved) if mixed.source.containerd_store else saved)
    assert peer.image_id(base) is not None
    build_image(client, app, [("base.bin", 8 * MB), ("app.bin", MB)], seed=7800)
    mixed.write_configs([app])

    mixed.reset_counters()
    code, report = sync_json(mixed)
    assert code == 0, failures(report) or report
    row = by_peer_image(report)[(CONTAINERD, app)]
    # busybox's blob came from this source before and may stay out; the base's must not
    assert row["action"] == "loaded", row
    assert mixed.peer(CONTAINERD).relay.bytes_up > 8 * MB  # counted on the wire
    assert _identity(peer.client(), app) == _identity(client, app)
    saved = b"".join(peer.client().api.get_image(app))
    assert len(saved) > 8 * MB, len(saved)  # every layer is there to save
