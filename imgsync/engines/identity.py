"""Is the image an engine holds a given version? The same answer on both image stores.

A version is a config digest (:class:`~imgsync.model.Marker`). The classic store uses it
as the image ID; the containerd store names an image by a manifest digest instead, one the
engine may have written itself while loading, so there the ID proves nothing and the
image's layers (diff IDs) and runtime config are compared with the bundle's.

An agentless peer keeps no record of what it loaded, so there :func:`matches` decides from
what ``docker image inspect`` says alone (:func:`from_inspect`), against the runtime config
read from the bundle in the export dir (:func:`imgsync.bundle.verify.bundle_runtime`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from imgsync.engines.base import ImageInfo, ReceivingEngine
from imgsync.errors import ImageNotFound
from imgsync.model import VERSION_RE, Marker, RuntimeConfig, runtime_config

INSPECT_MAX = 1024 * 1024  # the most ``docker image inspect`` of one image may say
_BARE_ID = re.compile(r"[0-9a-f]{64}")


def inspect_or_none(engine: ReceivingEngine, reference: str) -> ImageInfo | None:
    try:
        return engine.inspect(reference)
    except ImageNotFound:
        return None


def is_version(
    info: ImageInfo, current: Marker, runtime: RuntimeConfig, ids_are_versions: bool
) -> bool:
    """Is ``info`` (what a reference names after a load) the marker's version? Its layers
    and runtime config must be the bundle's (``runtime``), and where the engine's IDs are
    versions (the classic store, containerd, Podman) its ID is the version itself. (On
    Docker's containerd store the ID is a manifest digest the bundle cannot predict:
    nothing more to compare.)"""
    if info.diff_ids != current.layers or (runtime and info.runtime != runtime):
        return False
    return not ids_are_versions or info.id == current.version


def held_version(engine: ReceivingEngine, current: Marker, candidates: list[str]) -> str | None:
    """The ID of an image the engine holds that is ``current``'s version, if any.
    ``candidates``: the version itself (a classic-store ID) and the IDs recorded for it."""
    for image_id in candidates:
        info = inspect_or_none(engine, image_id)
        if info is not None and info.diff_ids == current.layers:
            return info.id
    return None


def matches(
    image_id: str,
    diff_ids: tuple[str, ...],
    runtime: RuntimeConfig,
    current: Marker,
    bundle_runtime: Callable[[], RuntimeConfig],
) -> bool:
    """Is the image an engine shows (its ID, diff IDs and runtime config) ``current``'s
    version, with no record of loads to go by? Yes when its ID is the version (the classic
    store), or when its layers are the marker's and its runtime config the bundle's (the
    containerd store, whose ID is a manifest digest). ``bundle_runtime`` is asked only
    then, so a classic-store peer never has the bundle opened."""
    if image_id == current.version:
        return True
    return diff_ids == current.layers and runtime == bundle_runtime()


def from_inspect(data: Any) -> ImageInfo:
    """The :class:`ImageInfo` in one image's ``docker image inspect`` JSON (untrusted: a
    peer's answer; ``podman image inspect``'s too: a one-item array, an ID without
    ``sha256:``); raise ``ValueError`` saying what is wrong with it. No ``RootFS.Layers``
    means no layers, as Docker omits an empty list."""
    if isinstance(data, list) and len(data) == 1:  # podman prints the array it inspected
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    image_id = data.get("Id")
    if isinstance(image_id, str) and _BARE_ID.fullmatch(image_id):  # podman: no sha256:
        image_id = f"sha256:{image_id}"
    if not isinstance(image_id, str) or not VERSION_RE.fullmatch(image_id):
        raise ValueError(f"Id {str(image_id)[:80]!r} is not an image digest")
    rootfs = data.get("RootFS") or {}
    layers = rootfs.get("Layers") if isinstance(rootfs, dict) else rootfs
    if not isinstance(layers, list | None) or not all(
        isinstance(layer, str) and VERSION_RE.fullmatch(layer) for layer in layers or ()
    ):
        raise ValueError(f"RootFS {str(rootfs)[:80]!r} does not list layer digests")
    runtime = runtime_config(data.get("Config"), data.get("Architecture"), data.get("Os"))
    return ImageInfo(image_id, tuple(layers or ()), 0, runtime)
