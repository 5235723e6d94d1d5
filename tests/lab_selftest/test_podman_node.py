"""The lab's Podman node (lab/podman_node.py), on Debian 12's podman 4.3 and the Debian 13
root's podman 5.4 -- and the facts about loading into Podman, by its CLI and through its
Docker-compatible API, that imgsync's Podman peers build on (the same on both unless said):

- a ``docker save`` tarball loads, a short name under ``localhost/`` (``acme/web:1`` becomes
  ``localhost/acme/web:1``; ``docker.io/…`` stays), by the CLI and by the API alike; a short
  name finds it again; the image ID is the config digest (bare hex from the CLI, ``sha256:``
  from the API);
- the API's inspect gives the diff IDs, the runtime config and the platform, and names in
  full (``localhost/…``, ``docker.io/…``); its tag puts a short name under ``docker.io/``;
- an OCI-layout tarball that leaves out a layer the node holds loads (CLI and API), a legacy
  tarball missing a layer does not; an OCI tarball's name comes from its annotations;
- the event of a load names the archive; from 5 it carries the image's ID (bare hex) too;
- the API's DriverStatus has two more keys from 5 ("Supports shifting", "Supports volatile");
- no registry is reachable; the API's pull says so in its stream on 4.3 (HTTP 200), with a
  bare HTTP 500 "connection refused" from 5.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from lab import LabError, unavailable_reason
from lab.chroot import BUILD_SCRIPT, docker26_root, docker26_unavailable
from lab.podman_node import PodmanNode
from tests.lab_selftest import needs
from tests.unit.tarballs import Image, layer_tar, legacy, oci, sha

pytestmark = pytest.mark.lab
PLATFORM = {"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"], "Cmd": ["/app"]}}
OVERLAY_STATUS = {"Backing Filesystem", "Supports d_type", "Native Overlay Diff", "Using metacopy"}
BASE = layer_tar({"bin/sh": b"s" * 50_000})
V1 = Image("acme/web:1", [BASE, layer_tar({"app": b"1" * 9000})], settings=PLATFORM)
V2 = Image("docker.io/acme/web:2", [BASE, layer_tar({"app": b"2" * 9000})], settings=PLATFORM)
PODMAN_LESS_ROOT = f"the Debian 13 root has no podman (add it with: sudo {BUILD_SCRIPT})"
V3 = Image("acme/web:3", [BASE, layer_tar({"app": b"3" * 9000})], settings=PLATFORM)


@pytest.fixture(params=["4.3", "5"])
def node(request: pytest.FixtureRequest) -> Iterator[PodmanNode]:
    needs(unavailable_reason())
    token = secrets.token_hex(3)
    if request.param == "4.3":
        needs(None if shutil.which("podman") else "no podman (apt-get install podman)")
        made = PodmanNode("podman-4.3", Path(f"/var/tmp/ipdm-{token}"), Path(f"/run/ipdm-{token}"))
    else:
        needs(docker26_unavailable())
        needs(None if (docker26_root() / "usr/bin/podman").exists() else PODMAN_LESS_ROOT)
        home = docker26_root() / "x" / f"ipdm-{token}"
        made = PodmanNode("podman-5", home, home / "r", chroot=docker26_root())
    made.start()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def api(node: PodmanNode) -> Iterator[docker.APIClient]:
    client = docker.DockerClient(base_url=node.url)
    try:
        yield client.api
    finally:
        client.close()


def without(path: Path, member: str, out: Path) -> Path:
    """``path`` with one member left out."""
    with tarfile.open(path) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            if info.name != member:
                dst.addfile(info, src.extractfile(info))
    return out


def annotated(path: Path, annotations: dict[str, str], out: Path) -> Path:
    """The OCI tarball ``path`` with its (one) index entry's annotations replaced."""
    with tarfile.open(path) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "index.json":
                index = json.loads(data)
                index["manifests"][0]["annotations"] = annotations
                data = json.dumps(index).encode()
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def api_load(api: docker.APIClient, tarball: Path) -> list[Any]:
    with open(tarball, "rb") as data:
        return list(api.load_image(data))


def image_events(
    api: docker.APIClient, since: int, until_action: str, timeout: float = 20
) -> list[dict[str, Any]]:
    """Image events from ``since`` up to the first ``until_action`` one, or ``timeout``."""
    stream = api.events(since=since, filters={"type": "image"}, decode=True)
    seen: list[dict[str, Any]] = []

    def collect() -> None:
        for event in stream:
            seen.append(event)
            if event["Action"] == until_action:
                return

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    reader.join(timeout)
    stream.close()
    return list(seen)


