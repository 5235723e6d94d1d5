"""A model of the time one change takes to reach every host of a fleet (issue #15), for three
shapes: flat fan-out from the source, a relay per site, a registry hand-off per site.

Inputs (:class:`Fleet`): ``B`` bytes of the change (the bundle), ``U`` the source's uplink,
``L`` and ``rtt`` each site's link (into the site), ``lan`` the site LAN rate of one host,
``S`` sites of ``H`` hosts (``N = S * H``), ``load`` the per-host time from the last byte to
the loaded image, ``sess`` a session's fixed cost (connect + inventory), ``P`` and ``Pr`` the
source's and each relay's ``max_parallel_peers``, ``D`` a site host's start delay (a relay
starting its own cycle: export, or reuse of the received bundle; a publisher starting its
push). Rates in bytes/s, times in seconds.

One hop (:func:`fan_out`): ``n`` receivers behind ``paths`` links, sent to in waves of
``k = min(P, left)`` sessions. A wave's ``k`` transfers share the sender's rate, and the
``c = ceil(k / paths)`` of them behind one link share that link (peers listed so that a wave
spreads over the sites; listed site by site, a wave shares one link: up to P times slower)::

    wave(k) = sess + HANDSHAKE_RTTS * rtt + B / min(sender / k, link / c) [+ load]
    hop     = sum of wave(k) over the waves          [+ load, once, at the end]

imgsync holds a session (its slot) until the peer reports its apply, so by default a wave
ends with its load (``apply_holds_slot``); with it off, loads overlap the later sends and
only the last one is added.

The shapes, each the time until the last host has loaded the change::

    flat      = hop(N receivers, P, sender U, link L, S paths, rtt)
    relays    = hop(S relays, P, U, L, S, rtt) + D + hop(H - 1 leaves, Pr, lan, lan, 1, 0)
    copy      = sess + B / lan   (one request and one copy on the LAN)
    registry  = hop(S publishers, P, U, L, S, rtt) + D + copy (the push)
                + sess + (H - 1) * B / lan + load   (the nodes pull at once through the
                                                     registry's port, then unpack: a load)
    registry + p2p = ... + copy (the push) + ceil(log2 H) * copy + load   (every node that
                has the change serves one more: the holders double each round)

Bytes crossing each site link: flat ``H * B``; relays and registry ``B``. Not modelled: the
source's own export (once, and streamed while ``docker save`` writes), CPU contention (the
lab's peers share 2 cores), TCP windows on long round trips, a registry's own limits.

``python -m bench.fleetmodel`` prints the table of docs/fleets.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

MB = 1e6
MBIT = 1e6 / 8  # bytes/s in one Mbit/s
HANDSHAKE_RTTS = 4  # round trips before a session sends: TCP, key exchange, auth, hello
LOAD_RATE = 119 * MB  # docker load -i of the bench's 526 MB tarball: 4.43 s
EXPORT_RATE = 141 * MB  # docker save -o of it: 3.72 s
SESSION_S = 0.8  # the bench's "peers connect + ask" phase, loopback
# the least each input may be (others: 0): rates at least a byte/s, counts at least one
MINIMUM = dict.fromkeys(
    ("uplink", "site_link", "lan", "hosts_per_site", "sites", "parallel", "relay_parallel"), 1
)


@dataclass(frozen=True)
class Fleet:
    change_bytes: float
    uplink: float  # bytes/s out of the source
    site_link: float  # bytes/s into each site
    site_rtt: float = 0.0  # seconds, source <-> site
    lan: float = 1000 * MBIT  # bytes/s of one host on the site LAN
    hosts_per_site: int = 1
    sites: int = 1
    load_s: float = 5.0  # per host, from the last byte to the loaded image
    session_s: float = SESSION_S  # per session: connect + inventory
    parallel: int = 4  # max_parallel_peers at the source
    relay_parallel: int = 4  # max_parallel_peers at each relay
    relay_start_s: float = 4.0  # a site host's delay before it sends on (or pushes)
    apply_holds_slot: bool = True  # a session ends after the peer's apply (imgsync today)

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if getattr(self, f.name) < MINIMUM.get(f.name, 0)]
        if bad:
            raise ValueError(f"fleet model: out of range: {', '.join(bad)}")

    @property
    def hosts(self) -> int:
        return self.sites * self.hosts_per_site


@dataclass(frozen=True)
class Hop:
    """One sender fanning out to ``receivers`` behind ``paths`` links."""

    receivers: int
    parallel: int
    sender_rate: float
    link_rate: float
    paths: int
    rtt: float


@dataclass(frozen=True)
class Prediction:
    shape: str
    seconds: float  # until the last host has loaded the change
    site_link_bytes: float  # crossing each site's link
    uplink_bytes: float  # leaving the source


def waves(receivers: int, parallel: int) -> list[int]:
    """Sessions per wave: ``parallel`` at a time, the rest in a last, smaller wave."""
    full, rest = divmod(receivers, parallel)
    return [parallel] * full + ([rest] if rest else [])


def wave_seconds(hop: Hop, k: int, fleet: Fleet) -> float:
    per_link = math.ceil(k / hop.paths)
    rate = min(hop.sender_rate / k, hop.link_rate / per_link)
    fixed = fleet.session_s + HANDSHAKE_RTTS * hop.rtt
    return fixed + fleet.change_bytes / rate + (fleet.load_s if fleet.apply_holds_slot else 0.0)


def fan_out(hop: Hop, fleet: Fleet) -> float:
    """Seconds until the last of ``hop.receivers`` has loaded the change (0 for none)."""
    if hop.receivers == 0:
        return 0.0
    sends = sum(wave_seconds(hop, k, fleet) for k in waves(hop.receivers, hop.parallel))
    return sends + (0.0 if fleet.apply_holds_slot else fleet.load_s)


def to_sites(fleet: Fleet, receivers: int) -> Hop:
    return Hop(
        receivers, fleet.parallel, fleet.uplink, fleet.site_link, fleet.sites, fleet.site_rtt
    )


def flat(fleet: Fleet) -> Prediction:
    seconds = fan_out(to_sites(fleet, fleet.hosts), fleet)
    site = fleet.hosts_per_site * fleet.change_bytes
    return Prediction("flat", seconds, site, fleet.hosts * fleet.change_bytes)


def first_per_site(fleet: Fleet) -> float:
    """The source to one host per site (a relay, a publisher), each loaded, then ``D``."""
    return fan_out(to_sites(fleet, fleet.sites), fleet) + fleet.relay_start_s


def relays(fleet: Fleet) -> Prediction:
    if fleet.hosts_per_site == 1:
        return replace(flat(fleet), shape="relays")
    leaves = Hop(fleet.hosts_per_site - 1, fleet.relay_parallel, fleet.lan, fleet.lan, 1, 0.0)
    seconds = first_per_site(fleet) + fan_out(leaves, fleet)
    return Prediction("relays", seconds, fleet.change_bytes, fleet.sites * fleet.change_bytes)


def registry(fleet: Fleet, p2p: bool = False) -> Prediction:
    """The publisher pushes once; the nodes pull at once from the registry (sharing its LAN
    port), or with ``p2p`` from every node that has it (the holders double each round)."""
    shape = "registry + p2p" if p2p else "registry"
    if fleet.hosts_per_site == 1:
        return replace(flat(fleet), shape=shape)
    copy = fleet.session_s + fleet.change_bytes / fleet.lan  # one request + one copy
    nodes = fleet.hosts_per_site - 1
    pulls = (
        math.ceil(math.log2(fleet.hosts_per_site)) * copy
        if p2p
        else copy + (nodes - 1) * fleet.change_bytes / fleet.lan
    )
    seconds = first_per_site(fleet) + copy + pulls + fleet.load_s
    return Prediction(shape, seconds, fleet.change_bytes, fleet.sites * fleet.change_bytes)


def registry_p2p(fleet: Fleet) -> Prediction:
    return registry(fleet, p2p=True)


Shape = Callable[[Fleet], Prediction]
SHAPES: tuple[Shape, ...] = (flat, relays, registry)


def predict(fleet: Fleet) -> dict[str, Prediction]:
    return {p.shape: p for p in (shape(fleet) for shape in SHAPES)}


def crossover(
    fleet: Fleet,
    better: Shape,
    than: Shape,
    factor: float = 1.0,
    most: int = 500,
) -> int | None:
    """The fewest hosts in one site (2..``most``) at which ``better`` is ``factor`` times as
    fast as ``than`` (1.0: just faster)."""
    for hosts in range(2, most + 1):
        site = replace(fleet, sites=1, hosts_per_site=hosts)
        if better(site).seconds * factor < than(site).seconds:
            return hosts
    return None


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


def main() -> None:
    print(
        f"Predicted time for a {TABLE_CHANGE_MB:.0f} MB change to reach every host "
        "(fastest in bold):\n"
    )
    print("\n".join(fleet_table()))
    print("\nCrossovers: hosts in one site (uplink 1 Gbit/s; relays' max_parallel_peers 4):\n")
    print("\n".join(crossover_lines()))
    print("\nChecks against the lab:\n")
    print("\n".join(lab_table()))


if __name__ == "__main__":
    main()
