"""Is the image an engine holds a given version? The same answer on both image stores.

A version is a config digest (:class:`~imgsync.model.Marker`). The classic store uses it
as the image ID; the containerd store names an image by a manifest digest instead, one the
engine may have written itself while loading, so there the ID proves nothing and the
image's layers (diff IDs) and runtime config are compared with the bundle's.
"""

from __future__ import annotations

from imgsync.engine import Engine, ImageInfo
from imgsync.errors import ImageNotFound
from imgsync.model import Marker, RuntimeConfig


def inspect_or_none(engine: Engine, reference: str) -> ImageInfo | None:
    try:
        return engine.inspect(reference)
    except ImageNotFound:
        return None


def is_version(info: ImageInfo, current: Marker, runtime: RuntimeConfig, store: str) -> bool:
    """Is ``info`` (what a reference names after a load) the marker's version? Its layers
    and runtime config must be the bundle's (``runtime``), and on the classic store its ID
    is the version itself. (On the containerd store the ID is a manifest digest the bundle
    cannot predict: nothing more to compare.)"""
    if info.diff_ids != current.layers or (runtime and info.runtime != runtime):
        return False
    return store != "classic" or info.id == current.version


def held_version(engine: Engine, current: Marker, candidates: list[str]) -> str | None:
    """The ID of an image the engine holds that is ``current``'s version, if any.
    ``candidates``: the version itself (a classic-store ID) and the IDs recorded for it."""
    for image_id in candidates:
        info = inspect_or_none(engine, image_id)
        if info is not None and info.diff_ids == current.layers:
            return info.id
    return None
