"""The benchmark page's prose: the bottlenecks ranked by the seconds they cost, how to read
the tables, the memory, contention and failures notes."""

from __future__ import annotations

from typing import Any

from .measure import EN_DASH, Spread
from .names import LOOPBACK, PLAN, RTT, Run
from .phases import OVERLAP_CONNECT
from .rows import Row
from .shaping import BURST, MAX_DELAY, QUEUE_LIMIT
from .tables import (
    memory_table,
    pct,
)
from .util import mb
from .words import UPLOAD_PHASES, WHY


def bottlenecks(table: list[Row], facts: dict[str, Any]) -> list[str]:
    """imgsync's phases (of each row's median run) summed over the loopback (a), (b) and (d)
    rows, biggest first."""
    totals: dict[str, float] = {}
    examples: dict[str, Run] = {}
    for item in table:
        run = item.typical
        if item.case not in ("a", "b", "d") or item.link != LOOPBACK.name or not run.phases:
            continue
        for name, seconds in run.phases.items():
            totals[name] = totals.get(name, 0.0) + seconds
            if name not in examples or seconds > examples[name].phases[name]:
                examples[name] = run
    everything = sum(totals.values()) or 1.0
    lines = []
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:3]
    for rank, (name, seconds) in enumerate(ranked, 1):
        run = examples[name]
        text = (
            f"{rank}. **{name}** — {seconds:.1f}s of the {everything:.1f}s that imgsync spent in "
            f"the loopback (a), (b), (d) median runs ({seconds / everything * 100:.0f}%). "
            f"Largest in ({run.case}) {run.tool}: {run.phases[name]:.1f}s of "
            f"{run.seconds:.1f}s. What it spans: {WHY.get(name, name)}."
        )
        if name in UPLOAD_PHASES and run.data.get("cpu_share_upload") is not None:
            text += (
                f" There imgsync's process used {pct(run.data['cpu_share_upload'])} of a core "
                f"for {mb(run.data.get('window_rate', 0)):.0f} MB/s."
            )
        version = Spread.of([float(v) for v in facts.get("cli_version_s") or []])
        if name in ("startup", "connect + ask", "apply") and version is not None:
            text += (
                f" The imgsync CLI alone takes {version.median:.2f}s to start "
                "(`imgsync --version`, median); every imgsync process on a peer pays it too."
            )
        load = next((r for r in table if r.tool.startswith("docker load -i")), None)
        if name == "apply" and load is not None:
            text += (
                f" For comparison, `docker load -i` of the big tarball on a peer, alone, took "
                f"{load.median:.1f}s (see the table)."
            )
        if name in ("export", OVERLAP_CONNECT) and run.data.get("cpu_share_export") is not None:
            text += (
                f" From `exporting` to `exported` imgsync's process used "
                f"{pct(run.data['cpu_share_export'])} of a core."
            )
        lines.append(text)
    return lines


# -- the machine ----------------------------------------------------------------------------


