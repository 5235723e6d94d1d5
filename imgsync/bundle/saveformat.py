"""``docker save`` tarballs, both layouts, read in one sequential pass (:mod:`tarstream`).

- legacy (Docker ≤ 24): ``<id>/layer.tar`` per layer, ``<config>.json``, ``manifest.json``,
  ``repositories``;
- OCI (Docker ≥ 25, and the containerd store): ``oci-layout``, ``index.json``,
  ``blobs/sha256/<digest>`` (layer blobs may be gzip-compressed: blob digest ≠ diff ID),
  usually with a compatibility ``manifest.json``; without one, images are found through
  ``index.json`` and their OCI manifests.

:func:`scan` hashes the whole stream, every member (and a gzip layer's uncompressed
content), records where each member lies, and checks each layer present against its
digest: sha256 of a legacy ``layer.tar`` is its diff ID; an OCI blob's sha256 is its name,
and its uncompressed sha256 its diff ID (gzip is inflated on the way; a zstd blob is
checked by its digest only). Small members are kept in memory to read the
manifests; layer data is never held. A mismatch raises :class:`VerificationError`.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsync.bundle import tarstream
from imgsync.errors import VerificationError
from imgsync.model import RuntimeConfig, runtime_config

Readable = tarstream.Readable
SMALL = 1024 * 1024  # members up to this size are kept to read manifests and configs
_SMALL_TOTAL = 16 * 1024 * 1024  # of JSON kept to read the manifests and configs


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # where its header starts in the tarball
    end: int  # where its data (padded to 512) ends
    size: int
    sha256: str  # of the member's bytes
    compression: str | None  # "gzip" or "zstd" when the data starts with their magic
    content_sha256: str | None  # of its gzip-decompressed bytes, for a gzip blob


@dataclass(frozen=True)
class SavedImage:
    repo_tags: tuple[str, ...]
    config_digest: str
    diff_ids: tuple[str, ...]
    layer_paths: tuple[str, ...]  # one per diff ID, as the manifest lists them
    runtime: RuntimeConfig = ()  # what a container started from it gets (model.runtime_config)


@dataclass(frozen=True)
class Archive:
    layout: str  # "legacy" or "oci"
    images: tuple[SavedImage, ...]
    members: dict[str, Member]
    sha256: str
    size: int
    index_digests: tuple[str, ...] = ()  # OCI layout: the manifests index.json names
    data_end: int = 0  # where the end-of-archive blocks start: the last member's end

    def absent_layers(self, image: SavedImage) -> tuple[int, ...]:
        """Positions of the image's layers that the tarball does not hold (thin bundles)."""
        return tuple(i for i, path in enumerate(image.layer_paths) if path not in self.members)


def scan(
    source: Readable,
    sink: Callable[[memoryview], object] | None = None,
    on_member: Callable[[Member], None] | None = None,
) -> Archive:
    """Read a tarball once from ``source`` (forwarding its bytes to ``sink``, and each
    regular member to ``on_member`` once its data has passed)."""
    cursor = tarstream.Cursor(source, sink)
    members: dict[str, Member] = {}
    small: dict[str, bytes] = {}
    try:
        # tarfile reads the headers; the data passes by it (tarstream)
        with tarfile.open(fileobj=cursor, mode="r:") as tar:  # type: ignore[call-overload]
            budget = tarstream.Budget(_SMALL_TOTAL)
            for info, data in tarstream.files(tar, cursor, SMALL, budget):
                member = members[info.name] = _member(info, data, small)
                if on_member is not None:
                    on_member(member)
            data_end = tar.offset
        cursor.drain()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise VerificationError(f"not a readable image tarball ({err})") from None
    layout = "oci" if "oci-layout" in members else "legacy"
    try:
        index = json.loads(small["index.json"]) if layout == "oci" and "index.json" in small else {}
        if "manifest.json" in small:
            images = _from_manifest(json.loads(small["manifest.json"]), small)
        elif index:
            images = _from_oci_index(index, small)
        else:
            raise VerificationError("no manifest.json or index.json: not a docker save tarball")
        index_digests = tuple(str(d["digest"]) for d in index.get("manifests") or ())
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as err:
        raise VerificationError(f"unreadable image manifest ({err!r})") from None
    digest = cursor.digest.hexdigest()
    archive = Archive(layout, images, members, digest, cursor.size, index_digests, data_end)
    for image in images:
        _check_layers(archive, image)
    return archive


