"""`imgsync daemon` on the real lab: schedule, image events, one cycle at a time,
clean stop on SIGTERM, and SIGHUP that never trades a good config for a bad one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, build_image

from .helpers import build

pytestmark = pytest.mark.lab


class Daemon:
    """An `imgsync daemon` subprocess whose JSON log lines the test can read."""

    def __init__(self, lab: Lab, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen(
            lab.imgsync_argv("daemon"),
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def cycles(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == "cycle finished"]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(env: dict[str, str] | None = None) -> Daemon:
        started.append(Daemon(lab, tmp_path / f"daemon-{len(started)}.log", env))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def everywhere(lab: Lab, ref: str, image_id: str) -> Callable[[], bool]:
    return lambda: all(p.docker.image_id(ref) == image_id for p in lab.peers)


def test_the_schedule_brings_a_new_version_to_every_peer(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    ref = "daemon-interval/web:1"
    first = build(lab, ref, seed=60)
    lab.write_configs([ref], extra={"schedule": {"interval": "3s", "events": False}})
    running = daemon()
    wait_until(everywhere(lab, ref, first), 30, "the cycle at start syncs v1")
    second = build(lab, ref, seed=61)
    wait_until(everywhere(lab, ref, second), 30, "a scheduled cycle syncs v2")
    assert running.process.poll() is None
    assert any(c["loaded"] == 2 for c in running.cycles())


def test_an_image_change_is_synced_within_seconds_even_with_a_long_interval(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    ref = "daemon-events/web:1"
    first = build(lab, ref, seed=70)
    lab.write_configs([ref], extra={"schedule": {"interval": "1h", "debounce": "1s"}})
    running = daemon()
    wait_until(everywhere(lab, ref, first), 30, "the cycle at start syncs v1")
    wait_until(lambda: len(running.cycles()) == 1, 10, "the first cycle is logged")
    second = build(lab, ref, seed=71)
    took = wait_until(everywhere(lab, ref, second), 15, "the event-driven cycle syncs v2")
    assert took < 15
    assert any(e["event"] == "image changed" for e in running.events())


def test_the_daemon_keeps_its_sessions_and_replaces_one_that_died_between_cycles(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    """Connections are counted at the lab's relays: the second cycle opens none; after the
    relays drop every connection, the next cycle connects again (once per peer) and
    delivers."""
    ref = "daemon-kept/web:1"
    first = build(lab, ref, seed=90, size=256 * 1024)
    lab.write_configs([ref], extra={"schedule": {"interval": "1h", "debounce": "1s"}})
    running = daemon()
    wait_until(everywhere(lab, ref, first), 30, "the cycle at start syncs v1")
    wait_until(lambda: len(running.cycles()) == 1, 10, "the first cycle is logged")
    connections = {p.name: p.relay.connections_total for p in lab.peers}
    second = build(lab, ref, seed=91, size=256 * 1024)
    wait_until(everywhere(lab, ref, second), 30, "the event-driven cycle syncs v2")
    wait_until(lambda: len(running.cycles()) == 2, 10, "the second cycle is logged")
    assert {p.name: p.relay.connections_total for p in lab.peers} == connections
    for peer in lab.peers:  # the kept sessions die between two cycles
        peer.relay.drop_all()
    third = build(lab, ref, seed=92, size=256 * 1024)
    wait_until(everywhere(lab, ref, third), 30, "a new session syncs v3")
    wait_until(lambda: len(running.cycles()) == 3, 10, "the third cycle is logged")
    assert {p.name: p.relay.connections_total for p in lab.peers} == {
        name: count + 1 for name, count in connections.items()
    }
    assert all(c["failed"] == 0 for c in running.cycles())
    assert not [e for e in running.events() if e["event"] == "peer attempt failed; retrying"]


def test_sigterm_during_a_large_upload_stops_cleanly_and_leaves_no_temp_files(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    ref = "daemon-sigterm/big:1"
    old = build(lab, ref, seed=80)
    lab.write_configs([ref], extra={"schedule": {"interval": "1h", "events": False}})
    assert lab.run_imgsync("sync").returncode == 0
    new = build_image(lab.source.client(), ref, [("big.bin", 150 * 1024 * 1024)], seed=81)
    for peer in lab.peers:
        peer.relay.rate_limit = 10e6  # 15 s per upload: SIGTERM must not wait for it
    try:
        running = daemon()
        p1 = lab.peer("p1")
        wait_until(lambda: any(p1.inbox.glob(".part-*.tar")), 60, "an upload to p1 is in flight")
        time.sleep(1)
        running.signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert running.process.wait(15) == 0
        assert time.monotonic() - stopped < 10
    finally:
        for peer in lab.peers:
            peer.relay.rate_limit = None
    for peer in lab.peers:
        assert peer.docker.image_id(ref) in (old, new), peer.name

    assert lab.run_imgsync("sync").returncode == 0
    for peer in lab.peers:
        assert peer.docker.image_id(ref) == new
        leftovers = [*peer.inbox.glob(".tmp-*"), *peer.inbox.glob(".part-*")]
        assert not leftovers, (peer.name, leftovers)
    assert not list(Path(lab.export_dir).glob(".tmp-*"))


def test_a_manual_sync_does_not_run_while_a_daemon_cycle_does(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    ref = "daemon-lock/big:1"
    build_image(lab.source.client(), ref, [("big.bin", 100 * 1024 * 1024)], seed=90)
    lab.write_configs([ref], extra={"schedule": {"interval": "1h", "events": False}})
    p1 = lab.peer("p1")
    p1.relay.rate_limit = 20e6
    try:
        running = daemon()
        wait_until(
            lambda: any(p1.inbox.glob(".part-*.tar")), 60, "the daemon's upload is in flight"
        )
        manual = lab.run_imgsync("sync", "--no-wait")
    finally:
        p1.relay.rate_limit = None
    assert manual.returncode == 3
    assert "another imgsync cycle is running" in manual.stderr
    wait_until(lambda: len(running.cycles()) == 1, 120, "the daemon's cycle finishes")
    waited = lab.run_imgsync("sync", "--json")
    assert waited.returncode == 0
    assert {r["action"] for r in json.loads(waited.stdout)["results"]} == {"unchanged"}


def test_sighup_with_a_broken_config_keeps_the_running_one(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    ref = "daemon-hup/web:1"
    first = build(lab, ref, seed=100)
    config = lab.write_configs([ref], extra={"schedule": {"interval": "3s", "events": False}})
    running = daemon()
    wait_until(everywhere(lab, ref, first), 30, "the cycle at start syncs v1")
    good = config.read_text()
    config.write_text(good + "\n[source2]\nwhat = 1\n")
    try:
        running.signal(signal.SIGHUP)
        wait_until(
            lambda: any(e["event"].startswith("config reload failed") for e in running.events()),
            10,
            "the failed reload is logged",
        )
    finally:
        config.write_text(good)
    (failure,) = [e for e in running.events() if e["event"].startswith("config reload failed")]
    assert "source2: unknown key" in failure["error"]
    assert running.process.poll() is None
    second = build(lab, ref, seed=101)
    wait_until(everywhere(lab, ref, second), 30, "cycles go on with the old config")


def test_systemd_hears_ready_status_watchdog_and_stopping(
    lab: Lab, daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    ref = "daemon-notify/web:1"
    build(lab, ref, seed=110)
    lab.write_configs([ref], extra={"schedule": {"interval": "1h", "events": False}})
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(0.5)
        running = daemon(
            env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        )
        heard: list[str] = []

        def hear(field: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if any(field in message for message in heard):
                    return
                try:
                    heard.append(notify.recv(4096).decode())
                except TimeoutError:
                    continue
            raise AssertionError(f"no {field} within {timeout}s; heard {heard}")

        hear("READY=1", 15)
        hear("STATUS=last cycle: 2 in sync, 0 failed", 30)
        hear("WATCHDOG=1", 5)
        running.signal(signal.SIGTERM)
        hear("STOPPING=1", 10)
        assert running.process.wait(10) == 0


def test_sighup_with_a_valid_config_takes_it_and_sigint_stops_the_daemon(
    lab: Lab, daemon: Callable[..., Daemon]
) -> None:
    web, db = "daemon-hup-ok/web:1", "daemon-hup-ok/db:1"
    web_id, db_id = build(lab, web, seed=110), build(lab, db, seed=111)
    schedule = {"schedule": {"interval": "2s", "events": False}}
    lab.write_configs([web], extra=schedule)
    running = daemon()
    wait_until(everywhere(lab, web, web_id), 30, "the cycle at start syncs web")
    assert all(p.docker.image_id(db) is None for p in lab.peers)
    lab.write_configs([web, db], extra=schedule)  # a valid new config: one more image
    running.signal(signal.SIGHUP)
    wait_until(
        lambda: any(e["event"] == "config reloaded" for e in running.events()),
        10,
        "the reload is logged",
    )
    wait_until(everywhere(lab, db, db_id), 30, "a cycle with the new config syncs db")
    running.signal(signal.SIGINT)
    assert running.process.wait(15) == 0
    assert running.events()[-1]["event"] == "daemon stopped"
