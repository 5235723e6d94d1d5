"""A peer's answers are checked before the source believes them."""

from __future__ import annotations

import pytest

from imgsync import protocol
from imgsync.model import Action, ApplyOutcome, Inventory, PeerImage

V1 = "sha256:" + "1" * 64


def test_inventory_round_trip() -> None:
    inventory = Inventory({"a:1": PeerImage(V1, None), "b:1": PeerImage(None, V1)})
    assert protocol.load_inventory(protocol.dump_inventory(inventory).encode()) == inventory


def test_apply_report_round_trip() -> None:
    outcomes = [
        ApplyOutcome("a:1", V1, Action.LOADED, 1.5),
        ApplyOutcome("b:1", None, Action.FAILED, 0.1, "sha256 mismatch"),
    ]
    assert protocol.load_apply(protocol.dump_apply(outcomes).encode()) == outcomes


@pytest.mark.parametrize(
    "raw",
    [
        b"bash: imgsync: command not found",
        b'{"format": 2, "images": {}}',
        b'{"format": 1, "images": {"a:1": {"running": "$(id)"}}}',
        b'{"format": 1, "images": []}',
    ],
)
def test_nonsense_from_a_peer_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.load_inventory(raw)


def test_inventory_round_trip_with_the_inbox_free_space() -> None:
    inventory = Inventory({"a:1": PeerImage(V1, None)}, inbox_free=123_456_789)
    raw = protocol.dump_inventory(inventory)
    assert '"inbox_free": 123456789' in raw
    assert protocol.load_inventory(raw.encode()) == inventory


def test_an_inventory_without_inbox_free_means_unknown() -> None:
    inventory = protocol.load_inventory(b'{"format": 1, "images": {}}')
    assert inventory.inbox_free is None


@pytest.mark.parametrize("free", ['"lots"', "-1", "1.5", "true"])
def test_an_inbox_free_that_is_not_a_byte_count_is_a_protocol_error(free: str) -> None:
    with pytest.raises(protocol.ProtocolError, match="inbox_free"):
        protocol.load_inventory(f'{{"format": 1, "images": {{}}, "inbox_free": {free}}}'.encode())


def test_a_peers_message_reaches_the_operator_whole_but_without_terminal_escapes() -> None:
    hostile = "load failed: \x1b]0;owned\x07\x1b[2J" + "x" * 300
    shown = protocol.printable_text(hostile)
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown.startswith("load failed: ?]0;owned??[2J") and shown.endswith("x" * 300)
    assert len(protocol.printable_text("y" * 5000)) == 2000
