"""Markers: whatever bytes land in an inbox, the parser answers a Marker whose fields are
all well-formed, or MarkerError — never another exception, never a path out of the inbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imgsync.bundle import marker
from imgsync.bundle.bundledir import BundleDir
from imgsync.errors import MarkerError
from imgsync.model import SHA256_HEX_RE, VERSION_RE, Marker
from imgsync.reference import normalize

from .strategies import (
    hex64,
    hostile_text,
    injected,
    json_values,
    nested,
    normalized_references,
    text_over,
    versions,
)

BUNDLE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.tar")
GOOD: dict[str, Any] = Marker(
    reference="acme/web:1",
    version="sha256:" + "a" * 64,
    layers=("sha256:" + "b" * 64,),
    bundle="acme_web_1-12345678.aaaaaaaaaaaa.tar",
    size=1234,
    sha256="c" * 64,
    created="2026-11-28T00:00:00+00:00",
).to_json_dict()

bundle_names = st.builds(
    lambda first, rest: first + rest + ".tar",
    st.sampled_from("aZ09"),
    text_over("abcxyzABCXYZ0189._-", max_size=40),
)
markers = st.builds(
    Marker,
    reference=normalized_references,
    version=versions,
    layers=st.lists(versions, max_size=4).map(tuple),
    bundle=bundle_names,
    size=st.integers(0, 2**63),
    sha256=hex64,
    created=st.text(max_size=30),
    image_id=st.one_of(st.none(), versions),  # the source engine's own ID (containerd store)
)
hostile_bundles = st.one_of(
    st.sampled_from(
        [
            "../../etc/passwd.tar",
            "/etc/shadow.tar",
            "a/../../b.tar",
            "..tar",
            "../.tar",
            ".tmp-x.tar",
            "x.tar\n",
            "x.tar/",
            "x.tar\x00",
            "..\\x.tar",
            "-x.tar",
            "a/b.tar",
            "x.tar ",
            "./x.tar",
        ]
    ),
    injected(st.just("bundle.tar")),
    hostile_text.map(lambda s: s + ".tar"),
)
field_values = st.one_of(json_values, hostile_text, hostile_bundles, versions, hex64)


def load(raw: bytes) -> Marker | None:
    """marker.loads, with MarkerError (the one allowed refusal) as None."""
    try:
        return marker.loads(raw, "inbox/x.marker.json")
    except MarkerError as err:
        assert str(err).startswith("marker inbox/x.marker.json")
        return None


def assert_well_formed(found: Marker) -> None:
    assert BUNDLE_RE.fullmatch(found.bundle), found.bundle
    assert "/" not in found.bundle and not found.bundle.startswith(".")
    assert VERSION_RE.fullmatch(found.version)
    assert SHA256_HEX_RE.fullmatch(found.sha256)
    assert all(VERSION_RE.fullmatch(layer) for layer in found.layers)
    assert normalize(found.reference) == found.reference
    assert type(found.size) is int and found.size >= 0
    assert found.format == Marker.FORMAT
    assert found.image_id is None or VERSION_RE.fullmatch(found.image_id)
    assert VERSION_RE.fullmatch(found.source_id)


@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"null")
@example(b'"\\ud800"')
def test_any_bytes_are_a_marker_or_a_marker_error(raw: bytes) -> None:
    """Arbitrary bytes (not JSON, not UTF-8) are refused with MarkerError, never another
    exception."""
    found = load(raw)
    if found is not None:
        assert_well_formed(found)


@given(json_values)
def test_any_json_value_is_a_marker_or_a_marker_error(value: Any) -> None:
    """Any JSON document is a well-formed Marker or a MarkerError."""
    found = load(json.dumps(value).encode())
    if found is not None:
        assert_well_formed(found)


@given(st.sampled_from([*sorted(GOOD), "image_id"]), field_values)
@example("bundle", "../../etc/passwd.tar")
@example("bundle", "a/../../b.tar")
@example("reference", "app:1;touch /tmp/x")
@example("size", True)
@example("format", 1.0)
@example("image_id", "sha256:" + "e" * 64)
@example("image_id", None)
def test_a_marker_with_one_field_replaced_stays_well_formed_or_is_refused(
    key: str, value: Any
) -> None:
    """A valid marker with any one field replaced (or an image_id added) by any JSON value is
    refused, or accepted with every field still well-formed: the bundle a plain '*.tar' name
    in the inbox, the image_id a sha256 ID."""
    found = load(json.dumps({**GOOD, key: value}).encode())
    if found is not None:
        assert_well_formed(found)


@given(st.sampled_from(sorted(GOOD)), field_values, st.sampled_from(["drop", "extra"]))
def test_a_marker_with_a_key_missing_or_added_is_refused(key: str, value: Any, how: str) -> None:
    """A missing key or an unknown key refuses the marker whole."""
    data = {**GOOD}
    if how == "drop":
        del data[key]
    else:
        data[key + "_"] = value
    assert load(json.dumps(data).encode()) is None


@given(markers)
def test_every_well_formed_marker_survives_a_round_trip(original: Marker) -> None:
    """dumps() then loads() gives back the same marker, image_id (or its absence) included."""
    raw = marker.dumps(original)
    assert ("image_id" in json.loads(raw)) == (original.image_id is not None)
    assert marker.loads(raw, "m") == original


@given(markers, st.integers(1, 4096), st.sampled_from(["whitespace", "created"]))
def test_a_marker_larger_than_64_kib_is_always_refused(
    original: Marker, excess: int, how: str
) -> None:
    """Anything over MAX_BYTES is refused before it is parsed, however valid it is."""
    raw = marker.dumps(original)
    missing = marker.MAX_BYTES - len(raw) + excess
    if how == "whitespace":
        raw += b" " * missing
    else:
        data = original.to_json_dict()
        data["created"] += "x" * missing
        raw = marker.dumps(Marker(**{**data, "layers": tuple(data["layers"])}))
    assert len(raw) > marker.MAX_BYTES
    with pytest.raises(MarkerError, match="larger than"):
        marker.loads(raw, "m")


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inbox").resolve()


@given(st.one_of(hostile_bundles, bundle_names, st.text()))
def test_an_accepted_marker_names_a_bundle_inside_the_inbox(inbox: Path, bundle: str) -> None:
    """For any marker that is accepted, BundleDir(inbox).bundle_path() resolves to a file
    directly in the inbox."""
    data = {**GOOD, "bundle": bundle}
    found = load(json.dumps(data).encode())
    if found is None:
        return
    path = BundleDir(inbox).bundle_path(found).resolve()
    assert path.parent == inbox
    assert path.is_relative_to(inbox)


@given(st.integers(1, 30_000), st.sampled_from(["list", "dict"]))
@example(30_000, "list")
def test_deeply_nested_json_is_a_marker_error(depth: int, kind: str) -> None:
    """However deep a JSON document nests (within 64 KiB), it is a MarkerError."""
    assert load(nested(depth, kind)) is None


@given(st.sampled_from(sorted(GOOD)), st.integers(4301, 20_000))
@example("size", 5000)
def test_an_integer_literal_too_long_to_convert_is_a_marker_error(key: str, digits: int) -> None:
    """A field holding an integer literal of thousands of digits is a MarkerError."""
    data = json.dumps({**GOOD, key: 0}).replace(f'"{key}": 0', f'"{key}": ' + "1" * digits)
    assert load(data.encode()) is None
