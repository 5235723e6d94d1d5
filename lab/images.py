"""Build test images FROM scratch: busybox plus layers of deterministic random bytes.

No registry and no pull: the build context (a tar we write ourselves) holds a static
busybox and one file per layer; the legacy builder turns every COPY into one layer.
Layer content is AES-CTR keystream keyed by (seed, layer name), so it is deterministic,
fast (GB/s) and incompressible, and different layers never share blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import docker
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from docker.utils import parse_repository_tag

BUSYBOX = Path("/bin/busybox")
CHUNK = 1024 * 1024
MTIME = 1_600_000_000  # fixed file mtime, so the same (seed, name, size) gives the same file


def random_chunks(seed: int, name: str, size: int) -> Iterator[bytes]:
    """``size`` deterministic pseudo-random bytes for (seed, name), in chunks of 1 MiB."""
    key = hashlib.sha256(f"imgsync-lab:{seed}:{name}".encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(CHUNK)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield encryptor.update(zeros if n == CHUNK else bytes(n))
        left -= n


class _ChunkReader(io.RawIOBase):
    """A read()-able view of an iterator of byte chunks (for tarfile.addfile)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    tar.addfile(info, io.BytesIO(data))


def layer_path(name: str) -> str:
    """Where a layer named ``name`` lives in the image: ``/`` + name (``app.bin`` -> /app.bin)."""
    return "/" + name.lstrip("/")


def write_context(
    out: IO[bytes], layers: list[tuple[str, int]], seed: int, labels: dict[str, str] | None = None
) -> None:
    """Write the build context tar (Dockerfile, busybox, one file per layer) to ``out``."""
    lines = ["FROM scratch", 'COPY ["rootfs/", "/"]']
    for index, (name, _size) in enumerate(layers):
        lines.append(f"COPY {json.dumps([f'layer{index}', layer_path(name)])}")
    for key, value in (labels or {}).items():
        lines.append(f"LABEL {json.dumps(key)}={json.dumps(value)}")
    lines.append('CMD ["/bin/busybox", "sh"]')
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "Dockerfile", ("\n".join(lines) + "\n").encode())
        for directory in ("rootfs", "rootfs/bin"):  # fixed dir mtimes: a reproducible layer
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        _add_bytes(tar, "rootfs/bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for index, (name, size) in enumerate(layers):
            info = tarfile.TarInfo(f"layer{index}")
            info.size, info.mode, info.mtime = size, 0o644, MTIME
            tar.addfile(
                info, io.BufferedReader(_ChunkReader(random_chunks(seed, name, size)), CHUNK)
            )


def build_image(
    client: docker.DockerClient,
    ref: str,
    layers: list[tuple[str, int]],
    seed: int,
    *,
    labels: dict[str, str] | None = None,
) -> str:
    """Build ``ref`` from scratch: busybox, then one layer per (name, size).  Returns its ID.

    Same ``seed`` and (name, size) give the same file content; use another seed (or name)
    for a layer that must differ.  ``labels`` change only the image config.
    """
    with tempfile.TemporaryFile(prefix="lab-context-") as context:
        write_context(context, layers, seed, labels)
        context.seek(0)
        image, _logs = client.images.build(
            fileobj=context,
            custom_context=True,
            tag=ref,
            rm=True,
            forcerm=True,
            pull=False,
            timeout=600,
        )
    if image.id is None:
        raise RuntimeError(f"build of {ref} returned no image id")
    return str(image.id)


def retag(client: docker.DockerClient, src_ref: str, dst_ref: str) -> str:
    """Tag the image ``src_ref`` as ``dst_ref`` too; returns the image ID."""
    image = client.images.get(src_ref)
    repo, tag = parse_repository_tag(dst_ref)
    image.tag(repo, tag or "latest")
    return str(image.id)


def layer_ids(client: docker.DockerClient, ref: str) -> list[str]:
    """The image's RootFS layer diff IDs, bottom first."""
    attrs = client.images.get(ref).attrs
    return list(attrs["RootFS"]["Layers"])


def _layer_tar(files: list[tuple[str, bytes, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            _add_bytes(tar, name, data, mode)
    return out.getvalue()


def load_oci_image(
    client: docker.DockerClient,
    ref: str,
    layers: list[tuple[str, int]],
    seed: int,
    *,
    labels: dict[str, str] | None = None,
    multi_platform: bool = False,
) -> str:
    """``docker load`` an OCI layout we write ourselves, with **gzip** layer blobs (blob
    digest ≠ diff ID), the way a pulled image lands in a containerd store. Busybox, then one
    layer per (name, size) as in :func:`build_image`. ``multi_platform``: the image is an
    index naming an arm64 manifest too, whose blobs are not in the layout — as a pulled
    multi-platform image sits in a containerd store, and as Docker 25+ saves it. Returns
    the engine's image ID."""
    import gzip

    raw = [_layer_tar([("bin/busybox", BUSYBOX.read_bytes(), 0o755)])]
    for name, size in layers:
        data = b"".join(random_chunks(seed, name, size))
        raw.append(_layer_tar([(layer_path(name).lstrip("/"), data, 0o644)]))
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_descs = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         **add(gzip.compress(tar, compresslevel=1, mtime=0))}
        for tar in raw
    ]  # fmt: skip
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-09-13T12:26:40Z",
        "config": {"Cmd": ["/bin/busybox", "sh"], "Labels": labels or None},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest() for tar in raw],
        },
        "history": [{"created": "2020-09-13T12:26:40Z"} for _ in raw],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **add(json.dumps(config).encode()),
        },
        "layers": layer_descs,
    }
    manifest_desc = add(json.dumps(manifest).encode())
    media_type = "application/vnd.oci.image.manifest.v1+json"
    if multi_platform:
        absent = "sha256:" + hashlib.sha256(b"arm64 " + ref.encode()).hexdigest()
        arm64 = {"architecture": "arm64", "os": "linux"}
        elsewhere = {"digest": absent, "size": 1234, "platform": arm64}
        image_index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": media_type, **manifest_desc,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": media_type, **elsewhere},
            ],
        }  # fmt: skip
        manifest_desc = add(json.dumps(image_index).encode())
        media_type = "application/vnd.oci.image.index.v1+json"
    repo, tag = parse_repository_tag(ref)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": media_type,
                **manifest_desc,
                "annotations": {
                    "io.containerd.image.name": f"docker.io/{repo}:{tag or 'latest'}",
                    "org.opencontainers.image.ref.name": tag or "latest",
                },
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            _add_bytes(tar, "blobs/sha256/" + digest.removeprefix("sha256:"), data)
    client.images.load(out.getvalue())
    return str(client.images.get(ref).id)
