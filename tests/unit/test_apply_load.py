"""apply loads the very file it verified: a bundle swapped under its name between the check
and the load (here while apply asks the engine which layers it holds) changes nothing; and
a load that does not yield the marker's version puts the previous image back (rollback)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from imgsync.bundle.bundledir import BundleDir
from imgsync.engines.base import ImageInfo
from imgsync.errors import ImageNotFound, VerificationError
from imgsync.model import Action, Marker, chain_ids
from imgsync.receiver.apply import _apply_marker

from .tarballs import Image, layer_tar, legacy

IMAGE = Image("acme/web:1", [layer_tar({"bin/sh": b"s" * 5000}), layer_tar({"app": b"a" * 900})])
REF = "docker.io/acme/web:1"


class SwappingEngine:
    """Holds the base layer; renames ``swap_in`` over ``path`` when asked for its layers;
    records what ``load`` read."""

    def __init__(self, path: Path, swap_in: Path) -> None:
        self.path, self.swap_in, self.loaded = path, swap_in, b""

    def image_id(self, reference: str) -> str | None:
        return None

    def inspect(self, reference: str) -> ImageInfo:
        if not self.loaded:
            raise ImageNotFound(reference)
        return ImageInfo(IMAGE.config_digest, IMAGE.diff_ids, 1)

    def layer_chains(self) -> set[str]:
        self.swap_in.replace(self.path)  # a concurrent writer, between check and load
        return {chain_ids(IMAGE.diff_ids)[0]}

    def load(self, tarball: BinaryIO, what: str, reference: str | None = None) -> list[str]:
        self.loaded = tarball.read()
        return []

    def store(self) -> str:
        return "classic"

    def ids_are_versions(self) -> bool:
        return True

    def image_ids(self) -> set[str]:
        return {IMAGE.config_digest}

    def tag(self, image_id: str, reference: str) -> None:
        pass


def test_the_bundle_loaded_is_the_one_verified_even_if_its_name_is_swapped(tmp_path: Path) -> None:
    inbox = BundleDir(tmp_path)
    thin = legacy(tmp_path / "web_1.tar", [IMAGE], omit={0})
    data = thin.read_bytes()
    marker = Marker(REF, IMAGE.config_digest, IMAGE.diff_ids, thin.name, len(data),
                    hashlib.sha256(data).hexdigest(), "now", omitted=(0,))  # fmt: skip
    hostile = tmp_path / "hostile"
    hostile.write_bytes(b"x" * len(data))
    engine: Any = SwappingEngine(thin, hostile)
    action, _ = _apply_marker(engine, inbox, marker)
    assert action is Action.LOADED
    assert engine.loaded == data


class WrongLoad(SwappingEngine):
    """Runs an older image under the tag; its load leaves the tag on an image that is not
    the marker's version (other layers). Records the tags it is asked to move."""

    OLD = "sha256:" + "0" * 64

    def __init__(self, path: Path) -> None:
        super().__init__(path, path)
        self.tags: list[tuple[str, str]] = []

    def image_id(self, reference: str) -> str | None:
        return self.OLD

    def inspect(self, reference: str) -> ImageInfo:
        if reference == REF and self.loaded:
            return ImageInfo("sha256:" + "9" * 64, ("sha256:" + "8" * 64,), 1)
        raise ImageNotFound(reference)

    def layer_chains(self) -> set[str]:
        return {chain_ids(IMAGE.diff_ids)[0]}

    def tag(self, image_id: str, reference: str) -> None:
        self.tags.append((image_id, reference))


def test_a_load_that_does_not_yield_the_markers_version_puts_the_previous_image_back(
    tmp_path: Path,
) -> None:
    thin = legacy(tmp_path / "web_1.tar", [IMAGE], omit={0})
    data = thin.read_bytes()
    marker = Marker(REF, IMAGE.config_digest, IMAGE.diff_ids, thin.name, len(data),
                    hashlib.sha256(data).hexdigest(), "now", omitted=(0,))  # fmt: skip
    engine: Any = WrongLoad(thin)
    with pytest.raises(VerificationError, match="the previous image was kept"):
        _apply_marker(engine, BundleDir(tmp_path), marker)
    assert engine.tags == [(WrongLoad.OLD, REF)]
