"""Every log line of a cycle says which cycle it belongs to (``run_id``), and a line about one
peer or one image names it (``peer``, ``image``) — in the peers' threads too, where the
context is not inherited unless it is copied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab import Lab

from .helpers import build

pytestmark = pytest.mark.lab


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_line_of_a_cycle_carries_its_run_id_and_the_peer_and_image_it_is_about(
    lab: Lab,
) -> None:
    refs = ["log-context/web:1", "log-context/worker:1"]
    for seed, ref in enumerate(refs, start=13100):
        build(lab, ref, seed=seed)
    lab.write_configs(refs)
    done = lab.run_imgsync("-v", "sync")  # stderr is a pipe: JSON lines
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert len(lines) == len(done.stderr.strip().splitlines()), done.stderr  # JSON only
    run_ids = {line.get("run_id") for line in lines}
    assert len(run_ids) == 1 and None not in run_ids, [
        line for line in lines if "run_id" not in line
    ]
    peers = {peer.name for peer in lab.peers}
    # each peer's session logs from its own thread: those lines name their peer
    by_peer = {line["peer"] for line in lines if "peer" in line}
    assert by_peer == peers, lines
    events = {line["event"] for line in lines}
    assert {"exported", "session open", "inventory", "sending", "cycle finished"} <= events
    for line in lines:
        if line["event"] in ("session open", "inventory", "sending"):
            assert line.get("peer") in peers, line
        if line["event"] in ("exporting", "exported", "sending"):
            assert line.get("image") in refs, line  # as the config names it
