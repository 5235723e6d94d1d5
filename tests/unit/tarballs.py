"""Synthetic ``docker save`` tarballs built to the spec: legacy and OCI layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@dataclass
class Image:
    tag: str
    layers: list[bytes]  # uncompressed layer tars, bottom first
    compress: bool = False  # OCI only: gzip the layer blobs
    settings: dict[str, Any] = field(default_factory=dict)  # more config keys ("config", "os")
    config: bytes = field(init=False)

    def __post_init__(self) -> None:
        diff_ids = ["sha256:" + sha(layer) for layer in self.layers]
        document = {"rootfs": {"type": "layers", "diff_ids": diff_ids}, **self.settings}
        self.config = json.dumps(document).encode()

    @property
    def config_digest(self) -> str:
        return "sha256:" + sha(self.config)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple("sha256:" + sha(layer) for layer in self.layers)


def legacy(path: Path, images: list[Image], omit: set[int] = frozenset()) -> Path:  # type: ignore[assignment]
    """Docker ≤ 24's layout; ``omit`` leaves out those layer positions (a thin bundle)."""
    manifest = []
    with tarfile.open(path, "w") as tar:
        for image in images:
            paths = []
            for index, layer in enumerate(image.layers):
                name = f"{sha(layer + image.tag.encode())}/layer.tar"
                paths.append(name)
                if index not in omit:
                    _add(tar, name, layer)
            _add(tar, f"{sha(image.config)}.json", image.config)
            manifest.append(
                {"Config": f"{sha(image.config)}.json", "RepoTags": [image.tag], "Layers": paths}
            )
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def oci(path: Path, images: list[Image], with_manifest_json: bool = True) -> Path:
    """Docker ≥ 25's layout: blobs by digest, index.json, maybe manifest.json."""
    blobs: dict[str, bytes] = {}
    index, manifest_json = [], []
    for image in images:
        layer_blobs = [gzip.compress(layer, mtime=0) if image.compress else layer
                       for layer in image.layers]  # fmt: skip
        for blob in [*layer_blobs, image.config]:
            blobs[sha(blob)] = blob
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if image.compress else "")
        manifest = json.dumps({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": image.config_digest, "size": len(image.config)},
            "layers": [{"mediaType": media, "digest": "sha256:" + sha(b), "size": len(b)}
                       for b in layer_blobs],
        }).encode()  # fmt: skip
        blobs[sha(manifest)] = manifest
        index.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": "sha256:" + sha(manifest), "size": len(manifest),
                      "annotations": {"io.containerd.image.name": image.tag}})  # fmt: skip
        layer_paths = [f"blobs/sha256/{sha(b)}" for b in layer_blobs]
        manifest_json.append({"Config": f"blobs/sha256/{sha(image.config)}",
                              "RepoTags": [image.tag], "Layers": layer_paths})  # fmt: skip
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        for digest, blob in blobs.items():
            _add(tar, f"blobs/sha256/{digest}", blob)
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())
        if with_manifest_json:
            _add(tar, "manifest.json", json.dumps(manifest_json).encode())
    return path
