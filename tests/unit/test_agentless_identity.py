"""What an agentless peer's image is compared with: the runtime config read from the bundle
in the export dir, and the stateless rule (the version as ID, or the marker's layers and
the bundle's runtime config)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle.verify import bundle_runtime
from imgsync.engines import identity
from imgsync.errors import VerificationError
from imgsync.model import Marker, runtime_config

from . import tarballs

SETTINGS = {
    "config": {"Cmd": ["/app"], "Env": ["A=1"], "Labels": {"v": "1"}},
    "architecture": "arm64",
    "os": "linux",
}
RUNTIME = runtime_config(SETTINGS["config"], "arm64", "linux")
LAYERS = [tarballs.layer_tar({"a": b"1"}), tarballs.layer_tar({"b": b"2"})]
IMAGE = tarballs.Image("app:1", LAYERS, settings=SETTINGS)
MARKER = Marker("docker.io/library/app:1", IMAGE.config_digest, IMAGE.diff_ids, "app.tar", 1,
                "0" * 64, "now")  # fmt: skip
MANIFEST = "sha256:" + "e" * 64


def never() -> Any:
    raise AssertionError("the bundle was read")


@pytest.mark.parametrize(
    "write",
    [
        lambda path: tarballs.legacy(path, [IMAGE]),
        lambda path: tarballs.oci(path, [IMAGE]),
        lambda path: tarballs.oci(path, [IMAGE], with_manifest_json=False),
        lambda path: tarballs.legacy(path, [IMAGE], omit={0, 1}),  # needs no layer data
    ],
    ids=["legacy", "oci", "oci-index-only", "no-layers-inside"],
)
def test_the_runtime_config_is_read_from_either_layout(tmp_path: Path, write: Any) -> None:
    path = write(tmp_path / "app.tar")
    assert bundle_runtime(path) == RUNTIME
    assert bundle_runtime(path, IMAGE.config_digest) == RUNTIME


def test_a_bundle_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tarballs.legacy(tmp_path / "app.tar", [IMAGE])
    with pytest.raises(VerificationError, match=r"app\.tar holds image sha256:.*marker names"):
        bundle_runtime(path, "sha256:" + "1" * 64)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "members",
    [
        {"manifest.json": b"not json"},
        {"manifest.json": b"{}"},
        {"manifest.json": b'[{"Config": "missing.json"}]'},
        {"manifest.json": b'[{"Config": "c.json"}]', "c.json": b"[1]"},
        {"manifest.json": b'[{"Config": "c.json"}]', "c.json": b"{" * (2 * 1024 * 1024)},
        {"index.json": b'{"manifests": [{"digest": "../../etc/passwd"}]}'},
        {"repositories": b"{}"},
    ],
    ids=[
        "not-json",
        "not-a-list",
        "no-config",
        "config-not-object",
        "huge",
        "bad-digest",
        "no-manifest",
    ],
)
def test_an_unreadable_bundle_raises_verification_error(
    tmp_path: Path, members: dict[str, bytes]
) -> None:
    path = _tar(tmp_path / "app.tar", members)
    with pytest.raises(VerificationError, match=r"bundle app\.tar"):
        bundle_runtime(path)


def test_a_bundle_with_two_images_or_none_at_all_is_refused(tmp_path: Path) -> None:
    other = tarballs.Image("other:1", LAYERS[:1], settings=SETTINGS)
    with pytest.raises(VerificationError, match="exactly one"):
        bundle_runtime(tarballs.legacy(tmp_path / "two.tar", [IMAGE, other]))
    with pytest.raises(VerificationError, match="missing"):
        bundle_runtime(tmp_path / "gone.tar")
    (tmp_path / "junk.tar").write_bytes(b"\x00junk" * 300)
    with pytest.raises(VerificationError, match=r"junk\.tar"):
        bundle_runtime(tmp_path / "junk.tar")


def test_the_version_as_id_matches_without_reading_the_bundle() -> None:
    assert identity.matches(MARKER.version, (), (), MARKER, never)


def test_a_manifest_id_matches_with_the_layers_and_the_runtime_config() -> None:
    assert identity.matches(MANIFEST, MARKER.layers, RUNTIME, MARKER, lambda: RUNTIME)
    other = runtime_config({**SETTINGS["config"], "Cmd": ["/x"]}, "arm64", "linux")
    assert not identity.matches(MANIFEST, MARKER.layers, other, MARKER, lambda: RUNTIME)
    amd64 = runtime_config(SETTINGS["config"], "amd64", "linux")
    assert not identity.matches(MANIFEST, MARKER.layers, amd64, MARKER, lambda: RUNTIME)
    assert not identity.matches(MANIFEST, MARKER.layers[:1], RUNTIME, MARKER, never)
    assert not identity.matches(MANIFEST, MARKER.layers[::-1], RUNTIME, MARKER, never)


def test_what_inspect_shows_is_read_defensively() -> None:
    shown = {
        "Id": MANIFEST,
        "RootFS": {"Type": "layers", "Layers": list(MARKER.layers)},
        "Config": {**SETTINGS["config"], "Hostname": "", "Volumes": None, "OnBuild": []},
        "Architecture": "arm64",
        "Os": "linux",
    }
    info = identity.from_inspect(json.loads(json.dumps(shown)))
    assert (info.id, info.diff_ids, info.runtime) == (MANIFEST, MARKER.layers, RUNTIME)
    assert identity.from_inspect({"Id": MANIFEST, "RootFS": {"Type": "layers"}}).diff_ids == ()
    for bad in ([], {"Id": 1}, {"Id": MANIFEST, "RootFS": {"Layers": [1]}}, {"Id": "x"}):
        with pytest.raises(ValueError):
            identity.from_inspect(bad)


def test_what_podman_inspect_shows_reads_the_same_as_docker() -> None:
    """Podman prints the array it inspected, and its IDs without ``sha256:``."""
    bare = MANIFEST.removeprefix("sha256:")
    shown = [{"Id": bare, "RootFS": {"Type": "layers", "Layers": list(MARKER.layers)}}]
    info = identity.from_inspect(json.loads(json.dumps(shown)))
    assert (info.id, info.diff_ids) == (MANIFEST, MARKER.layers)
    for bad in ([shown[0], shown[0]], [{"Id": bare.upper()}], [{"Id": bare[:63]}]):
        with pytest.raises(ValueError):
            identity.from_inspect(bad)
