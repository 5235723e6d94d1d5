"""A bundle is believed only when it matches its marker in every respect."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from imgsync.bundle import verify
from imgsync.errors import VerificationError
from imgsync.model import Marker


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def saved_image(path: Path, tag: str = "acme/web:1", layer: bytes = b"layer-bytes") -> Marker:
    """Write a legacy-layout ``docker save`` tarball and return its true marker."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": ["l1/layer.tar"]}]
    with tarfile.open(path, "w") as tar:
        _add(tar, "l1/layer.tar", layer)
        _add(tar, f"{config_hex}.json", config)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    sha256, size = verify.hash_file(path)
    return Marker(tag, "sha256:" + config_hex, (diff_id,), path.name, size, sha256, "now")


def test_a_true_bundle_verifies_and_names_the_image_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    marker = saved_image(path)
    image = verify.verify(path, marker)
    assert (image.config_digest, image.diff_ids) == (marker.version, marker.layers)


def test_a_flipped_byte_is_caught_by_sha256(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    marker = saved_image(path)
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="corrupted or tampered"):
        verify.verify(path, marker)


def test_a_truncated_bundle_is_caught_by_size(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    marker = saved_image(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(VerificationError, match="its marker says"):
        verify.verify(path, marker)


def test_a_bundle_carrying_another_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    true = saved_image(path, tag="acme/other:1")
    claimed = Marker(
        "acme/web:1", true.version, true.layers, true.bundle, true.size, true.sha256, "now"
    )
    with pytest.raises(VerificationError, match=r"tagged \['acme/other:1'\]"):
        verify.verify(path, claimed)


def test_a_bundle_of_another_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    true = saved_image(path)
    claimed = Marker(
        true.reference,
        "sha256:" + "f" * 64,
        true.layers,
        true.bundle,
        true.size,
        true.sha256,
        "now",
    )
    with pytest.raises(VerificationError, match="holds image"):
        verify.verify(path, claimed)


def test_a_missing_bundle_is_named(tmp_path: Path) -> None:
    marker = saved_image(tmp_path / "b.tar")
    with pytest.raises(VerificationError, match="is missing"):
        verify.verify(tmp_path / "gone.tar", marker)


def test_garbage_is_not_an_image_tarball(tmp_path: Path) -> None:
    path = tmp_path / "junk.tar"
    path.write_bytes(b"\x00" * 10 + b"junk" * 100)
    marker = saved_image(tmp_path / "b.tar")
    claimed = Marker(marker.reference, marker.version, marker.layers, "junk.tar",
                     path.stat().st_size, marker.sha256, "now")  # fmt: skip
    with pytest.raises(VerificationError, match="not a readable image tarball"):
        verify.verify(path, claimed)
