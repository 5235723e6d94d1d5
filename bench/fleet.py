"""``.venv/bin/python -m bench.fleet [--runs 3] [--quick]``: the fleet cases of #15.

1. **A site behind a relay.** Headquarters (the lab's source) → p1, the relay, behind a
   100 Mbit/s link → p2 to p4, its leaves (a site of 4 hosts). Each run builds a new 10 MiB
   top layer over a 20 MiB base all hosts hold; headquarters syncs the relay alone and the
   relay's ``imgsync daemon`` passes it on. Measured: what the site link carried over the
   changed layer (counted at the lab's relay), and the time until all four hosts run it
   over the time until the relay does (headquarters' sync returning). Then the same change
   sent flat (headquarters to all four): what the site's links carried together.
2. **Fifty peers from one source.** 50 peers (sharing one dockerd; each its own sshd, relay,
   inbox, receiver config) x 10 images; a no-change cycle to the first N = 1, 10, 50 peers
   with ``max_parallel_peers`` 4 and 16: wall time, the source's CPU seconds and peak RSS,
   its peak threads and descriptors, and every process's CPU (the lab's peers share this
   machine's cores, so the wall time carries their sessions too).

Written to docs/fleet-benchmarks.md only from a committed tree (as ``python -m bench``);
``--quick`` (1 run, 10 peers) measures any tree and prints only.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import Lab, build_image
from lab.cluster import ENGINE_SHARED
from lab.procstat import Peak
from lab.site import RelayDaemon, make_relay

from . import fleetcases, fleetmodel, tree
from .fleetdaemon import daemon_rows
from .measure import Spread, load_average

MiB = 1024 * 1024
SITE_LINK = 12_500_000  # bytes/s: 100 Mbit/s
PAGE = tree.REPO / "docs" / "fleet-benchmarks.md"
Row = tuple[str, ...]


def _wait(condition: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def _all_run(nodes: list[Any], image: str, version: str) -> Callable[[], bool]:
    return lambda: all(node.image_id(image) == version for node in nodes)


def _sync(lab: Lab, *args: str, config: Path | None = None) -> None:
    done = lab.run_imgsync("sync", *args, config=config, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"sync failed: {done.stderr[-2000:]}")


def site_case(root: Path, runs: int) -> tuple[list[Row], list[float]]:
    image, hosts = "fleet/site:1", ["p1", "p2", "p3", "p4"]
    loads: list[float] = []
    with Lab(root / "site", peers=4) as lab:
        base = [("base.bin", 20 * MiB)]
        build_image(lab.source.client(), image, base, seed=16000)
        lab.write_configs([image])
        _sync(lab)  # every host holds the base
        make_relay(lab, "p1", hosts[1:], [image], debounce="200ms")
        lab.peer("p1").relay.rate_limit = SITE_LINK
        link, ratio, reach_relay, reach_all = [], [], [], []
        with RelayDaemon(lab, "p1"):
            for run in range(runs):
                layers = [*base, (f"change{run}.bin", 10 * MiB)]
                version = build_image(lab.source.client(), image, layers, seed=16000)
                leaves_have = [lab.peer(h).docker for h in hosts[1:]]
                loads.append(load_average())
                lab.reset_counters()
                started = time.monotonic()
                _sync(lab, "--peer", "p1")
                relay_done = time.monotonic() - started
                _wait(_all_run(leaves_have, image, version))
                all_done = time.monotonic() - started
                link.append(lab.peer("p1").relay.bytes_up / (10 * MiB))
                reach_relay.append(relay_done)
                reach_all.append(all_done)
                ratio.append(all_done / relay_done)
        flat, flat_s = [], []
        for peer in lab.peers:  # flat: headquarters sends each host over a link like p1's
            peer.relay.rate_limit = SITE_LINK
        for run in range(runs):  # the relay's daemon stopped
            layers = [*base, (f"flat{run}.bin", 10 * MiB)]
            build_image(lab.source.client(), image, layers, seed=16000)
            lab.reset_counters()
            started = time.monotonic()
            _sync(lab)
            flat_s.append(time.monotonic() - started)
            flat.append(sum(lab.peer(h).relay.bytes_up for h in hosts) / (10 * MiB))
    predicted = dict(fleetcases.lab_predictions())
    rows: list[Row] = [
        ("site link bytes / changed layer, via the relay", _s(link), "1.00", "≤ 1.1"),
        ("site links' bytes / changed layer, flat to 4 hosts", _s(flat), "4.00", ""),
        ("seconds until the relay runs it (headquarters' sync)", _s(reach_relay),
         f"{predicted['site of 4: until the relay runs it']:.2f}", ""),
        ("seconds until all 4 hosts run it, via the relay", _s(reach_all),
         f"{predicted['site of 4: until all 4 hosts run it, via the relay']:.2f}", ""),
        ("seconds until all 4 run it, flat (each its own such link)", _s(flat_s),
         f"{predicted['site of 4: until all 4 run it, flat']:.2f}", ""),
        ("all 4 hosts / the relay alone, via the relay", _s(ratio), "", "≤ 1.3"),
    ]  # fmt: skip
    return rows, loads


def uplink_case(root: Path, runs: int, peers: int) -> tuple[list[Row], list[float]]:
    """A first sync of a new 50 MiB image to ``peers`` peers (each its own dockerd) through
    one 100 Mbit/s uplink shared by all: the cycle's time over the time the bytes need."""
    image, seed = "fleet/big:1", 16200
    rows: list[Row] = []
    loads: list[float] = []
    with Lab(root / "uplink", peers=peers) as lab:
        lab.cap_uplink(SITE_LINK)
        for parallel in sorted({4, peers}):
            source = {
                "docker_host": lab.source.url,
                "images": [image],
                "export_dir": str(lab.export_dir),
                "max_parallel_peers": parallel,
            }
            lab.write_configs([image], extra={"source": source})
            ratios, seconds = [], []
            for _ in range(runs):
                seed += 1  # a new image each run: every peer lacks it
                build_image(lab.source.client(), image, [("big.bin", 50 * MiB)], seed=seed)
                loads.append(load_average())
                lab.reset_counters()
                started = time.monotonic()
                _sync(lab)
                took = time.monotonic() - started
                sent = sum(p.relay.bytes_up for p in lab.peers)
                seconds.append(took)
                ratios.append(took / (sent / SITE_LINK))
            rows.append((str(peers), str(parallel), _s(seconds), _s(ratios), "≤ 1.2"))
    return rows, loads


