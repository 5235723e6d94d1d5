"""The fleet model (bench/fleetmodel.py, issue #15): how long one change takes to reach every
host, flat from the source, through a relay per site, or through a registry per site. Round
numbers: a 100 MB change, a 10 MB/s site link (10 s a copy), a 100 MB/s LAN (1 s a copy),
sessions of 1 s, loads of 5 s."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench import fleetcases as fc
from bench import fleetmodel as fm
from bench.fleetmodel import Fleet, flat, registry, registry_p2p, relays

REPO = Path(__file__).resolve().parents[2]
MB = 1e6
SITE = Fleet(
    change_bytes=100 * MB,
    uplink=1000 * MB,
    site_link=10 * MB,
    lan=100 * MB,
    load_s=5.0,
    session_s=1.0,
    relay_start_s=4.0,
)


def site_of(hosts: int, **changes: float | int | bool) -> Fleet:
    return replace(SITE, hosts_per_site=hosts, **changes)  # type: ignore[arg-type]


def test_a_site_of_4_behind_a_slow_link_flat_crosses_it_4_times_relays_and_registry_once() -> None:
    fleet = site_of(4)
    assert flat(fleet).site_link_bytes == 4 * 100 * MB
    assert relays(fleet).site_link_bytes == 100 * MB
    assert registry(fleet).site_link_bytes == 100 * MB


def test_the_source_sends_one_copy_per_host_flat_and_one_per_site_otherwise() -> None:
    fleet = replace(site_of(5), sites=3)
    assert flat(fleet).uplink_bytes == 15 * 100 * MB
    assert relays(fleet).uplink_bytes == registry(fleet).uplink_bytes == 3 * 100 * MB


def test_with_parallelism_p_flat_time_grows_as_ceil_n_over_p() -> None:
    # every peer behind its own link, the uplink never the limit: each wave costs the same
    one = flat(replace(SITE, sites=1)).seconds
    assert one == pytest.approx(1 + 10 + 5)  # session + copy over the link + load
    for parallel in (1, 3, 4):
        for hosts in range(1, 13):
            fleet = replace(SITE, sites=hosts, parallel=parallel)
            assert flat(fleet).seconds == pytest.approx(math.ceil(hosts / parallel) * one)


def test_a_wave_to_one_site_shares_its_link() -> None:
    # 4 peers at once behind one 10 MB/s link: 40 s of copying, not 10
    assert flat(site_of(4)).seconds == pytest.approx(1 + 4 * 10 + 5)


def test_a_wave_shares_the_uplink() -> None:
    # 4 sites, each its own fast link, the uplink 10 MB/s: the uplink carries 4 copies at once
    fleet = replace(SITE, sites=4, uplink=10 * MB, site_link=1000 * MB)
    assert flat(fleet).seconds == pytest.approx(1 + 40 + 5)


GRID = [
    replace(
        SITE,
        sites=sites,
        hosts_per_site=hosts,
        uplink=uplink * MB,
        parallel=parallel,
        session_s=fixed,
        load_s=fixed,
        relay_start_s=fixed,
    )
    for sites in (1, 3, 7)
    for hosts in (1, 2, 5, 20)
    for uplink in (1, 10, 100, 1000)
    for parallel in (1, 4, 16)
    for fixed in (0.0, 1.0)  # without fixed costs, the bounds are tight
]


@pytest.mark.parametrize("shape", [flat, relays, registry, registry_p2p])
def test_the_model_never_predicts_faster_than_the_uplink_or_a_site_link_allows(
    shape: fm.Shape,
) -> None:
    for fleet in GRID:
        found = shape(fleet)
        slack = 1 + 1e-9  # float rounding, where the bound is met exactly
        assert found.seconds * slack >= found.uplink_bytes / fleet.uplink
        assert found.seconds * slack >= found.site_link_bytes / fleet.site_link


def test_a_session_pays_its_round_trips_on_the_site_link() -> None:
    far = replace(SITE, site_rtt=0.5)
    assert flat(far).seconds - flat(SITE).seconds == pytest.approx(fm.HANDSHAKE_RTTS * 0.5)


def test_imgsync_holds_a_session_until_the_load_so_each_wave_waits_for_its_loads() -> None:
    fleet = replace(SITE, sites=8)  # two waves of 4
    assert flat(fleet).seconds == pytest.approx(2 * (1 + 10 + 5))


def test_without_that_the_loads_overlap_later_sends_and_only_the_last_one_counts() -> None:
    fleet = replace(SITE, sites=8, apply_holds_slot=False)
    assert flat(fleet).seconds == pytest.approx(2 * (1 + 10) + 5)


def test_a_relay_receives_and_loads_waits_its_start_delay_then_sends_over_the_lan() -> None:
    to_relay = 1 + 10 + 5
    to_leaf = 1 + 1 + 5
    assert relays(site_of(2)).seconds == pytest.approx(to_relay + 4 + to_leaf)


def test_a_relay_sends_in_waves_of_its_own_max_parallel_peers() -> None:
    nine = site_of(9)  # a relay and 8 leaves
    wave_of_4 = 1 + 4 * 1 + 5  # 4 copies share the relay's LAN port
    wave_of_8 = 1 + 8 * 1 + 5
    assert relays(nine).seconds == pytest.approx(16 + 4 + 2 * wave_of_4)
    assert relays(replace(nine, relay_parallel=8)).seconds == pytest.approx(16 + 4 + wave_of_8)


def test_relays_pay_off_once_the_copies_they_save_outweigh_the_relays_own_delay() -> None:
    # flat, one site, one wave: 1 + 10 H + 5; relays: 16 + 4 + (1 + (H - 1) + 5)
    # relays win when 9 (H - 1) > 10 (start + session + load): from 3 hosts
    assert flat(site_of(2)).seconds < relays(site_of(2)).seconds
    assert relays(site_of(3)).seconds < flat(site_of(3)).seconds
    assert fm.crossover(SITE, relays, flat) == 3


def test_one_host_is_one_host_whatever_the_shape() -> None:
    one = flat(SITE).seconds
    assert relays(SITE).seconds == registry(SITE).seconds == registry_p2p(SITE).seconds == one


def test_a_registry_publishes_once_then_every_node_pulls_at_once() -> None:
    # the publisher as a relay (16 + 4), its push (1 + 1), the pulls (1 + 1 s a node), a load
    for hosts in (2, 3, 10):
        expected = 16 + 4 + 2 + 1 + (hosts - 1) * 1 + 5
        assert registry(site_of(hosts)).seconds == pytest.approx(expected)


def test_peer_to_peer_pulls_double_the_holders_each_round() -> None:
    for hosts, rounds in ((2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (64, 6)):
        expected = 16 + 4 + 2 + rounds * 2 + 5
        assert registry_p2p(site_of(hosts)).seconds == pytest.approx(expected)


@pytest.mark.parametrize(
    "changes",
    [{"uplink": 0}, {"site_link": 0}, {"lan": 0}, {"sites": 0}, {"parallel": 0},
     {"relay_parallel": 0}, {"hosts_per_site": 0}, {"load_s": -1}, {"relay_start_s": -1}],
)  # fmt: skip
def test_a_fleet_that_cannot_exist_is_refused_by_name(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(changes))):
        replace(SITE, **changes)  # type: ignore[arg-type]


def test_the_command_prints_the_three_shapes_the_crossovers_and_the_lab_checks() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.fleetmodel"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert "flat (uplink 100 Mbit/s) | relays (uplink 100 Mbit/s) | registry" in rows[0]
    hosts = {row.split(" | ")[0].strip("| ") for row in rows[2:]}
    assert {"1", "10", "50", "200", "500"} <= hosts
    assert "| change | site link | relays beat flat | a registry beats relays |" in out.stdout
    assert "| 500 MB | 10 Mbit/s | >= " in out.stdout
    assert "| site of 4: until all 4 hosts run it, via the relay | " in out.stdout
    assert "| no change: 50 peers, max_parallel_peers 16 | " in out.stdout
    assert all(row.endswith(" s |") for row in rows if row.startswith(("| site", "| no change")))


def test_docs_fleets_shows_the_table_and_crossovers_the_model_prints_now() -> None:
    page = (REPO / "docs" / "fleets.md").read_text()
    assert "python -m bench.fleetmodel" in page
    for line in fc.fleet_table() + fc.crossover_lines():
        assert line in page, (
            f"docs/fleets.md is out of date: run python -m bench.fleetmodel\n{line}"
        )
