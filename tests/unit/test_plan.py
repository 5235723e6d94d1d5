"""What each peer needs is decided from data alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imgsync.model import Inventory, Marker, PeerImage
from imgsync.plan import Step, needs_export, plan_peer, thin_positions

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def marker(image: str, version: str) -> Marker:
    return Marker(image, version, (), f"{image[:3]}.tar", 10, "0" * 64, "now")


def test_export_only_when_the_image_moved_or_the_bundle_is_gone() -> None:
    assert needs_export(V1, None, bundle_intact=False)
    assert not needs_export(V1, marker("a:1", V1), bundle_intact=True)
    assert needs_export(V2, marker("a:1", V1), bundle_intact=True)
    assert needs_export(V1, marker("a:1", V1), bundle_intact=False)


def test_on_a_containerd_source_the_export_is_compared_by_the_engines_own_id() -> None:
    manifest, other = "sha256:" + "e" * 64, "sha256:" + "f" * 64
    exported = replace(marker("a:1", V1), image_id=manifest)
    assert not needs_export(manifest, exported, bundle_intact=True)
    assert needs_export(other, exported, bundle_intact=True)  # the image moved on
    assert needs_export(V1, exported, bundle_intact=True)  # not the ID the engine gave it
    assert needs_export(manifest, exported, bundle_intact=False)


CHAINS = ["sha256:" + c * 64 for c in "abc"]  # chain IDs of a three-layer image
BLOBS = ["sha256:" + c * 64 for c in "def"]  # its layer blobs in an OCI bundle


def test_the_classic_store_leaves_out_every_layer_it_holds_whatever_the_layout() -> None:
    assert thin_positions("classic", (0, 1), CHAINS, {}, None) == (0, 1)
    assert thin_positions("classic", (0, 1), CHAINS, {}, BLOBS) == (0, 1)


def test_the_containerd_store_gets_a_legacy_bundle_in_full() -> None:
    every_blob = dict(zip(CHAINS, BLOBS, strict=True))
    assert thin_positions("containerd", (0, 1), CHAINS, every_blob, None) == ()


def test_the_containerd_store_leaves_out_only_layers_it_holds_as_the_bundles_blob() -> None:
    peer_blobs = {
        CHAINS[0]: BLOBS[0],  # loaded before from this source's bundle
        CHAINS[1]: "sha256:" + "9" * 64,  # the same layer, another blob (pulled, recompressed)
    }
    assert thin_positions("containerd", (0, 1), CHAINS, peer_blobs, BLOBS) == (0,)
    assert thin_positions("containerd", (0, 1), CHAINS, {}, BLOBS) == ()  # no record: full


def test_podman_like_containerd_reuses_only_a_held_blob_and_never_from_a_legacy_bundle() -> None:
    diff_ids = {CHAINS[0]: BLOBS[0], CHAINS[1]: "sha256:" + "8" * 64}  # its uncompressed blobs
    assert thin_positions("podman", (0, 1), CHAINS, diff_ids, BLOBS) == (0,)
    assert thin_positions("podman", (0, 1), CHAINS, diff_ids, None) == ()


@pytest.mark.parametrize("store", ["unknown", "", "Classic"])
def test_a_store_imgsync_does_not_know_gets_full_bundles(store: str) -> None:
    every_blob = dict(zip(CHAINS, BLOBS, strict=True))
    assert thin_positions(store, (0, 1), CHAINS, every_blob, BLOBS) == ()
    assert thin_positions(store, (0, 1), CHAINS, every_blob, None) == ()


def test_a_peer_gets_only_what_it_does_not_run() -> None:
    markers = {"a:1": marker("a:1", V2), "b:1": marker("b:1", V1), "c:1": marker("c:1", V1)}
    inventory = Inventory(
        {
            "a:1": PeerImage(running=V1, inbox=None),  # old version running
            "b:1": PeerImage(running=V1, inbox=None),  # current
            # c:1 never reported: the peer has nothing
        }
    )
    steps = {item.image: item.step for item in plan_peer(markers, inventory)}
    assert steps == {"a:1": Step.SEND, "b:1": Step.SKIP, "c:1": Step.SEND}


def test_a_bundle_already_in_the_inbox_is_applied_not_sent_again() -> None:
    markers = {"a:1": marker("a:1", V2)}
    inventory = Inventory({"a:1": PeerImage(running=V1, inbox=V2)})
    (item,) = plan_peer(markers, inventory)
    assert item.step is Step.APPLY


def test_a_stale_inbox_bundle_does_not_count() -> None:
    markers = {"a:1": marker("a:1", V2)}
    inventory = Inventory({"a:1": PeerImage(running=None, inbox=V1)})
    (item,) = plan_peer(markers, inventory)
    assert item.step is Step.SEND and "does not have it" in item.reason


MIB = 1024 * 1024


def sized(image: str, version: str, size: int) -> Marker:
    return Marker(image, version, (), f"{image[:3]}.tar", size, "0" * 64, "now")


def test_a_bundle_that_fits_in_the_inbox_is_sent() -> None:
    markers = {"a:1": sized("a:1", V2, 100 * MIB)}
    need = 100 * MIB + 10 * MIB + 16 * MIB  # size + 10% + 16 MiB
    inventory = Inventory({"a:1": PeerImage(V1, None)}, inbox_free=need)
    (item,) = plan_peer(markers, inventory, "/in")
    assert item.step is Step.SEND


def test_a_bundle_that_does_not_fit_is_not_sent_and_says_why() -> None:
    markers = {"a:1": sized("a:1", V2, 100 * MIB)}
    need = 100 * MIB + 10 * MIB + 16 * MIB
    inventory = Inventory({"a:1": PeerImage(V1, None)}, inbox_free=need - 1)
    (item,) = plan_peer(markers, inventory, "/in")
    assert item.step is Step.NO_ROOM
    assert item.reason == (
        f"not enough space in inbox /in for a:1: need {need} bytes, {need - 1} free"
    )


def test_the_inbox_space_is_counted_over_every_bundle_sent_in_the_cycle() -> None:
    markers = {
        "a:1": sized("a:1", V2, 50 * MIB),  # fits
        "b:1": sized("b:1", V2, 50 * MIB),  # would fit alone, not after a:1
        "c:1": sized("c:1", V2, 1 * MIB),  # fits in what is left
        "d:1": sized("d:1", V2, 900 * MIB),  # skipped: the peer runs it, needs no room
    }
    inventory = Inventory(
        {name: PeerImage(V2 if name == "d:1" else None, None) for name in markers},
        inbox_free=120 * MIB,
    )
    items = {item.image: item for item in plan_peer(markers, inventory, "/in")}
    steps = {image: item.step for image, item in items.items()}
    assert steps == {"a:1": Step.SEND, "b:1": Step.NO_ROOM, "c:1": Step.SEND, "d:1": Step.SKIP}
    a_need = 50 * MIB + 5 * MIB + 16 * MIB
    assert f"{120 * MIB - a_need} free" in items["b:1"].reason
    assert f"after {a_need} bytes for other images" in items["b:1"].reason


def test_an_inbox_already_holding_the_bundle_needs_no_room() -> None:
    markers = {"a:1": sized("a:1", V2, 100 * MIB)}
    inventory = Inventory({"a:1": PeerImage(V1, V2)}, inbox_free=0)
    (item,) = plan_peer(markers, inventory, "/in")
    assert item.step is Step.APPLY
