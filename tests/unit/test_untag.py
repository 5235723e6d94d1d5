"""A bundle loaded while it arrives is loaded without its names: the untagged stream keeps
every other member byte for byte, whatever the chunk sizes it arrives in."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from imgsync.bundle.untag import UntagError, Untagger

from .tarballs import Image, layer_tar, legacy, oci

IMAGE = Image("acme/web:1", [layer_tar({"bin/sh": b"s" * 3000}), layer_tar({"a": b"w" * 700})])


def untag(data: bytes, seed: int) -> bytes:
    rng, untagger, out, position = random.Random(seed), Untagger(), bytearray(), 0
    while position < len(data):
        size = rng.choice([1, 7, 511, 512, 513, 4096, 100_000])
        out += untagger.feed(data[position : position + size])
        position += size
    return bytes(out + untagger.end())


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


@pytest.mark.parametrize("seed", range(5))
def test_a_legacy_bundle_loses_its_tags_and_keeps_everything_else(
    tmp_path: Path, seed: int
) -> None:
    original = members(legacy(tmp_path / "b.tar", [IMAGE]).read_bytes())
    untagged = members(untag((tmp_path / "b.tar").read_bytes(), seed))
    assert json.loads(untagged.pop("manifest.json"))[0]["RepoTags"] is None
    manifest = json.loads(original.pop("manifest.json"))[0]
    assert manifest["RepoTags"] == ["acme/web:1"]
    original.pop("repositories", None)
    assert untagged == original


@pytest.mark.parametrize("seed", range(3))
def test_an_oci_bundle_loses_its_names_and_keeps_everything_else(tmp_path: Path, seed: int) -> None:
    path = oci(tmp_path / "b.tar", [Image("acme/web:1", IMAGE.layers, compress=True)])
    original, untagged = members(path.read_bytes()), members(untag(path.read_bytes(), seed))
    index = json.loads(untagged.pop("index.json"))
    assert all("annotations" not in d or not d["annotations"] for d in index["manifests"])
    assert json.loads(untagged.pop("manifest.json"))[0]["RepoTags"] is None
    original.pop("index.json"), original.pop("manifest.json")
    assert untagged == original


def test_a_stream_cut_inside_a_member_is_refused(tmp_path: Path) -> None:
    data = legacy(tmp_path / "b.tar", [IMAGE]).read_bytes()
    untagger = Untagger()
    untagger.feed(data[:1500])
    with pytest.raises(UntagError):
        untagger.end()


def test_a_manifest_that_is_not_json_stops_the_untagged_load(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"not json!"))
    with pytest.raises(UntagError, match=r"manifest\.json"):
        Untagger().feed(out.getvalue())
