"""The lab's containerd-only node (lab/containerd_node.py), on Debian 12's containerd 1.6
and the Debian 13 root's 1.7 — and the facts about importing into a Kubernetes node's
containerd that imgsync's containerd peers (the Kubernetes/Podman issue) build on:

- a ``docker save`` tarball imports into ``k8s.io``, its name normalized, and the CRI plugin
  adds a name for the config digest (imgsync's version) beside it;
- an OCI-layout tarball that leaves out a layer the content store already holds imports
  (a thin bundle can work), while a legacy tarball missing a layer does not;
- the CRI's pin label can be set (``io.cri-containerd.pinned``; honoured from 1.7).
"""

from __future__ import annotations

import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabError, unavailable_reason
from lab.chroot import docker26_root, docker26_unavailable
from lab.containerd_node import ContainerdNode
from tests.lab_selftest import needs
from tests.unit.tarballs import Image, layer_tar, legacy, oci, sha

pytestmark = pytest.mark.lab
PLATFORM = {"architecture": "amd64", "os": "linux"}
BASE = layer_tar({"bin/sh": b"s" * 50_000})
V1 = Image("acme/web:1", [BASE, layer_tar({"app": b"1" * 9000})], settings=PLATFORM)
V2 = Image("docker.io/acme/web:2", [BASE, layer_tar({"app": b"2" * 9000})], settings=PLATFORM)


@pytest.fixture(params=["1.6", "1.7"])
def node(request: pytest.FixtureRequest) -> Iterator[ContainerdNode]:
    needs(unavailable_reason())
    token = secrets.token_hex(3)
    if request.param == "1.6":
        home = Path(f"/var/tmp/ictd-{token}")
        made = ContainerdNode("k8s-1.6", home, Path(f"/run/ictd-{token}"))
    else:
        needs(docker26_unavailable())
        home = docker26_root() / "x" / f"ictd-{token}"
        made = ContainerdNode("k8s-1.7", home, home / "r", chroot=docker26_root())
    made.start()
    try:
        yield made
    finally:
        made.destroy()


def without(path: Path, member: str, out: Path) -> Path:
    """``path`` with one member left out."""
    with tarfile.open(path) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            if info.name != member:
                dst.addfile(info, src.extractfile(info))
    return out


def test_a_docker_save_imports_under_its_normalized_name_and_its_config_digest(
    node: ContainerdNode,
) -> None:
    node.import_archive(legacy(node.root / "v1.tar", [V1]))
    assert {"docker.io/acme/web:1", V1.config_digest} <= node.images()
    assert node.config_digest("docker.io/acme/web:1") == V1.config_digest


def test_an_oci_bundle_may_leave_out_a_layer_the_node_holds_a_legacy_one_may_not(
    node: ContainerdNode,
) -> None:
    node.import_archive(legacy(node.root / "v1.tar", [V1]))
    with pytest.raises(LabError, match="not found"):  # the base layer left out
        node.import_archive(legacy(node.root / "v2-legacy-thin.tar", [V2], omit={0}))
    oci_full = oci(node.root / "v2-oci.tar", [V2], with_manifest_json=False)
    thin = without(oci_full, f"blobs/sha256/{sha(BASE)}", node.root / "v2-oci-thin.tar")
    node.import_archive(thin, *(["--local"] if node.chroot is not None else []))
    assert V2.config_digest in node.images()


def test_the_pin_label_can_be_set(node: ContainerdNode) -> None:
    node.import_archive(legacy(node.root / "v1.tar", [V1]))
    node.ctr("images", "label", "docker.io/acme/web:1", "io.cri-containerd.pinned=pinned")
    assert "io.cri-containerd.pinned=pinned" in node.ctr("images", "ls").stdout
