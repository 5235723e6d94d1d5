"""A site relay: headquarters (the lab's source) → p1, the relay, behind a shaped link → p2 and
p3, its leaves, on the site's fast LAN.

p1's config has ``[receiver]`` (headquarters' peer), ``[source]`` (its own Docker) and
``[[peers]]`` p2 and p3, and it runs ``imgsync daemon``, which wakes when its engine loads or
tags a selected image. What crosses each link is counted at the lab's relays.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imgsync.bundle.bundledir import BundleDir
from lab import Lab, build_image
from lab.tomlw import dumps

from .helpers import failures, sync_json

pytestmark = pytest.mark.lab

IMAGE = "relay-e2e/app:1"
SITE_LINK = 12_500_000  # bytes/s: 100 Mbit/s from headquarters to the relay
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    the_lab = Lab(tmp_path_factory.mktemp("relays"), peers=3)
    try:
        the_lab.start()
        the_lab.write_configs([IMAGE])
        _relay_config(the_lab)
        the_lab.peer("p1").relay.rate_limit = SITE_LINK
        yield the_lab
    finally:
        the_lab.stop()


def _relay_config(lab: Lab) -> None:
    """p1: its receiver config, plus a source of its own Docker feeding p2 and p3."""
    hq = tomllib.loads(lab.source_config.read_text())
    relay = lab.peer("p1")
    mine = tomllib.loads(relay.config_path.read_text())
    home = relay.config_path.parent
    mine["source"] = {
        "docker_host": relay.docker.receiver_keys().get("docker_host", relay.docker.url),
        "images": [IMAGE],
        "export_dir": str(home / "export"),
    }
    mine["ssh"] = hq["ssh"]
    mine["peers"] = [p for p in hq["peers"] if p["name"] in ("p2", "p3")]
    mine["state"] = {"path": str(home / "state.db")}
    mine["schedule"] = {"interval": "1h", "events": True, "debounce": "1s"}
    relay.config_path.write_text(dumps(mine))


class RelayDaemon:
    """``imgsync daemon`` on the relay, started and stopped (by PID) by the test."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = self.lab.imgsync_argv("daemon", config=self.lab.peer("p1").config_path)
        log = open(self.lab.peer("p1").config_path.with_name("daemon.log"), "ab")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def daemon(site: Lab) -> Iterator[RelayDaemon]:
    relay = RelayDaemon(site)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def leaves_run(lab: Lab, version: str) -> bool:
    return all(lab.peer(name).docker.image_id(IMAGE) == version for name in ("p2", "p3"))


def hq_sync(lab: Lab) -> dict[str, Any]:
    code, report = sync_json(lab, "--peer", "p1")
    assert code == 0, failures(report)
    return report


def relay_sync(lab: Lab) -> dict[str, Any]:
    """A one-shot cycle on the relay: it waits while the daemon's runs (one per host)."""
    code, report = sync_json(lab, config=lab.peer("p1").config_path)
    assert code == 0, failures(report)
    return report


def test_a_new_version_reaches_the_leaves_crossing_the_site_link_once_and_is_not_saved_again(
    site: Lab, daemon: RelayDaemon
) -> None:
    version = build_image(site.source.client(), IMAGE, [("base.bin", 6 * MiB)], seed=15500)
    site.reset_counters()
    since = time.time()
    report = hq_sync(site)
    [sent] = report["results"]
    assert sent["transfer"] == "full"
    wait_for("the leaves to run the version", lambda: leaves_run(site, version))
    relay = site.peer("p1")
    assert relay.relay.bytes_up < sent["bytes_sent"] * 1.1 + 256 * 1024  # once, not 3 times
    for leaf in ("p2", "p3"):
        assert site.peer(leaf).relay.bytes_up > 6 * MiB, leaf
    # the bundle headquarters sent is the relay's export: no docker save on the relay
    assert relay.docker.events_since(since, event="save") == []
    exported = relay.config_path.with_name("export")
    assert any(name.endswith(".tar") for name in os.listdir(exported))


def test_a_second_cycle_moves_nothing_anywhere(site: Lab, daemon: RelayDaemon) -> None:
    version = site.source.image_id(IMAGE)
    assert version is not None
    hq_sync(site)
    wait_for("the leaves to run the version", lambda: leaves_run(site, version))
    relay_sync(site)  # now everything is current
    site.reset_counters()
    report = hq_sync(site)
    assert {r["action"] for r in report["results"]} == {"unchanged"}
    report = relay_sync(site)
    assert {r["action"] for r in report["results"]} == {"unchanged"}
    carried = {p.name: p.relay.bytes_up for p in site.peers}
    assert max(carried.values()) < 64 * 1024, carried  # questions and answers, no bundle


def test_a_thin_update_crosses_the_site_link_as_its_changed_layer_and_reaches_the_leaves(
    site: Lab, daemon: RelayDaemon
) -> None:
    layers = [("base.bin", 6 * MiB), ("update.bin", 1 * MiB)]
    version = build_image(site.source.client(), IMAGE, layers, seed=15500)
    site.reset_counters()
    report = hq_sync(site)
    [sent] = report["results"]
    assert sent["transfer"] == "thin"
    wait_for("the leaves to run the update", lambda: leaves_run(site, version))
    assert site.peer("p1").relay.bytes_up < 1.1 * MiB + 256 * 1024
    for leaf in ("p2", "p3"):  # the relay saved it and sent its leaves thin too
        assert site.peer(leaf).relay.bytes_up < 1.1 * MiB + 256 * 1024, leaf
    # its export is whole (a thin bundle never stands in for one): a new leaf gets it all
    export = BundleDir(site.peer("p1").config_path.with_name("export"))
    current = export.read_marker(IMAGE)
    assert current is not None and current.version == version
    assert export.bundle_path(current).stat().st_size == current.size


def test_a_relay_killed_mid_cycle_loses_nothing_and_its_leaves_never_run_half_an_image(
    site: Lab, daemon: RelayDaemon
) -> None:
    before = site.peer("p2").docker.image_id(IMAGE)
    version = build_image(site.source.client(), IMAGE, [("big.bin", 24 * MiB)], seed=15510)
    for leaf in ("p2", "p3"):  # slow the LAN so the relay's cycle is caught in flight
        site.peer(leaf).relay.rate_limit = 4_000_000
    try:
        site.reset_counters()
        hq_sync(site)
        carried = site.peer("p1").relay.bytes_up
        wait_for("the relay to send", lambda: site.peer("p2").relay.bytes_up > 2 * MiB)
        daemon.kill()
        assert site.peer("p2").docker.image_id(IMAGE) == before  # not half of the new one
        daemon.start()
    finally:
        for leaf in ("p2", "p3"):
            site.peer(leaf).relay.rate_limit = None
    wait_for("the leaves to run the version", lambda: leaves_run(site, version))
    assert site.peer("p1").relay.bytes_up == carried  # headquarters sent nothing again
