"""Frames, payloads and rates: what travels is exactly the bundle, from any offset."""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path

import pytest

from imgsync.bundle import payload, wire
from imgsync.config import parse_rate
from imgsync.errors import StorageError, VerificationError

from .tarballs import Image, layer_tar, legacy, oci, sha

MB = 1024 * 1024


def decode(data: bytes) -> bytes:
    decoder, out = wire.Decoder(io.BytesIO(data)), bytearray()
    while chunk := decoder.read(70000):
        out.extend(chunk)
    return bytes(out)


def test_frames_round_trip_and_compress_only_what_pays() -> None:
    text, noise = b"the same line again\n" * 200000, os.urandom(2 * MB)
    framed = b"".join(wire.encode(iter([text, noise]), level=3))
    assert decode(framed) == text + noise
    assert len(framed) < len(noise) * 1.001 + len(text) * 0.1


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">BII", 7, 1, 1) + b"x",  # unknown kind
        struct.pack(">BII", 0, wire.MAX_FRAME + 1, 1) + b"x",  # oversized claim
        struct.pack(">BII", 1, 100, 5) + b"junk!",  # not zstd
    ],
)
def test_a_malformed_stream_ends_the_upload(frame: bytes) -> None:
    with pytest.raises(StorageError):
        decode(frame)


def test_a_file_payload_resumes_from_any_offset(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * MB + 5))
    whole = payload.FilePayload("f", path)
    for start in (0, 1, MB, 3 * MB + 5):
        assert b"".join(whole.chunks(start)) == path.read_bytes()[start:]


def test_a_thin_payload_is_the_tarball_without_the_left_out_layer(tmp_path: Path) -> None:
    base, app = layer_tar({"b": b"B" * 4000}), layer_tar({"a": b"A" * 3000})
    full = legacy(tmp_path / "full.tar", [Image("x:1", [base, app])])
    expected = legacy(tmp_path / "thin.tar", [Image("x:1", [base, app])], omit={0})
    thin = payload.thin("x.tar", full, (0,))
    data = b"".join(thin.chunks(0))
    assert len(data) == thin.size
    assert sha(data[: expected.stat().st_size]) == sha(expected.read_bytes()[: len(data)])
    for start in (0, 100, 513, thin.size - 1):  # resuming anywhere yields the same bytes
        assert b"".join(thin.chunks(start)) == data[start:]


def test_resume_only_when_the_peer_holds_our_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(MB))
    whole = payload.FilePayload("f", path)
    prefix = path.read_bytes()[:1000]
    assert payload.resume_offset(whole, 1000, sha(prefix)) == 1000
    assert payload.resume_offset(whole, 1000, sha(b"x" + prefix[1:])) == 0
    assert payload.resume_offset(whole, MB + 1, sha(prefix)) == 0


@pytest.mark.parametrize(
    ("text", "rate"), [("20MB/s", 20e6), ("100Mbit/s", 12.5e6), ("500kB/s", 5e5)]
)
def test_rates(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "20 MB", "0.5B/s", "-1MB/s"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_an_oci_bundle_names_the_blob_of_each_layer_a_legacy_one_none(tmp_path: Path) -> None:
    base, app = layer_tar({"b": b"B" * 400}), layer_tar({"a": b"A" * 300})
    image = Image("x:1", [base, app], compress=True)
    blobs = payload.layer_blobs(oci(tmp_path / "o.tar", [image]))
    assert blobs == ["sha256:" + sha(gzip.compress(layer, mtime=0)) for layer in (base, app)]
    assert blobs != list(image.diff_ids)  # compressed: the blob is not the diff ID
    plain = Image("x:1", [base, app])
    assert payload.layer_blobs(oci(tmp_path / "p.tar", [plain])) == list(plain.diff_ids)
    assert payload.layer_blobs(legacy(tmp_path / "l.tar", [image])) is None


def test_the_blobs_of_a_file_that_is_no_tarball_are_a_verification_error(
    tmp_path: Path,
) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"oci-layout, honestly" * 100)
    with pytest.raises(VerificationError, match=r"bundle junk\.tar is not a readable tarball"):
        payload.layer_blobs(junk)
    with pytest.raises(VerificationError):
        payload.layer_blobs(tmp_path / "missing.tar")
