"""Both `docker save` layouts are read in one pass, and every layer present is checked
against its digest before anything trusts it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgsync.bundle.saveformat import Member, scan
from imgsync.errors import VerificationError
from imgsync.model import runtime_config

from .tarballs import Image, layer_tar, legacy, oci, sha

BASE = layer_tar({"bin/busybox": b"\x7fELF" + b"b" * 5000})
APP = layer_tar({"app/data": b"a" * 3000})
OTHER = layer_tar({"srv/other": b"o" * 2000})


def test_a_legacy_tarball_names_its_image_tag_config_and_layers(tmp_path: Path) -> None:
    image = Image("acme/web:1", [BASE, APP])
    archive = scan(legacy(tmp_path / "l.tar", [image]).open("rb"))
    assert archive.layout == "legacy"
    (found,) = archive.images
    assert found.repo_tags == ("acme/web:1",)
    assert found.config_digest == image.config_digest
    assert found.diff_ids == image.diff_ids
    data = (tmp_path / "l.tar").read_bytes()
    assert (archive.sha256, archive.size) == (sha(data), len(data))


def test_scanning_forwards_every_byte_to_the_sink(tmp_path: Path) -> None:
    path = legacy(tmp_path / "l.tar", [Image("acme/web:1", [BASE])])
    copy = io.BytesIO()
    scan(path.open("rb"), sink=copy.write)
    assert copy.getvalue() == path.read_bytes()


def test_member_offsets_cover_exactly_their_header_and_data(tmp_path: Path) -> None:
    path = legacy(tmp_path / "l.tar", [Image("acme/web:1", [BASE, APP])])
    archive = scan(path.open("rb"))
    data = path.read_bytes()
    for member in archive.members.values():
        start = member.offset + 512  # one ustar header block
        assert sha(data[start : start + member.size]) == member.sha256
        assert member.end == start + -(-member.size // 512) * 512


@pytest.mark.parametrize("with_manifest_json", [True, False])
def test_a_multi_image_oci_tarball_with_gzip_blobs(
    tmp_path: Path, with_manifest_json: bool
) -> None:
    images = [Image("acme/web:1", [BASE, APP], compress=True), Image("acme/db:2", [BASE, OTHER])]
    archive = scan(oci(tmp_path / "o.tar", images, with_manifest_json).open("rb"))
    assert archive.layout == "oci"
    assert [i.repo_tags for i in archive.images] == [("acme/web:1",), ("acme/db:2",)]
    assert [i.config_digest for i in archive.images] == [i.config_digest for i in images]
    assert [i.diff_ids for i in archive.images] == [i.diff_ids for i in images]
    web = archive.images[0]
    blob = archive.members[web.layer_paths[1]]
    assert blob.compression == "gzip"
    assert "sha256:" + blob.sha256 != web.diff_ids[1]  # compressed: blob digest ≠ diff ID
    assert "sha256:" + (blob.content_sha256 or "") == web.diff_ids[1]


def test_a_tampered_legacy_layer_is_refused(tmp_path: Path) -> None:
    image = Image("acme/web:1", [BASE, APP])
    path = legacy(tmp_path / "l.tar", [image])
    data = path.read_bytes().replace(b"a" * 3000, b"a" * 2999 + b"X")
    path.write_bytes(data)
    with pytest.raises(VerificationError, match="corrupted or tampered"):
        scan(path.open("rb"))


def test_a_tampered_gzip_blob_is_refused_by_its_digest(tmp_path: Path) -> None:
    path = oci(tmp_path / "o.tar", [Image("acme/web:1", [BASE, APP], compress=True)])
    archive = scan(path.open("rb"))
    blob = archive.members[archive.images[0].layer_paths[1]]
    data = bytearray(path.read_bytes())
    data[blob.offset + 512 + blob.size - 12] ^= 0xFF  # inside the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        scan(path.open("rb"))


def test_a_thin_bundle_reports_the_layers_it_leaves_out(tmp_path: Path) -> None:
    image = Image("acme/web:1", [BASE, APP])
    archive = scan(legacy(tmp_path / "thin.tar", [image], omit={0}).open("rb"))
    assert archive.absent_layers(archive.images[0]) == (0,)


@pytest.mark.parametrize("junk", [b"", b"not a tar" * 100, b"\x00" * 1024])
def test_junk_is_not_an_image_tarball(junk: bytes) -> None:
    with pytest.raises(VerificationError):
        scan(io.BytesIO(junk))


def index_digests_of(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        handle = tar.extractfile("index.json")
        assert handle is not None
        return [d["digest"] for d in json.load(handle)["manifests"]]


@pytest.mark.parametrize("with_manifest_json", [True, False])
def test_an_oci_tarball_names_the_manifests_its_index_lists(
    tmp_path: Path, with_manifest_json: bool
) -> None:
    images = [Image("acme/web:1", [BASE, APP]), Image("acme/db:2", [BASE, OTHER])]
    path = oci(tmp_path / "o.tar", images, with_manifest_json)
    archive = scan(path.open("rb"))
    expected = index_digests_of(path)
    assert len(expected) == 2
    assert archive.index_digests == tuple(expected)
    assert not set(archive.index_digests) & {i.config_digest for i in images}


def test_a_legacy_tarball_has_no_index_digests(tmp_path: Path) -> None:
    archive = scan(legacy(tmp_path / "l.tar", [Image("acme/web:1", [BASE])]).open("rb"))
    assert archive.index_digests == ()


WEB_SETTINGS = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Cmd": ["/web"], "Env": ["PORT=80"], "Labels": {"team": "web"}, "User": ""},
}


@pytest.mark.parametrize("build", [legacy, oci])
def test_each_saved_image_carries_the_runtime_config_of_its_config_json(
    tmp_path: Path, build: Callable[[Path, list[Image]], Path]
) -> None:
    web = Image("acme/web:1", [BASE, APP], settings=WEB_SETTINGS)
    worker = Image(
        "acme/worker:1",
        [BASE, APP],
        settings={**WEB_SETTINGS, "config": {**WEB_SETTINGS["config"], "Cmd": ["/worker"]}},
    )
    archive = scan(build(tmp_path / "t.tar", [web, worker]).open("rb"))
    found_web, found_worker = archive.images
    assert found_web.runtime == runtime_config(WEB_SETTINGS["config"], "amd64", "linux")
    assert ("User", '""') not in found_web.runtime  # empty: absent
    assert found_worker.diff_ids == found_web.diff_ids
    assert found_worker.runtime != found_web.runtime  # same layers, another command


def test_a_config_without_runtime_settings_has_an_empty_runtime(tmp_path: Path) -> None:
    archive = scan(legacy(tmp_path / "l.tar", [Image("acme/web:1", [BASE])]).open("rb"))
    assert archive.images[0].runtime == ()


class Trickle:
    """A stream that gives at most ``most`` bytes per read (a network, at its worst)."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data, self._most, self._at = data, most, 0

    def read(self, n: int = -1) -> bytes:
        size = self._most if n < 0 else min(n, self._most)
        piece = self._data[self._at : self._at + size]
        self._at += len(piece)
        return piece


