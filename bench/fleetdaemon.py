"""The fleet bench's daemon case: no-change cycles of ``imgsync daemon``, whose sessions stay
open between cycles (``[schedule] keep_sessions``), to the first N peers of a lab.

Each cycle is started by an image event (the first image tagged again under its own name:
nothing changes) and timed by the daemon itself (its ``cycle finished`` line's seconds).
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from pathlib import Path

from lab import Lab
from lab.tomlw import dumps

from .measure import Spread

Row = tuple[str, ...]


def daemon_rows(lab: Lab, images: list[str], counts: list[int], runs: int) -> list[Row]:
    rows: list[Row] = []
    for parallel in (4, 16):
        for n in counts:
            seconds = _cycles(lab, images, n, parallel, runs)
            spread = Spread.of(seconds)
            rows.append((str(n), str(parallel), "-" if spread is None else spread.text(2)))
    return rows


def _cycles(lab: Lab, images: list[str], peers: int, parallel: int, runs: int) -> list[float]:
    config = lab.source_config.with_name(f"daemon-{peers}-{parallel}.toml")
    data = tomllib.loads(lab.source_config.read_text())
    data["peers"] = data["peers"][:peers]
    data["source"]["max_parallel_peers"] = parallel
    data["schedule"] = {"interval": "1h", "debounce": "200ms"}
    config.write_text(dumps(data))
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            lab.imgsync_argv("daemon", config=config),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _wait_cycles(log, 1)  # the cycle at start connects every peer
        repository, _, tag = images[0].rpartition(":")
        for run in range(runs):
            lab.source.client().api.tag(images[0], repository, tag)  # an event, no change
            _wait_cycles(log, run + 2)
        return [c["seconds"] for c in _finished(log)[1:]]
    finally:
        process.terminate()
        process.wait(60)


def _finished(log: Path) -> list[dict[str, float]]:
    lines = log.read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e.get("event") == "cycle finished"]


def _wait_cycles(log: Path, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while len(_finished(log)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not finish cycle {count} (its log: {log})")
        time.sleep(0.05)
