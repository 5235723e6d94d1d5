"""A site relay: headquarters (the lab's source) → p1, the relay, behind a shaped link → p2 and
p3, its leaves, on the site's fast LAN.

p1's config has ``[receiver]`` (headquarters' peer), ``[source]`` (its own Docker) and
``[[peers]]`` p2 and p3, and it runs ``imgsync daemon``, which wakes when its engine loads or
tags a selected image. What crosses each link is counted at the lab's relays.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imgsync.bundle.bundledir import BundleDir
from lab import Lab, build_image
from lab.site import RelayDaemon, make_relay
from lab.tomlw import dumps

from .helpers import failures, run, sync_json

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
        make_relay(the_lab, "p1", ["p2", "p3"], [IMAGE])
        hq = tomllib.loads(the_lab.source_config.read_text())  # headquarters knows the relay
        hq["peers"] = [p for p in hq["peers"] if p["name"] == "p1"]
        the_lab.source_config.write_text(dumps(hq))
        the_lab.peer("p1").relay.rate_limit = SITE_LINK
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def daemon(site: Lab) -> Iterator[RelayDaemon]:
    with RelayDaemon(site, "p1") as relay:
        yield relay


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def leaves_run(lab: Lab, version: str) -> bool:
    return all(lab.peer(name).docker.image_id(IMAGE) == version for name in ("p2", "p3"))


def hq_sync(lab: Lab) -> dict[str, Any]:
    code, report = sync_json(lab)
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


def test_status_fleet_on_headquarters_shows_the_site_hosts_through_the_relay(
    site: Lab, daemon: RelayDaemon
) -> None:
    version = site.source.image_id(IMAGE) or build_image(
        site.source.client(), IMAGE, [("base.bin", MiB)], seed=15520
    )
    hq_sync(site)
    wait_for("the leaves to run the version", lambda: leaves_run(site, version))
    relay_sync(site)  # the relay's state DB has seen its leaves run it
    plain = run(site.imgsync_argv("status", "--json"))
    assert [r["peer"] for r in json.loads(plain.stdout)["peers"]] == ["p1"]
    done = run(site.imgsync_argv("status", "--fleet", "--json"))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r["peer"], r["image"]): r for r in json.loads(done.stdout)["peers"]}
    assert set(rows) == {("p1", IMAGE), ("p1/p2", IMAGE), ("p1/p3", IMAGE)}
    assert all(r["version"] == version and r["current"] for r in rows.values())
    site.peer("p1").relay.set_blocked(True)  # a relay that cannot be asked: its site unknown
    try:
        done = run(site.imgsync_argv("status", "--fleet", "--json"))
    finally:
        site.peer("p1").relay.set_blocked(False)
    assert done.returncode == 1
    unknown = {r["peer"]: r for r in json.loads(done.stdout)["peers"]}["p1/*"]
    assert not unknown["current"] and "its site not read" in unknown["error"], unknown
