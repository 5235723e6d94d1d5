"""The fleets the model (:mod:`bench.fleetmodel`) is run for: typical ones, for the tables
and crossovers of docs/fleets.md, and the cases bench/fleet.py measures in the lab."""

from __future__ import annotations

from dataclasses import replace

from .fleetmodel import (
    EXPORT_RATE,
    LOAD_RATE,
    MB,
    MBIT,
    Fleet,
    crossover,
    first_per_site,
    flat,
    predict,
    registry,
    registry_p2p,
    relays,
)


# -- the typical fleets and the lab's checks -------------------------------------------------
def typical(change_mb: float, uplink_mbit: float, site_mbit: float) -> Fleet:
    """A fleet with the bench's measured costs: load and export at the rates of the big
    image's ``docker load -i`` and ``docker save -o``; a relay starts 1 s + its export late."""
    change = change_mb * MB
    return Fleet(
        change_bytes=change,
        uplink=uplink_mbit * MBIT,
        site_link=site_mbit * MBIT,
        site_rtt=0.05 if site_mbit < 100 else 0.02,
        load_s=0.5 + change / LOAD_RATE,
        relay_start_s=1.0 + change / EXPORT_RATE,
    )


FLEETS = ((1, 1), (10, 5), (10, 10), (50, 5), (50, 10), (200, 4), (200, 20), (500, 4), (500, 20))
SITE_LINKS = (10, 100)  # Mbit/s
UPLINKS = (100, 1000)  # Mbit/s
TABLE_CHANGE_MB = 500.0
CROSSOVER_CHANGES_MB = (10.0, 500.0)
CROSSOVER_SITE_LINKS = (10, 100, 1000)  # Mbit/s


def rate_text(mbit: int) -> str:
    return f"{mbit} Mbit/s" if mbit < 1000 else f"{mbit // 1000} Gbit/s"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def cells(fleet: Fleet) -> list[str]:
    found = predict(fleet)
    best = min(found.values(), key=lambda p: p.seconds).seconds
    return [
        f"**{duration(p.seconds)}**" if p.seconds == best else duration(p.seconds)
        for p in found.values()
    ]


def fleet_table() -> list[str]:
    shapes = ("flat", "relays", "registry")
    head = [f"{shape} (uplink {rate_text(u)})" for u in UPLINKS for shape in shapes]
    lines = [
        "| hosts | sites x hosts | site link | " + " | ".join(head) + " |",
        "|---:|---|---|" + "---:|" * len(head),
    ]
    for hosts, per_site in FLEETS:
        for site in SITE_LINKS:
            row = [str(hosts), f"{hosts // per_site} x {per_site}", rate_text(site)]
            for uplink in UPLINKS:
                fleet = replace(
                    typical(TABLE_CHANGE_MB, uplink, site),
                    sites=hosts // per_site,
                    hosts_per_site=per_site,
                )
                row += cells(fleet)
            lines.append("| " + " | ".join(row) + " |")
    return lines


def hosts_text(hosts: int | None) -> str:
    return "never (up to 500 hosts)" if hosts is None else f">= {hosts} hosts"


def crossover_lines() -> list[str]:
    lines = []
    for change in CROSSOVER_CHANGES_MB:
        for site in CROSSOVER_SITE_LINKS:
            fleet = typical(change, 1000, site)
            lines.append(
                f"| {change:.0f} MB | {rate_text(site)} "
                f"| {hosts_text(crossover(fleet, relays, flat))} "
                f"| {hosts_text(crossover(fleet, registry, relays))} "
                f"| {hosts_text(crossover(fleet, registry_p2p, relays, factor=2.0))} |"
            )
    return [
        "| change | site link | relays beat flat | a registry beats relays "
        "| a registry with p2p pulls is 2x as fast as relays |",
        "|---:|---|---|---|---|",
        *lines,
    ]


LAB_SESSION_S = 1.3  # the lab's no-change cycle to 1 peer: a process, a session, 10 images
LAB_LOOPBACK = 144 * MB  # imgsync's session on loopback (the benchmark's throughput row)
LAB_CHANGE = 10 * 1024 * 1024  # bench/fleet.py's change: a 10 MiB top layer


def lab_site(relay: bool) -> Fleet:
    """bench/fleet.py's site: 4 hosts behind a 100 Mbit/s link, one 10 MiB change loaded in
    0.5 s; via a relay (debounce 0.2 s, then a save of the 30 MiB image) or flat to the 4
    hosts, each behind its own such link in the lab."""
    change = Fleet(
        LAB_CHANGE,
        LAB_LOOPBACK,
        12.5 * MB,
        lan=LAB_LOOPBACK,
        load_s=0.5,
        session_s=LAB_SESSION_S,
        relay_start_s=0.2 + 30 * 1024 * 1024 / EXPORT_RATE,
    )
    return replace(change, hosts_per_site=4) if relay else replace(change, sites=4)


def lab_no_change(peers: int, parallel: int) -> Fleet:
    """bench/fleet.py's no-change cycles: nothing to send or load, sessions in waves."""
    return Fleet(
        0.0, LAB_LOOPBACK, LAB_LOOPBACK, load_s=0.0, session_s=LAB_SESSION_S,
        sites=peers, parallel=parallel,
    )  # fmt: skip


def lab_predictions() -> list[tuple[str, float]]:
    """What the model predicts for each case bench/fleet.py measures, by name."""
    site = lab_site(relay=True)
    rows = [
        ("site of 4: until the relay runs it", first_per_site(site) - site.relay_start_s),
        ("site of 4: until all 4 hosts run it, via the relay", relays(site).seconds),
        ("site of 4: until all 4 run it, flat", flat(lab_site(relay=False)).seconds),
    ]
    for parallel in (4, 16):
        for peers in (1, 10, 50):
            seconds = flat(lab_no_change(peers, parallel)).seconds
            rows.append((f"no change: {peers} peers, max_parallel_peers {parallel}", seconds))
    return rows


def lab_table() -> list[str]:
    lines = ["| lab case (bench/fleet.py) | predicted |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.2f} s |" for name, seconds in lab_predictions()]
    return lines
