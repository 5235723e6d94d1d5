"""What each peer needs is decided from data alone."""

from __future__ import annotations

from imgsync.model import Inventory, Marker, PeerImage
from imgsync.plan import Step, needs_export, plan_peer

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def marker(image: str, version: str) -> Marker:
    return Marker(image, version, (), f"{image[:3]}.tar", 10, "0" * 64, "now")


def test_export_only_when_the_image_moved_or_the_bundle_is_gone() -> None:
    assert needs_export(V1, None, bundle_intact=False)
    assert not needs_export(V1, marker("a:1", V1), bundle_intact=True)
    assert needs_export(V2, marker("a:1", V1), bundle_intact=True)
    assert needs_export(V1, marker("a:1", V1), bundle_intact=False)


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
