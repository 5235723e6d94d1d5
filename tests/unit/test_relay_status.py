"""``status --fleet``: a relay's session answers ``status`` with its own rows, and
headquarters reads them back as ``relay/leaf`` — or refuses a reply it cannot trust."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from imgsync import frames, protocol
from imgsync.errors import ProtocolError
from imgsync.model import StatusRow
from imgsync.receiver.session import Session

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
LEAF = StatusRow("a2", "docker.io/acme/web:1", V1, V1, True, last_success=5.0, engine="26.1.5")


def ask_status(relay_status: Any) -> dict[str, Any]:
    stdout = io.BytesIO()
    request = frames.message_frame({"op": "status"})
    Session(lambda: None, io.BytesIO(request), stdout, relay_status).run()
    reader = frames.FrameReader(io.BytesIO(stdout.getvalue()).read)
    reader.message()  # hello
    reply: dict[str, Any] = reader.message()
    return reply


def test_a_relay_session_answers_status_with_its_rows_read_back_under_its_name() -> None:
    reply = ask_status(lambda: [LEAF])
    [row] = protocol.load_relay_status(json.dumps(reply).encode(), "relay-a") or []
    assert row == StatusRow(
        "relay-a/a2", LEAF.image, V1, V1, True, last_success=5.0, engine="26.1.5"
    )
    assert row.current


def test_a_peer_that_is_no_relay_says_so_and_adds_no_row() -> None:
    for relay_status in (None, lambda: None):
        reply = ask_status(relay_status)
        assert protocol.load_relay_status(json.dumps(reply).encode(), "p1") is None


def reply_with(rows: Any) -> bytes:
    return json.dumps({"format": protocol.FORMAT, "relay": True, "rows": rows}).encode()


GOOD = json.loads(protocol.dump_relay_status([LEAF]))["rows"][0]


@pytest.mark.parametrize(
    "rows",
    [
        "not a list",
        ["not an object"],
        [{**GOOD, "peer": None}],
        [{**GOOD, "image": 7}],
        [{**GOOD, "reached": "yes"}],
        [{**GOOD, "version": "latest"}],
        [{**GOOD, "exported": "sha256:short"}],
        [GOOD] * (protocol.MAX_FLEET_ROWS + 1),
    ],
    ids=["list", "object", "peer", "image", "reached", "version", "exported", "too-many"],
)
def test_a_relay_reply_that_is_not_well_formed_is_refused_whole(rows: Any) -> None:
    with pytest.raises(ProtocolError, match=r"relay|version"):
        protocol.load_relay_status(reply_with(rows), "relay-a")


def test_a_relay_row_is_made_printable_and_bounded() -> None:
    hostile = {**GOOD, "error": "\x1b[2Jwiped" + "x" * 5000, "peer": "a2\nHQ-ok"}
    [row] = protocol.load_relay_status(reply_with([hostile]), "relay-a") or []
    assert "\x1b" not in (row.error or "") and len(row.error or "") <= 300
    assert "\n" not in row.peer
    assert protocol.load_relay_status(reply_with([{**GOOD, "version": V2}]), "r") is not None
