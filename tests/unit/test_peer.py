"""A peer gets a thin bundle only where its image store can load one: the classic store any
layout; the containerd store only an OCI bundle whose left-out blobs it holds as such;
everything else travels in full."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from imgsync.model import HeldLayers, Marker, chain_ids
from imgsync.plan import PlanItem, Step
from imgsync.source.delivery import thin_for_store

from .tarballs import Image, layer_tar, legacy, oci, sha

BASE = layer_tar({"bin/sh": b"s" * 2000})
WEB = layer_tar({"app/web": b"w" * 1000})
DB = layer_tar({"app/db": b"d" * 1000})
NEW = layer_tar({"app/new": b"n" * 1000})
BASE_CHAIN = chain_ids(Image("x", [BASE]).diff_ids)[0]
BASE_BLOB = "sha256:" + sha(gzip.compress(BASE, mtime=0))  # as the OCI bundles carry it


def item(image: str, layers: list[bytes], bundle: str, step: Step = Step.SEND) -> PlanItem:
    built = Image(image, layers)
    marker = Marker(image, built.config_digest, built.diff_ids, bundle, 10, "0" * 64, "now")
    return PlanItem(image, marker, step, "test")


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    oci(tmp_path / "web.tar", [Image("acme/web:1", [BASE, WEB], compress=True)])
    legacy(tmp_path / "db.tar", [Image("acme/db:1", [BASE, DB])])
    return tmp_path


PLAN = [
    item("acme/web:1", [BASE, WEB], "web.tar"),  # OCI layout
    item("acme/db:1", [BASE, DB], "db.tar"),  # legacy layout
]


def left_out(omitted: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """What each bundle leaves out, as the sender reads it (absent: nothing)."""
    return {item.image: omitted.get(item.image, ()) for item in PLAN}


def test_the_classic_store_gets_every_bundle_thin(export_dir: Path) -> None:
    held = HeldLayers("classic", {BASE_CHAIN})
    assert left_out(thin_for_store(PLAN, held, export_dir)) == {
        "acme/web:1": (0,),
        "acme/db:1": (0,),
    }


def test_the_containerd_store_gets_an_oci_bundle_thin_when_it_holds_the_blob(
    export_dir: Path,
) -> None:
    held = HeldLayers("containerd", {BASE_CHAIN}, {BASE_CHAIN: BASE_BLOB})
    assert left_out(thin_for_store(PLAN, held, export_dir)) == {
        "acme/web:1": (0,),
        "acme/db:1": (),  # legacy: "layer not found" if left out
    }


def test_the_containerd_store_gets_full_bundles_when_it_holds_the_layer_as_another_blob(
    export_dir: Path,
) -> None:
    pulled = HeldLayers("containerd", {BASE_CHAIN}, {BASE_CHAIN: "sha256:" + "9" * 64})
    unrecorded = HeldLayers("containerd", {BASE_CHAIN})
    for held in (pulled, unrecorded):
        assert left_out(thin_for_store(PLAN, held, export_dir)) == {
            "acme/web:1": (),
            "acme/db:1": (),
        }


def test_a_store_imgsync_does_not_know_gets_every_bundle_full(export_dir: Path) -> None:
    held = HeldLayers("unknown", {BASE_CHAIN}, {BASE_CHAIN: BASE_BLOB})
    assert left_out(thin_for_store(PLAN, held, export_dir)) == {
        "acme/web:1": (),
        "acme/db:1": (),
    }


def test_a_bundle_not_exported_yet_counts_as_legacy(export_dir: Path) -> None:
    plan = [*PLAN, item("acme/new:1", [BASE, NEW], "new.tar")]  # a dry run: no file yet
    assert not (export_dir / "new.tar").exists()
    containerd = HeldLayers("containerd", {BASE_CHAIN}, {BASE_CHAIN: BASE_BLOB})
    assert thin_for_store(plan, containerd, export_dir).get("acme/new:1", ()) == ()
    classic = HeldLayers("classic", {BASE_CHAIN})
    assert thin_for_store(plan, classic, export_dir)["acme/new:1"] == (0,)


def test_a_base_shared_in_the_cycle_travels_once_on_the_classic_store(export_dir: Path) -> None:
    plan = [PLAN[0], item("acme/web:2", [BASE, WEB, DB], "web2.tar")]
    omitted = thin_for_store(plan, HeldLayers("classic", set()), export_dir)
    assert omitted.get("acme/web:1", ()) == ()  # the peer holds nothing: sent whole
    assert omitted["acme/web:2"] == (0, 1)  # its first two layers arrive with acme/web:1


def test_only_bundles_to_send_are_planned(export_dir: Path) -> None:
    plan = [PLAN[0], item("acme/db:1", [BASE, DB], "db.tar", Step.SKIP)]
    omitted = thin_for_store(plan, HeldLayers("classic", {BASE_CHAIN}), export_dir)
    assert omitted == {"acme/web:1": (0,)}