def scale_case(root: Path, runs: int, peers: int) -> tuple[list[Row], list[Row], list[float]]:
    images = [f"fleet/app{i}:1" for i in range(10)]
    counts = sorted({1, min(10, peers), peers})
    rows: list[Row] = []
    loads: list[float] = []
    with Lab(root / "scale", peers=peers, peer_engines=[ENGINE_SHARED] * peers) as lab:
        for i, image in enumerate(images):
            build_image(lab.source.client(), image, [("a.bin", 64 * 1024)], seed=16100 + i)
        for parallel in (4, 16):
            source = {
                "docker_host": lab.source.url,
                "images": images,
                "export_dir": str(lab.export_dir),
                "max_parallel_peers": parallel,
            }
            lab.write_configs(images, extra={"source": source})
            _sync(lab)
            for n in counts:
                selected = [arg for p in lab.peers[:n] for arg in ("--peer", p.name)]
                samples = [_no_change(lab, selected) for _ in range(runs)]
                loads += [s.pop("load") for s in samples]
                rows.append(_scale_row(n, parallel, samples))
        kept = daemon_rows(lab, images, counts, runs)
    return rows, kept, loads


def _no_change(lab: Lab, selected: list[str]) -> dict[str, float]:
    """One no-change cycle: its wall time, the source's CPU, RSS, threads and fds, and
    the CPU every process on the machine used meanwhile."""
    load = load_average()
    argv = ["/usr/bin/time", "-f", "%U %S %M", *lab.imgsync_argv("sync", *selected)]
    busy = _machine_cpu()
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = Peak(process.pid, child=True)
    _, err = process.communicate(timeout=900)
    peak.stop()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"sync failed: {err[-2000:]}")
    user, system, rss_kb = err.strip().splitlines()[-1].split()
    return {
        "wall": wall,
        "cpu": float(user) + float(system),
        "rss": int(rss_kb) / 1024,
        "threads": peak.threads,
        "fds": peak.fds,
        "all_cpu": _machine_cpu() - busy,
        "load": load,
    }


