"""Whether an image the engine holds is a given version gets the same answer on an engine whose
IDs are versions (Docker's classic store, containerd and Podman as imgsync reads them) and on
Docker's containerd store (the ID is a manifest digest)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from imgsync.engines import identity
from imgsync.engines.base import ImageInfo, ReceivingEngine
from imgsync.errors import EngineError, ImageNotFound
from imgsync.model import Marker, runtime_config

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
L1, L2, L3 = ("sha256:" + c * 64 for c in "567")
MANIFEST = "sha256:" + "e" * 64  # a containerd image ID
RUNTIME = runtime_config({"Cmd": ["/app"], "Env": ["A=1"]}, "amd64", "linux")
OTHER_RUNTIME = runtime_config({"Cmd": ["/other"], "Env": ["A=1"]}, "amd64", "linux")

CURRENT = Marker("acme/web:1", V1, (L1, L2), "web.tar", 10, "0" * 64, "now")


class FakeEngine:
    """Holds images by ID (and by any other name given); inspect() as the real one."""

    def __init__(self, *images: ImageInfo) -> None:
        self.images = {info.id: info for info in images}
        self.asked: list[str] = []

    def inspect(self, reference: str) -> ImageInfo:
        self.asked.append(reference)
        if reference not in self.images:
            raise ImageNotFound(f"image {reference} not found")
        return self.images[reference]


def engine(*images: ImageInfo) -> ReceivingEngine:
    return cast(ReceivingEngine, FakeEngine(*images))


def info(image_id: str, layers: tuple[str, ...] = (L1, L2), runtime: tuple = RUNTIME) -> ImageInfo:
    return ImageInfo(image_id, layers, 100, runtime)


def test_on_the_classic_store_the_loaded_image_must_have_the_version_as_its_id() -> None:
    assert identity.is_version(info(V1), CURRENT, RUNTIME, True)
    assert not identity.is_version(info(V2), CURRENT, RUNTIME, True)
    assert not identity.is_version(info(MANIFEST), CURRENT, RUNTIME, True)


def test_on_the_containerd_store_any_id_will_do_when_layers_and_runtime_match() -> None:
    assert identity.is_version(info(MANIFEST), CURRENT, RUNTIME, False)
    assert identity.is_version(info(V1), CURRENT, RUNTIME, False)


def test_other_layers_are_another_version_on_either_store() -> None:
    for by_id, image_id in ((True, V1), (False, MANIFEST)):
        assert not identity.is_version(info(image_id, (L1, L3)), CURRENT, RUNTIME, by_id)
        assert not identity.is_version(info(image_id, (L1,)), CURRENT, RUNTIME, by_id)
        assert not identity.is_version(info(image_id, (L2, L1)), CURRENT, RUNTIME, by_id)


def test_another_runtime_config_is_another_version_on_either_store() -> None:
    for by_id, image_id in ((True, V1), (False, MANIFEST)):
        loaded = info(image_id, runtime=OTHER_RUNTIME)
        assert not identity.is_version(loaded, CURRENT, RUNTIME, by_id)


def test_a_bundle_without_a_runtime_config_is_checked_by_layers_and_id_only() -> None:
    assert identity.is_version(info(MANIFEST, runtime=OTHER_RUNTIME), CURRENT, (), False)
    assert identity.is_version(info(V1, runtime=()), CURRENT, (), True)


def test_a_held_version_is_found_under_a_recorded_id() -> None:
    found = engine(info(MANIFEST), info(V2, (L3,)))
    assert identity.held_version(found, CURRENT, [V1, MANIFEST]) == MANIFEST


def test_a_held_version_is_found_under_its_own_id_on_the_classic_store() -> None:
    assert identity.held_version(engine(info(V1)), CURRENT, [V1]) == V1


def test_the_first_candidate_with_the_versions_layers_wins() -> None:
    other = "sha256:" + "f" * 64
    found = engine(info(MANIFEST), info(other))
    assert identity.held_version(found, CURRENT, [V1, other, MANIFEST]) == other


def test_no_version_is_held_when_no_candidate_exists_or_has_its_layers() -> None:
    stale = engine(info(MANIFEST, (L1, L3)))  # a recorded ID now naming other layers
    assert identity.held_version(stale, CURRENT, [V1, MANIFEST]) is None
    assert identity.held_version(engine(), CURRENT, [V1, MANIFEST]) is None
    assert identity.held_version(engine(info(V1)), CURRENT, []) is None


def test_inspect_or_none_answers_none_for_an_unknown_image_and_lets_other_errors_through() -> None:
    assert identity.inspect_or_none(engine(info(V1)), "acme/web:1") is None

    class Down:
        def inspect(self, reference: str) -> ImageInfo:
            raise EngineError("cannot reach Docker")

    down: Any = Down()
    with pytest.raises(EngineError, match="cannot reach Docker"):
        identity.inspect_or_none(down, V1)
