"""A hostile peer's terminal escapes reach no terminal, log or state DB: its apply report
is cleaned as it is read, and every place that prints or stores a peer's text cleans it
again (an older state DB may hold raw text)."""

from __future__ import annotations

import json
from pathlib import Path

from imgsync import protocol
from imgsync.actions import status
from imgsync.adapters.state import PairRecord, StateDB
from imgsync.adapters.transport import CommandResult
from imgsync.config import Config
from imgsync.model import Action, Report, Result
from imgsync.render import results
from imgsync.render import status as shown

HOSTILE = "load failed\x1b]0;owned\x07\x1b[2J\r\nfake: ok"


def test_a_peers_apply_report_is_read_without_its_escapes() -> None:
    raw = {"format": 1, "results": [{"image": "acme/web:1", "action": "failed", "error": HOSTILE}]}
    (outcome,) = protocol.load_apply(json.dumps(raw).encode())
    assert outcome.error is not None and "\x1b" not in outcome.error and "\n" not in outcome.error


def test_sync_prints_a_peers_error_without_its_escapes() -> None:
    failed = Result("edge", "acme/web:1", None, Action.FAILED, error=HOSTILE)
    printed = "\n".join(results.sync_lines(Report([failed])))
    assert "load failed" in printed and not {"\x1b", "\x07", "\r"} & set(printed)


def test_the_state_db_stores_a_peers_error_without_its_escapes(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    state.record_results("run", [Result("edge", "acme/web:1", None, Action.FAILED, error=HOSTILE)])
    (stored,) = state.pair_records()
    state.close()
    assert stored.last_error is not None and "\x1b" not in stored.last_error


def test_status_prints_an_error_stored_raw_without_its_escapes() -> None:
    config = Config.model_validate(
        {"source": {"images": ["acme/web:1"]}, "peers": [{"name": "edge", "host": "192.0.2.1"}]}
    )
    raw = PairRecord(
        "edge", "acme/web:1", last_at=1.0, last_action="failed", last_error=HOSTILE,
        last_version=None, running=None, last_success=None, bytes_sent=None, seconds=None,
    )  # fmt: skip
    printed = "\n".join(shown.lines(status.build_rows(config, [raw], {})))
    assert "load failed" in printed and not {"\x1b", "\x07", "\r"} & set(printed)


def test_a_commands_last_error_line_is_printable() -> None:
    answer = CommandResult(1, b"", b"first\nboom \x1b]0;owned\x07\x1b[2J")
    assert answer.last_error_line() == "boom ?]0;owned??[2J"
