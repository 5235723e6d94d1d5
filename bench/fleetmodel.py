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

``python -m bench.fleetmodel`` prints the tables of docs/fleets.md, for the fleets in
:mod:`bench.fleetcases` (typical ones, and the cases bench/fleet.py measures in the lab).
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


def main() -> None:
    from .fleetcases import TABLE_CHANGE_MB, crossover_lines, fleet_table, lab_table

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
