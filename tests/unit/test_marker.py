"""Markers are read strictly: anything off is refused whole, never half-read."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from imgsync.bundle import marker
from imgsync.errors import MarkerError
from imgsync.model import Marker

GOOD = Marker(
    reference="acme/web:1",
    version="sha256:" + "a" * 64,
    layers=("sha256:" + "b" * 64,),
    bundle="acme_web_1-12345678.aaaaaaaaaaaa.tar",
    size=1234,
    sha256="c" * 64,
    created="2026-11-28T00:00:00+00:00",
)


def mutate(**changes: object) -> bytes:
    data = GOOD.to_json_dict()
    data.update(changes)
    return json.dumps(data).encode()


def test_a_marker_survives_a_round_trip() -> None:
    assert marker.loads(marker.dumps(GOOD), "m") == GOOD


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (mutate(format=3), "format 3 is not supported"),
        (mutate(omitted=[5]), "omitted must list layer positions"),
        (mutate(format="1"), "format '1' is not supported"),
        (mutate(extra=1), "unknown keys ['extra']"),
        (mutate(bundle="../../etc/passwd.tar"), "not a plain file name"),
        (mutate(bundle="/etc/shadow"), "not a plain file name"),
        (mutate(bundle=".tmp-x.tar"), "not a plain file name"),
        (mutate(reference="app:1;touch /tmp/x"), "not a valid image reference"),
        (mutate(version="latest"), "version is not a sha256 image ID"),
        (mutate(size=-1), "size is negative"),
        (mutate(size=True), "size must be a int"),
        (mutate(layers=["nope"]), "layers must be sha256 diff IDs"),
        (b" " * (marker.MAX_BYTES + 1), "larger than"),
        (mutate(image_id="latest"), "image_id is not a sha256 image ID"),
        (mutate(image_id="sha256:" + "A" * 64), "image_id is not a sha256 image ID"),
        (mutate(image_id="a" * 64), "image_id is not a sha256 image ID"),
        (mutate(image_id=1), "image_id must be a str"),
        (mutate(image_id=["sha256:" + "e" * 64]), "image_id must be a str"),
        (mutate(image_id=None), "image_id must be a str"),
    ],
)
def test_bad_markers_are_refused_with_the_reason(raw: bytes, complaint: str) -> None:
    with pytest.raises(MarkerError) as caught:
        marker.loads(raw, "inbox/x.marker.json")
    assert complaint in str(caught.value)
    assert "inbox/x.marker.json" in str(caught.value)


def test_a_missing_key_is_named() -> None:
    data = GOOD.to_json_dict()
    del data["sha256"]
    with pytest.raises(MarkerError, match=r"missing keys \['sha256'\]"):
        marker.loads(json.dumps(data).encode(), "m")


def test_a_marker_without_an_image_id_loads_with_none() -> None:
    data = GOOD.to_json_dict()
    assert "image_id" not in data
    assert marker.loads(json.dumps(data).encode(), "m").image_id is None


def test_a_marker_with_the_source_engines_image_id_survives_a_round_trip() -> None:
    with_id = replace(GOOD, image_id="sha256:" + "e" * 64)
    found = marker.loads(marker.dumps(with_id), "m")
    assert found == with_id
    assert found.source_id == "sha256:" + "e" * 64


def test_unknown_keys_are_still_refused_beside_an_image_id() -> None:
    raw = mutate(image_id="sha256:" + "e" * 64, image_digest="sha256:" + "e" * 64)
    with pytest.raises(MarkerError, match=r"unknown keys \['image_digest'\]"):
        marker.loads(raw, "m")
