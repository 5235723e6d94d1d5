"""`imgsync apply --watch` on a lab peer: what lands in the inbox is applied without a
sync asking for it; nonsense is logged and skipped; SIGTERM ends it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle.bundledir import marker_name
from lab import Lab, Peer

from .helpers import actions, build, sync_json

pytestmark = pytest.mark.lab


def land(source: Peer, target: Peer, image: str) -> None:
    """Copy ``image``'s bundle and marker from one peer's inbox into another's the way the
    source uploads: a temp name in the inbox, renamed; the marker last."""
    marker = source.inbox / marker_name(image)
    bundle = source.inbox / json.loads(marker.read_text())["bundle"]
    for path in (bundle, marker):
        temp = target.inbox / f".tmp-0000beef-{path.name}"
        shutil.copyfile(path, temp)
        os.rename(temp, target.inbox / path.name)


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def log_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_apply_watch_applies_what_lands_in_the_inbox_and_stops_on_sigterm(
    lab: Lab, tmp_path: Path
) -> None:
    image = "watch/web:1"
    lab.write_configs([image])
    p1, p2 = lab.peer("p1"), lab.peer("p2")
    v1 = build(lab, image, seed=6100)
    code, report = sync_json(lab, "--peer", "p2")
    assert code == 0 and actions(report) == {("p2", image): "loaded"}, report
    land(p2, p1, image)  # already there when the watch starts

    log_path = tmp_path / "watch.log"
    with log_path.open("w") as log_file:
        watch = subprocess.Popen(
            lab.imgsync_argv("-v", "apply", "--watch", "--poll", "0.5", config=p1.config_path),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert wait_for(lambda: p1.docker.image_id(image) == v1, 15), log_path.read_text()

        junk = p1.inbox / "junk.marker.json"
        junk.write_text("{ this is not a marker")
        assert wait_for(lambda: not junk.exists(), 15), "a broken marker is dropped"
        assert watch.poll() is None, "the watch goes on after a failed apply"

        v2 = build(lab, image, seed=6101)
        code, report = sync_json(lab, "--peer", "p2")
        assert code == 0 and actions(report) == {("p2", image): "loaded"}, report
        land(p2, p1, image)
        assert wait_for(lambda: p1.docker.image_id(image) == v2, 15), log_path.read_text()

        watch.send_signal(signal.SIGTERM)
        assert watch.wait(5) == 0, log_path.read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)

    events = log_events(log_path)
    applied = [e for e in events if e["event"] == "applied" and e.get("image") == image]
    assert [e["version"] for e in applied] == [v1, v2]
    assert any(e["event"] == "apply failed" and "junk" in e.get("image", "") for e in events)