@pytest.mark.parametrize("most", [1, 3, 511, 513, 4096])
def test_a_tarball_read_in_pieces_of_any_size_scans_the_same(tmp_path: Path, most: int) -> None:
    # headers, gzip's magic number and member data all split across reads
    images = [Image("acme/web:1", [BASE, APP], compress=True), Image("acme/db:2", [BASE, OTHER])]
    for path in (oci(tmp_path / "o.tar", images), legacy(tmp_path / "l.tar", images[1:])):
        data = path.read_bytes()
        assert scan(Trickle(data, most)) == scan(io.BytesIO(data))


def test_a_member_with_a_long_name_is_found_under_it_with_its_digest(tmp_path: Path) -> None:
    path = legacy(tmp_path / "l.tar", [Image("acme/web:1", [BASE])])
    long_name = "notes/" + "n" * 150
    with tarfile.open(path, "a") as tar:  # a pax header before the member's own
        info = tarfile.TarInfo(long_name)
        info.size = 700
        tar.addfile(info, io.BytesIO(b"x" * 700))
    member = scan(path.open("rb")).members[long_name]
    assert (member.size, member.sha256) == (700, sha(b"x" * 700))
    assert path.read_bytes()[member.end - 512 : member.end].startswith(b"x" * 188)


def test_a_pax_header_of_64_mib_is_refused_before_it_is_read() -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 64 * 1024 * 1024  # a pax header of 64 MiB
    with pytest.raises(VerificationError, match="no header of a tarball is that long"):
        scan(io.BytesIO(header.tobuf(tarfile.USTAR_FORMAT) + b"0" * 1024))


class Generated:
    """A tarball produced as it is read (no disk, no whole copy in memory)."""

    def __init__(self, members: Iterator[tuple[str, Iterator[bytes], int]]) -> None:
        self._blocks = self._tar(members)
        self._rest = b""

    @staticmethod
    def _tar(members: Iterator[tuple[str, Iterator[bytes], int]]) -> Iterator[bytes]:
        for name, data, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            yield info.tobuf(tarfile.USTAR_FORMAT)
            yield from data
            yield b"\0" * (-size % 512)
        yield b"\0" * 1024

    def read(self, n: int = -1) -> bytes:
        while len(self._rest) < n and (block := next(self._blocks, None)) is not None:
            self._rest += block
        data, self._rest = self._rest[:n], self._rest[n:]
        return data


def peak_of(func: Callable[[], object]) -> int:
    """Peak bytes allocated while ``func`` runs."""
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


MIB = 1024 * 1024


def test_three_hundred_megabyte_json_members_are_refused_in_bounded_memory() -> None:
    members = ((f"{i}.json", iter([b"{" + b" " * (MIB - 1)]), MIB) for i in range(300))

    def scan_it() -> None:
        with pytest.raises(VerificationError, match="more JSON metadata than any image"):
            scan(Generated(members))

    assert peak_of(scan_it) < 40 * MIB


def test_a_gzip_layer_that_inflates_to_256_mib_is_hashed_in_bounded_memory() -> None:
    inflated = 256 * MIB
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    blob = b"".join(packer.compress(bytes(MIB)) for _ in range(inflated // MIB))
    blob += packer.flush()
    seen: list[Member] = []

    def scan_it() -> None:
        with pytest.raises(VerificationError, match="no manifest"):
            scan(
                Generated(iter([("blobs/sha256/x", iter([blob]), len(blob))])),
                on_member=seen.append,
            )

    assert peak_of(scan_it) < 40 * MIB
    zeros = hashlib.sha256()
    for _ in range(inflated // MIB):
        zeros.update(bytes(MIB))
    assert seen[0].content_sha256 == zeros.hexdigest()


def test_a_tarball_of_twenty_thousand_members_is_refused_in_bounded_memory() -> None:
    members = ((f"e{i}", iter([b""]), 0) for i in range(20_000))

    def scan_it() -> None:
        with pytest.raises(VerificationError, match="more than 10000 members"):
            scan(Generated(members))

    assert peak_of(scan_it) < 40 * MIB