def five(node: PodmanNode) -> bool:
    """Is it the Debian 13 root's podman 5 (else the host's 4.3)?"""
    return node.chroot is not None


def test_a_docker_save_loads_under_localhost_its_id_the_config_digest(node: PodmanNode) -> None:
    loaded = node.load(legacy(node.root / "v1.tar", [V1]))
    assert loaded == "Loaded image: localhost/acme/web:1"
    node.load(legacy(node.root / "v2.tar", [V2]))
    assert node.images() == {"localhost/acme/web:1", "docker.io/acme/web:2"}
    raw = node.podman("image", "inspect", "--format", "{{.Id}}", "localhost/acme/web:1")
    assert raw.stdout.strip() == sha(V1.config)  # bare hex from the CLI
    assert node.image_id("localhost/acme/web:1") == V1.config_digest
    assert node.image_id("acme/web:1") == V1.config_digest  # a short name finds localhost/
    assert node.image_id("acme/web:2") == V2.config_digest  # ... and docker.io/
    assert node.image_id("docker.io/acme/web:1") is None


def test_the_api_inspects_with_sha256_ids_diff_ids_and_names_in_full(
    node: PodmanNode, api: docker.APIClient
) -> None:
    assert api_load(api, legacy(node.root / "v1.tar", [V1])) == [
        {"stream": "Loaded image: localhost/acme/web:1"}
    ]
    assert api_load(api, legacy(node.root / "v2.tar", [V2])) == [
        {"stream": "Loaded image: docker.io/acme/web:2"}
    ]
    for name in ("acme/web:1", "localhost/acme/web:1", V1.config_digest, sha(V1.config)[:12]):
        found = api.inspect_image(name)
        assert found["Id"] == V1.config_digest
        assert found["RepoTags"] == ["localhost/acme/web:1"]
        assert found["RootFS"] == {"Type": "layers", "Layers": list(V1.diff_ids)}
        assert (found["Architecture"], found["Os"]) == ("amd64", "linux")
        assert (found["Config"]["Env"], found["Config"]["Cmd"]) == (["A=1"], ["/app"])
    assert api.inspect_image("acme/web:2")["RepoTags"] == ["docker.io/acme/web:2"]
    with pytest.raises(docker.errors.ImageNotFound):
        api.inspect_image("docker.io/acme/web:1")
    listed = {image["Id"]: image["RepoTags"] for image in api.images(all=True)}
    assert listed == {
        V1.config_digest: ["localhost/acme/web:1"],
        V2.config_digest: ["docker.io/acme/web:2"],
    }


def test_the_api_tags_a_short_name_under_docker_io_and_deletes_with_a_bare_id(
    node: PodmanNode, api: docker.APIClient
) -> None:
    api_load(api, legacy(node.root / "v1.tar", [V1]))
    assert api.tag("acme/web:1", "acme/copy", "x") is True
    assert node.images() == {"localhost/acme/web:1", "docker.io/acme/copy:x"}
    assert api.remove_image("acme/copy:x") == [{"Untagged": "docker.io/acme/copy:x"}]
    assert api.remove_image("acme/web:1") == [
        {"Deleted": sha(V1.config)},  # no sha256: here
        {"Untagged": "localhost/acme/web:1"},
    ]
    assert api.images(all=True) == []


def test_info_and_version_say_podman_on_overlay(node: PodmanNode, api: docker.APIClient) -> None:
    info = api.info()
    assert info["Driver"] == "overlay"
    assert info["DockerRootDir"] == node._inner(node.root / "storage")  # as podman sees it
    status = dict(info["DriverStatus"])  # pairs, in no fixed order (a Go map)
    more = {"Supports shifting", "Supports volatile"} if five(node) else set()
    assert set(status) == OVERLAY_STATUS | more  # no "driver-type": no containerd image store
    version = api.version()
    assert version["Version"].startswith("5." if five(node) else "4.")
    assert version["ApiVersion"] == "1.41"
    assert [c["Name"] for c in version["Components"]] == [
        "Podman Engine",
        "Conmon",
        "OCI Runtime (runc)",
    ]


