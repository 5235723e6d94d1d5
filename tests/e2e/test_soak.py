"""Soak on the real lab: `imgsync daemon` runs 200 cycles of 10 images x 2 peers with nothing
changed. Every cycle must find everything in sync, and the daemon must not leak file
descriptors, threads or memory from one cycle to the next.

The numbers (cycles, duration, fds/threads/RSS after cycle 10 and after cycle 200) are
written to ``soak.json`` in the test's tmp dir, recorded as properties, and printed (shown
with ``-rP``). Seeds are 7400+ (equal seeds give equal image IDs through the build cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import Lab

from .helpers import actions, build, sync_json

pytestmark = pytest.mark.lab

IMAGES = 10
CYCLES = 200
EARLY = 10
MIB = 1024 * 1024
MAX_SECONDS = 840  # 200 cycles at a 1 s interval: ~230 s on an idle 2-CPU host, 520 s loaded


class DaemonLog:
    """An `imgsync daemon` subprocess logging JSON lines to a file, read incrementally."""

    def __init__(self, lab: Lab, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("w") as out:
            self.process = subprocess.Popen(
                lab.imgsync_argv("daemon"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._offset = 0
        self._partial = b""
        self.cycles: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def poll(self) -> int:
        """Read what was logged since the last call; return the cycles finished so far."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b"{"):
                event = json.loads(line)
                self.events.append(event)
                if event.get("event") == "cycle finished":
                    self.cycles.append(event)
        return len(self.cycles)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                return None
        return self.process.returncode


def resources(pid: int) -> dict[str, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "threads": int(status["Threads"]),
        "rss_kb": int(status["VmRSS"].split()[0]),
    }


@contextlib.contextmanager
def held(lock_path: Path) -> Iterator[None]:
    """Hold the host's cycle lock (the one ``imgsync sync`` and the daemon take): taken as
    soon as the cycle in flight ends, so the daemon's next cycle waits for it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def waiting_for(pid: int, lock_path: Path, deadline: float) -> None:
    """Until the daemon has the lock file open: its next cycle has started and waits for the
    lock we hold (a cycle is short with kept sessions: this may be most of an interval)."""
    while True:
        opened = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                opened.add(os.readlink(fd))
        if str(lock_path) in opened:
            return
        assert time.monotonic() < deadline, "the daemon's next cycle never waited for the lock"
        time.sleep(0.05)


def at_rest(daemon: DaemonLog, lock_path: Path, after: int, deadline: float) -> dict[str, int]:
    """Resources once cycle ``after`` (or a later one) has finished, sampled while the
    daemon's next cycle waits for the lock we hold: the same state at every call, with
    nothing of a cycle in flight (its kept sessions to the peers open, idle)."""
    while daemon.poll() < after:
        assert time.monotonic() < deadline, f"cycle {after} did not finish in time"
        assert daemon.process.poll() is None, "the daemon died"
        time.sleep(0.05)
    with held(lock_path):
        waiting_for(daemon.process.pid, lock_path, deadline)  # the next cycle waits for it
        cycles = daemon.poll()
        samples = []
        for _ in range(5):
            samples.append(resources(daemon.process.pid))
            time.sleep(0.1)
        assert daemon.poll() == cycles, "a cycle ran while the lock was held"
    for key in ("fds", "threads"):
        assert len({s[key] for s in samples}) == 1, f"{key} moved while at rest: {samples}"
    return {**samples[-1], "cycles": cycles}


@pytest.mark.timeout(MAX_SECONDS + 60)
def test_200_idle_cycles_of_10_images_to_2_peers_find_everything_in_sync_and_leak_nothing(
    lab: Lab, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    images = [f"soak/img{i}:1" for i in range(IMAGES)]
    for i, ref in enumerate(images):
        build(lab, ref, seed=7400 + i, size=1 * MIB)
    lab.write_configs(images, extra={"schedule": {"interval": "1s", "events": False}})
    code, report = sync_json(lab)
    assert code == 0, report
    assert len(report["results"]) == IMAGES * len(lab.peers)
    assert set(actions(report).values()) <= {"loaded", "unchanged"}

    daemon = DaemonLog(lab, tmp_path / "daemon.log")
    started = time.monotonic()
    deadline = started + MAX_SECONDS
    try:
        lock_path = lab.state_path.with_name("imgsync.lock")
        early = at_rest(daemon, lock_path, EARLY, deadline)
        late = at_rest(daemon, lock_path, CYCLES, deadline)
        duration = time.monotonic() - started
        assert daemon.process.poll() is None, "the daemon died"
    finally:
        stopping = time.monotonic()
        exit_code = daemon.stop()
        stop_seconds = time.monotonic() - stopping
    daemon.poll()

    numbers = {
        "cycles": len(daemon.cycles),
        "seconds_to_cycle_200": round(duration, 1),
        "seconds_per_cycle": round(duration / late["cycles"], 2),
        "cycle_seconds_max": max(c["seconds"] for c in daemon.cycles),
        "sigterm_to_exit_seconds": round(stop_seconds, 2),
        f"after_cycle_{EARLY}": early,
        f"after_cycle_{CYCLES}": late,
        "rss_growth_kb": late["rss_kb"] - early["rss_kb"],
    }
    (tmp_path / "soak.json").write_text(json.dumps(numbers, indent=2) + "\n")
    record_property("soak", json.dumps(numbers))
    print(f"soak numbers ({tmp_path / 'soak.json'}):\n{json.dumps(numbers, indent=2)}")

    assert exit_code == 0, "SIGTERM must stop the daemon cleanly"
    assert len(daemon.cycles) >= CYCLES
    bad = [
        c
        for c in daemon.cycles
        if (c["failed"], c["loaded"], c["unchanged"]) != (0, 0, IMAGES * len(lab.peers))
    ]
    assert not bad, f"{len(bad)} cycles did not find everything in sync, e.g. {bad[:3]}"
    assert late["fds"] <= early["fds"] + 2, numbers
    assert late["threads"] <= early["threads"] + 2, numbers
    assert late["rss_kb"] - early["rss_kb"] < 20 * 1024, numbers
