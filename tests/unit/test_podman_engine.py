"""The Podman adapter's own decisions (its API calls are the Docker adapter's, proven on
real podman 4.3 and 5 in tests/e2e/test_podman_peers.py)."""

from __future__ import annotations

from imgsync.engines.base import ImageInfo
from imgsync.engines.podman import PodmanEngine, local_name
from imgsync.model import chain_ids

L0, L1 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
IMAGE = "sha256:" + "c" * 64


class CountingPodman(PodmanEngine):
    """Holds one image; counts what it is asked (no socket behind it)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def image_ids(self) -> set[str]:
        return {IMAGE}

    def inspect(self, reference: str) -> ImageInfo:
        self.asked.append(reference)
        return ImageInfo(IMAGE, (L0, L1), 0)


def test_the_layers_podman_holds_are_its_uncompressed_blobs_by_chain_id() -> None:
    assert CountingPodman().layer_blobs() == dict(zip(chain_ids((L0, L1)), (L0, L1), strict=True))


def test_an_inventory_inspects_each_image_once_for_chains_and_blobs() -> None:
    podman = CountingPodman()
    podman.layer_chains()
    podman.layer_blobs()
    assert podman.asked == [IMAGE]


def test_a_legacy_load_names_an_image_under_localhost_unless_it_names_a_registry() -> None:
    assert local_name("acme/web:1") == "localhost/acme/web:1"
    assert local_name("docker.io/library/web:1") == "localhost/web:1"
    assert local_name("registry.local:5000/web:1") == "registry.local:5000/web:1"
