"""The peer's session (apply --session) as a source speaks to it, with no engine: hello
first; a bad request is answered with an error and the session goes on; a file is taken
whole or not at all; broken framing ends the session. (The lab drives it with Docker.)"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imgsync import frames
from imgsync.config import ReceiverConfig
from imgsync.errors import ConfigError, EngineError, ExitCode
from imgsync.receiver.session import Session

NOTE = b'{"not": "checked until apply"}'


def data(payload: bytes, level: int | None = None) -> bytes:
    return b"".join(f for f, _ in frames.data_frames(iter([payload]), level)) + frames.end_frame()


def receive(
    name: str, payload: bytes, size: int | None = -1, offset: int = 0, load: bool = False
) -> bytes:
    told = len(payload) if size == -1 else size
    request = {"op": "receive", "name": name, "size": told, "offset": offset, "load": load}
    return frames.message_frame(request) + data(payload)


def converse(inbox: Path, *parts: bytes, receiver: Any = None) -> tuple[int, list[dict[str, Any]]]:
    stdout = io.BytesIO()
    config = ReceiverConfig(inbox=str(inbox), docker_host="unix:///nonexistent/docker.sock")
    session = Session(receiver or (lambda: config), io.BytesIO(b"".join(parts)), stdout)
    code = session.run()
    reader = frames.FrameReader(io.BytesIO(stdout.getvalue()).read)
    replies = []
    while True:
        try:
            replies.append(reader.message())
        except frames.Closed:
            return code, replies


def test_the_session_says_hello_first_and_ends_on_bye(tmp_path: Path) -> None:
    code, replies = converse(tmp_path, frames.message_frame({"op": "bye"}))
    assert code == ExitCode.OK
    assert replies[0]["op"] == "hello" and replies[0]["protocol"] == 2
    assert replies[1] == {"op": "bye"}


def test_a_file_lands_under_its_name_compressed_or_not(tmp_path: Path) -> None:
    text = b"layer " * 100_000
    compressed = frames.message_frame(
        {"op": "receive", "name": "b.marker.json", "size": len(text), "offset": 0}
    ) + data(text, level=3)
    _, replies = converse(tmp_path, receive("a.marker.json", NOTE), compressed)
    assert replies[1:] == [
        {"format": 1, "received": len(NOTE)},
        {"format": 1, "received": len(text)},
    ]
    assert (tmp_path / "a.marker.json").read_bytes() == NOTE
    assert (tmp_path / "b.marker.json").read_bytes() == text


def test_a_refused_file_is_read_to_its_end_and_the_session_goes_on(tmp_path: Path) -> None:
    _, replies = converse(
        tmp_path,
        receive("../escape.marker.json", NOTE),
        frames.message_frame({"op": "no-such-op"}),
        receive("a.marker.json", NOTE),
    )
    assert "not a plain bundle or marker name" in replies[1]["error"]
    assert "unknown session request" in replies[2]["error"]
    assert replies[3] == {"format": 1, "received": len(NOTE)}
    assert not (tmp_path.parent / "escape.marker.json").exists()


def test_a_file_cut_short_is_kept_to_resume_and_not_named(tmp_path: Path) -> None:
    _, replies = converse(tmp_path, receive("a.marker.json", NOTE, size=len(NOTE) + 10))
    assert "stopped at byte" in replies[1]["error"]
    assert not (tmp_path / "a.marker.json").exists()
    assert (tmp_path / ".part-a.marker.json").read_bytes() == NOTE


def trailer(doc: dict[str, Any]) -> bytes:
    return frames.message_frame(doc)


def test_a_file_of_unknown_size_is_named_when_its_trailer_matches(tmp_path: Path) -> None:
    digest = hashlib.sha256(NOTE).hexdigest()
    _, replies = converse(
        tmp_path,
        receive("a.marker.json", NOTE, size=None),
        trailer({"size": len(NOTE), "sha256": digest}),
    )
    assert replies[1] == {"format": 1, "received": len(NOTE)}
    assert (tmp_path / "a.marker.json").read_bytes() == NOTE


@pytest.mark.parametrize(
    "tail",
    [{"abort": "source: the export failed"}, {"size": 3, "sha256": "0" * 64}],
    ids=["abort", "mismatch"],
)
def test_a_file_of_unknown_size_is_dropped_when_its_trailer_says_so(
    tmp_path: Path, tail: dict[str, Any]
) -> None:
    _, replies = converse(
        tmp_path, receive("a.marker.json", NOTE, size=None), trailer(tail),
        receive("b.marker.json", NOTE),
    )  # fmt: skip
    assert "error" in replies[1]
    assert replies[2] == {"format": 1, "received": len(NOTE)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.marker.json"]


def test_a_bundle_is_received_when_its_engine_cannot_be_reached(tmp_path: Path) -> None:
    _, replies = converse(tmp_path, receive("a.tar", b"\0" * 1024, load=True))
    assert replies[1] == {"format": 1, "received": 1024}


def test_a_config_error_answers_every_request_and_the_session_goes_on(tmp_path: Path) -> None:
    def broken() -> ReceiverConfig:
        raise ConfigError("config /etc/imgsync/imgsync.toml", ["receiver.inbox: missing"])

    _, replies = converse(
        tmp_path,
        frames.message_frame({"op": "inventory", "images": ["a:1"], "clean": True}),
        frames.message_frame({"op": "bye"}),
        receiver=broken,
    )
    assert "receiver.inbox: missing" in replies[1]["error"]
    assert replies[2] == {"op": "bye"}


@pytest.mark.parametrize(
    "garbage",
    [b"\x09\0\0\0\0", b"\x01\xff\xff\xff\xff", b"\x02\0\0\0\x03abc", b"\x01\0\0\0\x05[1,2]"],
    ids=["unknown-kind", "huge", "data-first", "not-an-object"],
)
def test_broken_framing_ends_the_session_with_a_protocol_error(
    tmp_path: Path, garbage: bytes
) -> None:
    with pytest.raises(frames.FrameError):
        converse(tmp_path, garbage)


class StorelessEngine:
    """An engine that answers, but not which image store it has."""

    closed: ClassVar[list[bool]] = []

    def __init__(self, docker_host: str | None) -> None:
        pass

    def store(self) -> str:
        raise EngineError("docker info failed")

    def close(self) -> None:
        self.closed.append(True)


def test_an_engine_that_cannot_say_its_store_is_closed_and_the_bundle_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imgsync.engines.docker.Engine", StorelessEngine)
    _, replies = converse(tmp_path, receive("a.tar", b"x" * 1024, load=True))
    assert replies[1] == {"format": 1, "received": 1024}
    assert StorelessEngine.closed == [True]


def test_a_kept_session_reads_its_config_again_at_each_cycles_first_question(
    tmp_path: Path,
) -> None:
    loads: list[int] = []
    config = ReceiverConfig(inbox=str(tmp_path), docker_host="unix:///nonexistent/docker.sock")

    def receiver() -> ReceiverConfig:
        loads.append(1)
        return config

    cycle = frames.message_frame({"op": "inventory", "images": [], "clean": True})
    ping = frames.message_frame({"op": "ping"})
    code, replies = converse(tmp_path, cycle, ping, cycle, receiver=receiver)
    assert code == ExitCode.OK
    assert replies[2] == {"format": 1, "op": "pong"}
    assert len(loads) == 3  # the warm-up's, then each cycle's first question's
