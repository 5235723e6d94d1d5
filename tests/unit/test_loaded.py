"""The peer's record of which engine image ID it got for which version: trusted only when
well-formed, pruned of images the engine no longer holds, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsync.errors import StorageError
from imgsync.receiver import loaded

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64  # versions (config digests)
ID_A, ID_B, ID_C = ("sha256:" + c * 64 for c in "abc")  # containerd image IDs


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def write(inbox: Path, document: object) -> None:
    (inbox / loaded.NAME).write_text(json.dumps(document))


def test_no_record_means_nothing_recorded(inbox: Path) -> None:
    assert loaded.read(inbox) == {}


def test_a_recorded_load_is_read_back(inbox: Path) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A})
    assert loaded.read(inbox) == {ID_A: V1}


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        json.dumps({"format": 2, "images": {ID_A: V1}}).encode(),
        json.dumps({"format": "1", "images": {ID_A: V1}}).encode(),
        json.dumps({"images": {ID_A: V1}}).encode(),
        json.dumps({"format": 1, "images": [[ID_A, V1]]}).encode(),
        json.dumps({"format": 1}).encode(),
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "bad-json",
        "not-utf8",
        "list",
        "null",
        "format-2",
        "format-str",
        "no-format",
        "images-list",
        "no-images",
        "deep-nesting",
    ],
)
def test_a_garbled_record_is_ignored_whole(inbox: Path, raw: bytes) -> None:
    (inbox / loaded.NAME).write_bytes(raw)
    assert loaded.read(inbox) == {}


def test_a_record_larger_than_the_limit_is_ignored(inbox: Path) -> None:
    document = json.dumps({"format": 1, "images": {ID_A: V1}})
    padded = document + " " * (loaded.MAX_BYTES - len(document))
    (inbox / loaded.NAME).write_text(padded)
    assert loaded.read(inbox) == {ID_A: V1}  # exactly at the limit: still read
    (inbox / loaded.NAME).write_text(padded + " ")
    assert loaded.read(inbox) == {}


def test_only_well_formed_entries_are_kept(inbox: Path) -> None:
    write(
        inbox,
        {
            "format": 1,
            "images": {
                ID_A: V1,
                ID_B: "latest",  # not a version
                "sha256:" + "B" * 64: V1,  # upper-case hex: not an ID
                "sha256:" + "c" * 63: V1,  # too short
                ID_C: 7,  # not a string
                "abc": V2,
                "sha256:" + "d" * 64: V2 + "\n",
            },
        },
    )
    assert loaded.read(inbox) == {ID_A: V1}


def test_an_unrecorded_id_is_taken_as_the_version_itself() -> None:
    records = {ID_A: V1}
    assert loaded.version_of(records, ID_A) == V1  # containerd: the record says
    assert loaded.version_of(records, V2) == V2  # classic: the ID is the version
    assert loaded.version_of(records, ID_B) == ID_B  # containerd, no record: matches nothing
    assert loaded.version_of(records, None) is None  # nothing under the reference


def test_the_ids_of_a_version_are_the_version_then_its_recorded_ids() -> None:
    records = {ID_C: V1, ID_A: V1, ID_B: V2}
    assert loaded.ids_of(records, V1) == [V1, ID_A, ID_C]
    assert loaded.ids_of(records, V2) == [V2, ID_B]
    assert loaded.ids_of({}, V1) == [V1]


def test_the_record_is_written_with_mode_0640_and_no_temp_file_left(
    inbox: Path, usual_umask: None
) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A})
    assert sorted(p.name for p in inbox.iterdir()) == [loaded.NAME]
    assert (inbox / loaded.NAME).stat().st_mode & 0o777 == 0o640
    document = json.loads((inbox / loaded.NAME).read_text())
    assert (document["format"], document["images"]) == (1, {ID_A: V1})


def test_entries_for_images_the_engine_no_longer_holds_are_dropped(inbox: Path) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A})
    loaded.record(inbox, ID_B, V2, present={ID_A, ID_B})
    assert loaded.read(inbox) == {ID_A: V1, ID_B: V2}
    loaded.record(inbox, ID_C, V1, present={ID_B, ID_C})  # ID_A was removed from the engine
    assert loaded.read(inbox) == {ID_B: V2, ID_C: V1}


def test_a_classic_load_adds_no_entry_but_still_prunes(inbox: Path) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A})
    loaded.record(inbox, ID_B, V2, present={ID_A, ID_B})
    loaded.record(inbox, V1, V1, present={V1, ID_B})  # classic: the ID is the version
    assert loaded.read(inbox) == {ID_B: V2}


def test_a_reloaded_id_gets_its_new_version(inbox: Path) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A})
    loaded.record(inbox, ID_A, V2, present={ID_A})
    assert loaded.read(inbox) == {ID_A: V2}


def test_a_garbled_record_is_replaced_by_the_next_write(inbox: Path) -> None:
    (inbox / loaded.NAME).write_text("{garbage")
    loaded.record(inbox, ID_A, V1, present={ID_A})
    assert loaded.read(inbox) == {ID_A: V1}


def test_a_record_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        loaded.record(tmp_path / "gone", ID_A, V1, present={ID_A})


CHAIN_1, CHAIN_2 = "sha256:" + "3" * 64, "sha256:" + "4" * 64
BLOB_1, BLOB_2 = "sha256:" + "5" * 64, "sha256:" + "6" * 64


def test_the_blobs_an_image_was_loaded_from_are_known_while_the_engine_holds_it(
    inbox: Path,
) -> None:
    loaded.record(inbox, ID_A, V1, present={ID_A}, blobs={CHAIN_1: BLOB_1})
    loaded.record(inbox, ID_B, V2, present={ID_A, ID_B}, blobs={CHAIN_2: BLOB_2})
    assert loaded.held_blobs(inbox, {ID_A, ID_B}) == {CHAIN_1: BLOB_1, CHAIN_2: BLOB_2}
    assert loaded.held_blobs(inbox, {ID_B}) == {CHAIN_2: BLOB_2}
    loaded.record(inbox, ID_C, V1, present={ID_B, ID_C})  # ID_A was removed from the engine
    assert loaded.held_blobs(inbox, {ID_A, ID_B, ID_C}) == {CHAIN_2: BLOB_2}


def test_malformed_blob_entries_are_ignored(inbox: Path) -> None:
    write(
        inbox,
        {
            "format": 1,
            "images": {ID_A: V1},
            "blobs": {ID_A: {CHAIN_1: BLOB_1, CHAIN_2: "gzip", "x": BLOB_2}, ID_B: [BLOB_2]},
        },
    )
    assert loaded.held_blobs(inbox, {ID_A, ID_B}) == {CHAIN_1: BLOB_1}
    (inbox / loaded.NAME).write_text("{garbage")
    assert loaded.held_blobs(inbox, {ID_A}) == {}