def _machine_cpu() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))  # user nice system irq softirq
    return ticks / 100


def _scale_row(n: int, parallel: int, samples: list[dict[str, float]]) -> Row:
    def col(key: str, digits: int = 2) -> str:
        return _s([s[key] for s in samples], digits)

    per_cycle = statistics.median(s["wall"] for s in samples)
    predicted = fleetmodel.flat(fleetcases.lab_no_change(n, parallel)).seconds
    return (
        str(n),
        str(parallel),
        col("wall"),
        f"{predicted:.2f}",
        f"{per_cycle / -(-n // parallel):.2f}",
        col("cpu"),
        col("rss", 0),
        col("threads", 0),
        col("fds", 0),
        col("all_cpu", 1),
    )


def _s(values: list[float], digits: int = 2) -> str:
    spread = Spread.of(values)
    return "-" if spread is None else spread.text(digits)


def render(tables: dict[str, list[Row]], loads: list[float], state: str, runs: int) -> str:
    """The page, from the tables ``site``, ``uplink``, ``scale`` (one-shot ``sync``) and
    ``kept`` (the daemon's kept sessions)."""
    site, uplink, scale, kept = (tables[k] for k in ("site", "uplink", "scale", "kept"))
    low, high = min(loads), max(loads)
    lines = [
        "# Fleet benchmarks",
        "",
        f"Written by `.venv/bin/python -m bench.fleet --runs {runs}` from commit {state}, "
        f"{datetime.date.today()}; each cell a median of {runs} runs (lowest to highest). "
        f"Load average (1 min) as runs started: {low:.1f} to {high:.1f}. The lab runs on one "
        "machine: every peer's sshd, session process and engine share its cores. The cases "
        "are described in bench/fleet.py; the model these figures check is docs/fleets.md.",
        "",
        "## A site of 4 hosts behind a 100 Mbit/s link: one 10 MiB change",
        "",
        "| measure | measured | model (bench/fleetmodel.py) | goal |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in site),
        "",
        "## A first sync of a 50 MiB image through one 100 Mbit/s uplink",
        "",
        "Every peer has its own dockerd; the source's sends to all of them share the uplink "
        "(paced at the lab's relays). The ratio is the cycle's time over the bytes that "
        "crossed the uplink (counted at the relays) at its rate.",
        "",
        "| peers | max_parallel_peers | seconds | over bytes / uplink rate | goal |",
        "|---:|---:|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in uplink),
        "",
        "## No-change cycles, 10 images, N peers (one shared dockerd)",
        "",
        "| peers | max_parallel_peers | wall s | model s | s per wave | source CPU s "
        "| source RSS MB | source threads | source fds | all processes' CPU s |",
        "|---:|---:|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in scale),
        "",
        "Each a one-shot `imgsync sync`: a new process that connects to every peer and starts "
        "imgsync there. `imgsync daemon` keeps its sessions open between cycles "
        "(`[schedule] keep_sessions`); its no-change cycles, as it times them "
        "(bench/fleetdaemon.py), goal for 50 peers ≤ 3 s:",
        "",
        "| peers | max_parallel_peers | daemon cycle s (kept sessions) |",
        "|---:|---:|---|",
        *("| " + " | ".join(row) + " |" for row in kept),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, 10 peers; no page")
    args = parser.parse_args(argv)
    start = tree.state()
    if not args.quick and not start.clean:
        print("uncommitted changes under imgsync/, bench/, lab/: commit first", file=sys.stderr)
        return 2
    runs = 1 if args.quick else max(3, args.runs)
    with tempfile.TemporaryDirectory(prefix="imgsync-fleet-") as root:
        site, site_loads = site_case(Path(root), runs)
        uplink, uplink_loads = uplink_case(Path(root), runs, 4 if args.quick else 10)
        scale, kept, scale_loads = scale_case(Path(root), runs, 10 if args.quick else 50)
    loads = site_loads + uplink_loads + scale_loads
    tables = {"site": site, "uplink": uplink, "scale": scale, "kept": kept}
    page = render(tables, loads, start.short, runs)
    print(page)
    if args.quick:
        return 0
    problem = tree.changed_during(start, tree.state())
    if problem is not None:
        print(f"not written: {problem}", file=sys.stderr)
        return 3
    PAGE.write_text(page)
    print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
