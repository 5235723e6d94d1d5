"""A peer's answers: whatever a (broken or hostile) peer prints, the source reads a
well-formed inventory or apply report, or a ProtocolError — never another exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from imgsync import protocol
from imgsync.model import VERSION_RE, Action, ApplyOutcome, Inventory

from .strategies import hostile_text, json_scalars, json_values, nested, versions

maybe_versions = st.one_of(st.none(), versions, json_scalars, hostile_text)
image_entries = st.one_of(
    st.fixed_dictionaries({}, optional={"running": maybe_versions, "inbox": maybe_versions}),
    json_values,
)
inventories = st.fixed_dictionaries(
    {
        "format": st.one_of(st.just(1), json_values),
        "images": st.one_of(
            st.dictionaries(st.one_of(st.text(), hostile_text), image_entries, max_size=4),
            json_values,
        ),
    },
    optional={"inbox_free": st.one_of(st.integers(-(2**64), 2**64), json_values)},
)
apply_items = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "image": st.one_of(st.text(), hostile_text, json_values),
            "action": st.one_of(st.sampled_from([a.value for a in Action]), json_values),
            "version": maybe_versions,
            "seconds": json_values,
            "error": json_values,
        },
    ),
    json_values,
)
apply_reports = st.fixed_dictionaries(
    {
        "format": st.one_of(st.just(1), json_values),
        "results": st.one_of(st.lists(apply_items, max_size=4), json_values),
    },
    optional={"ok": json_values},
)


def read_inventory(raw: bytes) -> Inventory | None:
    try:
        return protocol.load_inventory(raw)
    except protocol.ProtocolError as err:
        assert str(err)
        return None


def read_apply(raw: bytes) -> list[ApplyOutcome] | None:
    try:
        return protocol.load_apply(raw)
    except protocol.ProtocolError as err:
        assert str(err)
        return None


def assert_inventory_well_formed(inventory: Inventory) -> None:
    for ref, item in inventory.images.items():
        assert isinstance(ref, str)
        for version in (item.running, item.inbox):
            assert version is None or VERSION_RE.fullmatch(version), version
    free = inventory.inbox_free
    assert free is None or (type(free) is int and free >= 0)


def assert_outcomes_well_formed(outcomes: list[ApplyOutcome]) -> None:
    for outcome in outcomes:
        assert isinstance(outcome.image, str)
        assert isinstance(outcome.action, Action)
        assert outcome.version is None or VERSION_RE.fullmatch(outcome.version)
        assert type(outcome.seconds) is float
        assert outcome.error is None or (
            isinstance(outcome.error, str) and len(outcome.error) <= 2000
        )


@given(st.binary(max_size=2048))
@example(b"bash: imgsync: command not found")
@example(b"\xff\xfe")
@example(b"NaN")
def test_any_bytes_are_an_inventory_or_a_protocol_error(raw: bytes) -> None:
    """Arbitrary bytes from a peer are a well-formed Inventory or a ProtocolError."""
    found = read_inventory(raw)
    if found is not None:
        assert_inventory_well_formed(found)


@given(st.binary(max_size=2048))
def test_any_bytes_are_an_apply_report_or_a_protocol_error(raw: bytes) -> None:
    """Arbitrary bytes from a peer are a well-formed apply report or a ProtocolError."""
    found = read_apply(raw)
    if found is not None:
        assert_outcomes_well_formed(found)


@given(st.one_of(inventories, json_values))
@example({"format": 1, "images": {"a:1": {"running": "$(id)"}}})
@example({"format": 1, "images": {}, "inbox_free": True})
@example({"format": True, "images": {}})
def test_any_json_is_a_well_formed_inventory_or_a_protocol_error(value: Any) -> None:
    """Any JSON answer to --inventory is a ProtocolError, or an Inventory whose versions
    all match sha256:<64 hex> and whose inbox_free is a byte count or None."""
    found = read_inventory(json.dumps(value).encode())
    if found is not None:
        assert_inventory_well_formed(found)


@given(st.one_of(apply_reports, json_values))
@example({"format": 1, "results": [{"image": "a:1", "action": "loaded", "seconds": 1e308}]})
@example({"format": 1, "results": [{"image": "a:1", "action": "loaded", "seconds": True}]})
def test_any_json_is_a_well_formed_apply_report_or_a_protocol_error(value: Any) -> None:
    """Any JSON answer to apply is a ProtocolError, or outcomes with a known action, a
    version that is None or sha256:<64 hex>, float seconds and a bounded error text."""
    found = read_apply(json.dumps(value).encode())
    if found is not None:
        assert_outcomes_well_formed(found)


@given(st.integers(1, 100_000), st.sampled_from(["list", "dict"]), st.booleans())
@example(100_000, "list", True)
@example(100_000, "dict", False)
def test_a_deeply_nested_answer_is_a_protocol_error(depth: int, kind: str, inventory: bool) -> None:
    """However deep a peer's JSON answer nests, it is a ProtocolError."""
    read = read_inventory if inventory else read_apply
    assert read(nested(depth, kind)) is None


@given(st.integers(4301, 50_000), st.booleans())
@example(5000, True)
def test_an_integer_literal_too_long_to_convert_is_a_protocol_error(
    digits: int, inventory: bool
) -> None:
    """A peer answer holding an integer literal of thousands of digits is a ProtocolError."""
    if inventory:
        raw = b'{"format": 1, "images": {}, "inbox_free": ' + b"1" * digits + b"}"
        assert read_inventory(raw) is None
    else:
        raw = b'{"format": 1, "results": [], "ok": ' + b"1" * digits + b"}"
        assert read_apply(raw) is None


@given(st.integers(2**1024, 10**4000) | st.integers(-(10**4000), -(2**1024)))
@example(10**400)
def test_seconds_beyond_float_range_are_read_or_refused(seconds: int) -> None:
    """An apply result whose 'seconds' is any JSON integer is read (or refused with a
    ProtocolError), never an OverflowError."""
    raw = json.dumps(
        {"format": 1, "results": [{"image": "a:1", "action": "loaded", "seconds": seconds}]}
    )
    found = read_apply(raw.encode())
    if found is not None:
        assert_outcomes_well_formed(found)