def how_to_read(facts: dict[str, Any], wanted: int) -> list[str]:
    sizes = facts.get("image_bytes", {})
    big = sizes.get("bench/keep:v1")
    text = sizes.get("bench/text:1")
    layer = facts.get("changed_layer_bytes")
    ratios = facts.get("text_compression", {})
    plan = "; ".join(
        f"*{name}*: {', '.join(f'({c})' for c in cases)}" for name, cases in PLAN.items()
    )
    shrink = ", ".join(f"{name} makes it {value:.1f}x smaller" for name, value in ratios.items())
    text_size = f"{mb(text):.0f} MB; {shrink}" if text else "not built in this run"
    return [
        f"- **Images.** The big image is busybox + 5 layers of random bytes "
        f"({mb(big or 0):.0f} MB as a `docker save` tarball; random, so no compression can "
        f"help); v2 adds one top layer of {mb(layer or 10e6):.1f} MB. Case (e) uses an image "
        f"of the same size whose layers are text-like and repeat themselves "
        f"({text_size}; `bench/images.py`). Case (c) uses 10 images of busybox + 1 MiB.",
        f"- **Runs.** Every row is the median of {wanted} runs (lowest{EN_DASH}highest in "
        "brackets). "
        "A case runs in rounds, the tools taking turns in each round (classic, imgsync, "
        "classic, …), so a busy minute falls on both; ratios are ratios of medians. A row "
        "with fewer runs says so in bold. Each run starts after `sync` (no dirty pages "
        "left from the run before) and records the 1-minute load average then.",
        "- **Tools.** *classic*: `docker -H SOURCE save IMG | ssh -c CIPHER -p RELAY root@PEER "
        "docker -H PEER_SOCKET load` with the lab's ssh options (strict known_hosts, the "
        "lab's key only, BatchMode). *scp*: OpenSSH `scp -c CIPHER` (SFTP protocol) of the "
        "same image saved to a file first (its time is the `docker save -o FILE` row). "
        "*imgsync*: `imgsync --config SOURCE_CONFIG -v sync --json` with the source's export "
        "dir and state DB emptied first (so its own `docker save` is in the time, as the "
        "classic pipeline's is) and imgsync's defaults otherwise — verification included "
        "— the lab writing the configs.",
        "- **Compression.** imgsync's `[ssh] compression` (zstd per 1 MiB chunk, where it "
        "pays) is set "
        f"{facts.get('compression_setting', 'as the lab writes it (imgsync default: none)')}; "
        "the notes of every imgsync row name the value it ran with. The classic pipeline "
        "stays uncompressed: it is what users run, `docker save | ssh | docker load` "
        "(OpenSSH's own compression off, its default), and so is scp. The bytes *on the "
        "wire* show what compression saved.",
        "- **Same cipher.** imgsync's cipher is read off the wire first (see *Machine*); "
        "every OpenSSH command (classic, scp, probes) is then run with `-c` that cipher. "
        "The *upload cipher* column is what each run really used: the relay keeps the first "
        "bytes of every connection, and the cipher is the first of the client's KEXINIT "
        "offers that the server also offers (`bench/sshwire.py`).",
        "- **Peers start empty** for each first sync: the image is removed on the peer, "
        "then every unused image is pruned through the API, and the inbox is emptied. In "
        "(b) the peer runs v1 (loaded by imgsync); after each classic and imgsync run it is "
        "put back on v1 (v2 removed, v1 re-tagged; after imgsync also the inbox as it was, "
        "and the source's export dir emptied, so each run exports v2 again).",
        "- **seconds**: wall time of the whole command (for classic, of the pipeline; for "
        "4 peers, of all 4 pipelines). **MB/s end to end**: the image's bytes (x peers) "
        "divided by that median. **on the wire**: bytes the relays carried, both directions, "
        "summed over the peers (SSH framing and handshakes included), median. **peak RSS**: "
        "of the process itself, the highest of the runs (imgsync on the source; for classic "
        "the docker CLI that saves and the ssh client; for scp, scp itself): its `VmHWM` "
        "read from /proc every 10 ms while it runs, or `ru_maxrss` from `os.wait4` when "
        "that is above the benchmark's own peak (Linux starts a child's `ru_maxrss` at "
        "the peak of the process it was forked from). The peer side is not in it.",
        "- **vs classic**: the median time (and bytes) divided by the classic row of the "
        "same case and link (in bold). In (d) that is 4 pipelines in parallel (one after "
        "another is always slower, and is not run); in (c) it is re-sending every image (a "
        "classic cron job cannot tell that nothing changed).",
        f"- **Links** (`bench/shaping.py`; the peers' relays, loopback only). *100 Mbit/s*: "
        f"each relay paces the *upload* (source -> peer) at 12.5 MB/s with a token bucket "
        f"of {BURST // 1024} KiB (`lab/pacing.py`, the lab relay's bucket, which there "
        f"allows 0.1 s of the rate: enough for a small thin upload to pass unpaced). "
        f"*{RTT.name}*: the same, and every chunk is held {RTT.delay * 1000:.0f} ms "
        f"in each direction (a delay line of at most {QUEUE_LIMIT // (1024 * 1024)} MiB per "
        f"direction; a new connection also waits one round trip, TCP's handshake; at most "
        f"{MAX_DELAY * 1000:.0f} ms can be set). Each peer has its own link (4 peers get "
        "4 x 100 Mbit/s). Not kernel `tc`: one machine, and nothing outside loopback is "
        f"touched. Which case runs where: {plan}. Left out, as they measure nothing a goal "
        f"needs: imgsync with the export already done (*warm*), classic one peer after "
        f"another, and scp / `docker save -o` on the paced links (there they measure the "
        f"link: {mb(big or 0) / 12.5:.0f} s for the big image at 12.5 MB/s).",
        "- **Upload throughput** is end to end: bytes / the whole command's wall time. The "
        "*probes* send the saved tarball into the peer with one end swapped at a time "
        "(OpenSSH `ssh` or imgsync's own SSH transport, `bench/probe_send.py`, into `cat` or "
        f"the peer's `imgsync apply --receive`), each a whole process timed like scp. The "
        f"1{EN_DASH}99% "
        "window (relay counters sampled every 10 ms) is only there to tell the transport "
        "from set-up; no goal uses it.",
        "- **Peer session ready**: `imgsync --config PEER_CONFIG apply --session` started on "
        "a lab peer (locally, stdin a pipe), timed until its first byte on stdout (its hello "
        "frame), then its stdin closed; `imgsync --version` likewise, to its exit. Medians of "
        f"{len(facts.get('cli_version_s') or []) or 5} runs.",
        "- **Where the time went** splits each imgsync row's median run at points seen from "
        "outside: its log (`cycle finished` and its seconds: start of the cycle; `exporting` "
        "/ `exported`; the first `sending`), the relay samples (end of the upload), the ctime "
        "of the marker in the peer's inbox (end of the last receive) and the peers' `load` "
        "and `tag` events (end of the apply). Each phase runs from the point before to its "
        "own, so none is negative; with several peers each point is the last one; a point "
        "the code no longer logs, or one that comes before the point already reached, merges "
        "its phase into the next. imgsync does some things at once: its peers connect and "
        "ask while it exports, a new bundle is streamed while `docker save` still writes it, "
        "and a peer loads it as it arrives; a phase in which two of these ran says "
        "*overlapped* (or *loaded on arrival*) in its name, and its time is counted once. "
        "CPU is the imgsync process's own (from /proc): export from `exporting` to "
        f"`exported`, upload in the 1{EN_DASH}99% window; 100% = one core.",
        "- **Peak memory** (`--memory-case`, on by default) syncs a 2 GB image to 4 peers "
        "once: peak RSS is a maximum, not a timing, and its time is in no goal.",
        "- Everything runs on one machine with all files in the page cache: disks are not "
        "what is measured. The CPUs are shared by the source, every peer (sshd, `imgsync "
        "apply`, dockerd), the relays and the benchmark: what real peers do in parallel on "
        "their own CPUs (verify, `docker load`) competes here, which weighs on (d) on "
        "loopback. The relays are Python threads; above a few hundred MB/s they are part of "
        "what is measured, the same for every tool.",
    ]


def memory_section(table: list[Row]) -> list[str]:
    lines = memory_table(table)
    if not lines:
        return []
    return ["## Peak memory (one run)", "", *lines, ""]


def contention_note(table: list[Row], host: dict[str, str]) -> list[str]:
    loads = Spread.of(
        [float(r.data["load1"]) for item in table for r in item.runs if "load1" in r.data]
    )
    cores = int(host.get("nproc", "0") or 0)
    if loads is None or not cores or loads.median <= cores:
        return []
    return [
        f"**Note: the machine was busy.** Other sessions' labs and test suites ran on it during "
        f"this run (load average {loads.low:.1f} to {loads.high:.1f} on {cores} cores; each "
        "row shows its own). Every wall-clock number includes waiting for a CPU; Python "
        "start-ups (imgsync on the source and on each peer) suffer most, the paced transfers "
        "least.",
        "",
    ]


def failures(facts: dict[str, Any]) -> list[str]:
    failed = facts.get("failures", [])
    if not failed:
        return []
    return ["## Failed cases", "", *[f"- {line}" for line in failed], ""]