def describe(path: Path) -> tuple[str, SavedImage]:
    """The layout and the one image of the ``docker save`` tarball at ``path``, by random
    access: member headers, the manifests and the config, no layer data, nothing checked
    against digests (:func:`scan` does that). Raise :class:`VerificationError`, naming the
    file, when it cannot be read so or does not hold exactly one image."""
    name = path.name
    try:
        with tarfile.open(path, mode="r:") as tar:
            layout, images = _described(tar)
    except FileNotFoundError:
        raise VerificationError(f"bundle {name} is missing") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise VerificationError(f"bundle {name} is not a readable tarball ({err})") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as err:
        raise VerificationError(f"bundle {name}: unreadable image manifest ({err!r})") from None
    except VerificationError as err:
        raise VerificationError(f"bundle {name}: {err}") from None
    if len(images) != 1:
        raise VerificationError(f"bundle {name} holds {len(images)} images, not exactly one")
    return layout, images[0]


def _described(tar: tarfile.TarFile) -> tuple[str, tuple[SavedImage, ...]]:
    """The layout and the images of an open tarball, from its manifests and configs."""
    names = set(tar.getnames())
    layout = "oci" if "oci-layout" in names else "legacy"
    small: dict[str, bytes] = {}

    def read(member: str) -> bytes:
        small[member] = _small_member(tar, member)
        return small[member]

    if "manifest.json" in names:
        manifest = json.loads(read("manifest.json"))
        for entry in manifest:
            read(str(entry["Config"]))
        return layout, _from_manifest(manifest, small)
    if layout == "oci" and "index.json" in names:
        index = json.loads(read("index.json"))
        for descriptor in index["manifests"]:
            oci_manifest = json.loads(read(_blob(descriptor["digest"])))
            read(_blob(oci_manifest["config"]["digest"]))
        return layout, _from_oci_index(index, small)
    raise VerificationError("no manifest.json or index.json: not a docker save tarball")


def _small_member(tar: tarfile.TarFile, name: str) -> bytes:
    info = tar.getmember(name)  # KeyError when absent
    handle = tar.extractfile(info) if info.isfile() and info.size <= SMALL else None
    if handle is None:
        raise ValueError(f"{name} is not a file of at most {SMALL} bytes")
    return handle.read()


def _member(info: tarfile.TarInfo, data: tarstream.MemberData, small: dict[str, bytes]) -> Member:
    if data.kept is not None:
        small[info.name] = bytes(data.kept)
    return Member(
        info.name,
        info.offset,
        info.offset_data + -(-info.size // 512) * 512,
        info.size,
        data.digest.hexdigest(),
        data.compression,
        data.content.hexdigest() if data.content is not None else None,
    )


def _config(small: dict[str, bytes], path: str) -> tuple[str, tuple[str, ...], RuntimeConfig]:
    raw = small[path]
    config = json.loads(raw)
    runtime = runtime_config(config.get("config"), config.get("architecture"), config.get("os"))
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return digest, tuple(config["rootfs"]["diff_ids"]), runtime


def _from_manifest(manifest: list[Any], small: dict[str, bytes]) -> tuple[SavedImage, ...]:
    images = []
    for entry in manifest:
        digest, diff_ids, runtime = _config(small, str(entry["Config"]))
        paths = tuple(str(p) for p in entry["Layers"])
        if len(paths) != len(diff_ids):
            raise VerificationError(f"{len(paths)} layers listed, the config has {len(diff_ids)}")
        tags = tuple(entry.get("RepoTags") or ())
        images.append(SavedImage(tags, digest, diff_ids, paths, runtime))
    return tuple(images)


def _from_oci_index(index: dict[str, Any], small: dict[str, bytes]) -> tuple[SavedImage, ...]:
    images = []
    for descriptor in index["manifests"]:
        manifest = json.loads(small[_blob(descriptor["digest"])])
        digest, diff_ids, runtime = _config(small, _blob(manifest["config"]["digest"]))
        paths = tuple(_blob(layer["digest"]) for layer in manifest["layers"])
        annotations = descriptor.get("annotations") or {}
        name = annotations.get("io.containerd.image.name")
        tags = (name,) if name else ()
        images.append(SavedImage(tags, digest, diff_ids, paths, runtime))
    return tuple(images)


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _check_layers(archive: Archive, image: SavedImage) -> None:
    for path, diff_id in zip(image.layer_paths, image.diff_ids, strict=True):
        member = archive.members.get(path)
        if member is None:
            continue  # left out of a thin bundle; the caller decides
        if path.startswith("blobs/sha256/") and member.sha256 != path.rsplit("/", 1)[1]:
            raise VerificationError(f"layer blob {path} does not match its digest")
        if member.compression == "zstd":
            continue  # no zstd decoder here: its blob digest (above) is what is checked
        uncompressed = member.content_sha256 or member.sha256
        if "sha256:" + uncompressed != diff_id:
            raise VerificationError(
                f"layer {path} has sha256 {uncompressed[:12]}…, its diff ID is "
                f"{diff_id.removeprefix('sha256:')[:12]}… (corrupted or tampered)"
            )


__all__ = ["Archive", "Member", "Readable", "SavedImage", "describe", "scan"]