def test_an_oci_bundle_may_leave_out_a_layer_the_node_holds_a_legacy_one_may_not(
    node: PodmanNode, api: docker.APIClient
) -> None:
    node.load(legacy(node.root / "v1.tar", [V1]))
    legacy_thin = legacy(node.root / "v2-legacy-thin.tar", [V2], omit={0})
    with pytest.raises(LabError, match="Some layer tarfiles are missing"):
        node.load(legacy_thin)
    with pytest.raises(docker.errors.APIError, match="Some layer tarfiles are missing"):
        api_load(api, legacy_thin)
    for image, load in ((V2, "cli"), (V3, "api")):
        full = oci(node.root / f"{load}.tar", [image], with_manifest_json=False)
        thin = without(full, f"blobs/sha256/{sha(BASE)}", node.root / f"{load}-thin.tar")
        if load == "cli":
            node.load(thin)
        else:
            api_load(api, thin)
    assert node.image_id("docker.io/acme/web:2") == V2.config_digest
    assert node.image_id("localhost/acme/web:3") == V3.config_digest


@pytest.mark.parametrize(
    ("annotations", "name"),
    [
        ({"io.containerd.image.name": "docker.io/acme/a:1",
          "org.opencontainers.image.ref.name": "1"}, "docker.io/acme/a:1"),
        ({"org.opencontainers.image.ref.name": "docker.io/acme/b:1"}, "docker.io/acme/b:1"),
        ({"org.opencontainers.image.ref.name": "1"}, "localhost/1:latest"),
        ({}, None),
    ],
)  # fmt: skip
def test_an_oci_bundle_is_named_by_its_containerd_annotation_else_its_ref_name(
    node: PodmanNode, api: docker.APIClient, annotations: dict[str, str], name: str | None
) -> None:
    base = oci(node.root / "o.tar", [V1], with_manifest_json=False)
    bundle = annotated(base, annotations, node.root / "a.tar")
    assert node.load(bundle) == f"Loaded image: {name or V1.config_digest}"
    assert node.images() == ({name} if name else set())
    node.podman("rmi", "--all", "--force")
    assert api_load(api, bundle) == [{"stream": f"Loaded image: {name or V1.config_digest}"}]
    assert node.images() == ({name} if name else set())


def test_the_event_of_a_load_names_the_archive_and_from_5_the_image_id(
    node: PodmanNode, api: docker.APIClient
) -> None:
    since = int(time.time()) - 1
    api_load(api, legacy(node.root / "v1.tar", [V1]))
    node.load(legacy(node.root / "v2.tar", [V2]))
    api.tag("acme/web:1", "acme/web", "x")
    api.remove_image("acme/web:x")
    events = image_events(api, since, until_action="delete")
    seen = [(e["Action"], e.get("id"), e["Actor"]["Attributes"]["name"]) for e in events]
    loads = [event for event in seen if event[0] == "loadfromarchive"]
    bare = sha(V1.config)
    ids = [bare, sha(V2.config)] if five(node) else [None, None]  # 4.3: no ID at all
    # two processes (the service, the CLI) write the events log: in either order
    assert sorted((action, image or "") for action, image, _ in loads) == sorted(
        ("loadfromarchive", image or "") for image in ids
    )
    assert {Path(archive).name for _, _, archive in loads} >= {"v2.tar"}  # the API's: a temp file
    assert [event for event in seen if event[0] != "loadfromarchive"] == [
        ("tag", bare, "docker.io/acme/web:x"),
        ("untag", bare, "docker.io/acme/web:x"),
        ("delete", bare, "docker.io/acme/web:x"),  # said, though the image stays
    ]
    assert node.image_id("localhost/acme/web:1") == V1.config_digest


def test_no_registry_is_reachable(node: PodmanNode, api: docker.APIClient) -> None:
    if five(node):  # an HTTP error, with the cause's last words only
        with pytest.raises(docker.errors.APIError, match="connection refused") as failed:
            api.pull("docker.io/library/busybox", "latest")
        assert failed.value.status_code == 500
    else:  # HTTP 200, the error in the stream
        answer = api.pull("docker.io/library/busybox", "latest")
        assert "proxyconnect tcp: dial tcp 127.0.0.1:9" in answer
    with pytest.raises(LabError, match=r"proxyconnect tcp: dial tcp 127\.0\.0\.1:9"):
        node.podman("pull", "docker.io/library/busybox:latest")
    assert node.images() == set()
