"""Turn the runs into markdown: the results table (medians, with the lowest and highest),
the upload throughput end to end, where imgsync's time goes, the goals (REACHED / NOT
REACHED by how much) and the biggest bottlenecks, ranked by the seconds they cost."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lab import Lab

from .cases import (
    LOADED_ON_ARRIVAL,
    LOOPBACK,
    OVERLAP_CONNECT,
    OVERLAP_UPLOAD,
    PLAN,
    RTT,
    Run,
    mb,
)
from .goals import Goal, goals, phase_text
from .measure import EN_DASH, Spread
from .rows import Row, baseline, rows
from .shaping import BURST, MAX_DELAY, QUEUE_LIMIT

CASE_TITLES = {
    "a": "(a) first sync, 1 peer, random layers",
    "b": "(b) update: v2 = v1 + one new top layer, 1 peer",
    "c": "(c) nothing changed, 10 small images x 4 peers",
    "d": "(d) first sync, 4 peers",
    "e": "(e) first sync, 1 peer, compressible layers",
    "mem": "(mem) 2 GB image, 4 peers",
    "tput": "transport probes",
}
WHY = {
    "startup": (
        "start-up of the imgsync CLI on the source and its cycle up to `exporting` (Python "
        "imports, config, state DB, the images selected and inspected; the peers' sessions "
        "start connecting meanwhile)"
    ),
    "export": (
        "the export: from imgsync's `exporting` to its `exported` log line (`docker save` "
        "read, hashed, checked, written) — nothing is sent during it"
    ),
    OVERLAP_CONNECT: (
        "from `exporting` to the first `sending` log line: `docker save` runs while the "
        "peers' sessions connect and ask their inventories, both at once"
    ),
    OVERLAP_UPLOAD: (
        "from the first `sending` to `exported` or to 99% of the bytes through the relays, "
        "whichever comes first: the bundle streamed to the peer while `docker save` still "
        "writes it (`streaming while it is exported`), the peer loading it as it arrives"
    ),
    "upload (after the export)": (
        "from `exported` to 99% of the bytes through the relays: the rest of an upload that "
        "started during the export"
    ),
    "export (after the upload)": (
        "from 99% of the bytes through the relays to `exported`: the end of an export whose "
        "data had already gone (its check, its marker)"
    ),
    "connect + ask": (
        "from the end of the export (or the cycle start) to imgsync's first `sending` log "
        "line: the SSH connection and whatever the peer is asked before the upload, as far "
        "as it was not done during the export"
    ),
    "upload": (
        "from the first `sending` log line (or `exported`, if later) to 99% of the bytes "
        "through the relays: the bundle through imgsync's SSH transport into the peer"
    ),
    "end of receive": (
        "from the last byte on the wire to the marker in the peer's inbox: the receiver "
        "finishing the bundle (fsync) and the marker"
    ),
    "apply": (
        "from the marker in the inbox (or the last byte) to the peers' last `load` or `tag` "
        "event: verification and `docker load` on the peer; a load that began as the bundle "
        "arrived ran partly during the upload, and this is what was left of it"
    ),
    LOADED_ON_ARRIVAL: (
        "the peer's `docker load` was over before the marker landed: it ran while the bundle "
        "arrived, overlapped with the upload; from the marker to the peers' last `tag` "
        "event is the verification and the tag"
    ),
    "report + state DB": "after the last load: the apply report read back, the state DB",
    "exit": "from the end of the cycle to the end of the process",
    "rest": "after the last step seen: the apply report, the state DB, exit",
}
UPLOAD_PHASES = ("upload", OVERLAP_UPLOAD, "upload (after the export)")


# -- helpers --------------------------------------------------------------------------------
def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.0f}%"


def rss_text(row: Row) -> str:
    peaks = row.rss
    if not peaks:
        return "n/a"
    return ", ".join(
        f"{name} {kib / 1024:.0f}" if kib else f"{name} ?" for name, kib in peaks.items()
    )


def loads_text(row: Row) -> str:
    spread = row.loads
    if spread is None:
        return "?"
    if spread.low == spread.high:
        return f"{spread.low:.1f}"
    return f"{spread.low:.1f}-{spread.high:.1f}"


def runs_text(row: Row, wanted: int) -> str:
    return str(row.count) if row.count >= wanted else f"**{row.count} of {wanted}**"


def rate_text(row: Row) -> str:
    return "-" if not row.rate else f"{mb(row.rate):.1f}"


def row(*cells: object) -> str:
    """One markdown table row; a ``|`` inside a cell (``save | ssh``) is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


# -- tables ---------------------------------------------------------------------------------
def results_table(table: list[Row], wanted: int) -> list[str]:
    lines = [
        f"| case | link | tool | runs | seconds: median (min{EN_DASH}max) | MB/s end to end "
        "| on the wire (MB) | time vs classic | bytes vs classic | peak RSS (MiB) "
        "| upload cipher (on the wire) | load avg at start | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for item in table:
        if item.case in ("tput", "mem"):
            continue
        base = baseline(table, item.case, item.link)
        wire = item.wire
        lines.append(
            row(
                item.case,
                item.link,
                f"**{item.tool}**" if item.baseline else item.tool,
                runs_text(item, wanted),
                item.seconds.text(),
                rate_text(item),
                "-" if wire is None else f"{mb(wire):.1f}",
                fmt_ratio(ratio(item.median, base.median if base else None)),
                fmt_ratio(ratio(wire, base.wire if base else None)),
                rss_text(item),
                ", ".join(item.ciphers) or "-",
                loads_text(item),
                "; ".join(item.typical.notes),
            )
        )
    return lines


def throughput_table(table: list[Row], wanted: int) -> list[str]:
    lines = [
        f"| link | tool | runs | MB | seconds: median (min{EN_DASH}max) | **MB/s end to end** "
        f"| vs scp | upload cipher | MB/s in the 1{EN_DASH}99% window (diagnosis only) "
        "| CPU of the sending process in that window |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    scp = next((r for r in table if r.case == "a" and r.tool.startswith("OpenSSH scp")), None)
    picked = [r for r in table if r.case == "tput" or r is scp]
    picked += [r for r in table if r.case == "a" and r.tool.startswith("imgsync")]
    for item in picked:
        window = item.data("window_rate")
        cpu = "n/a (its ssh child)" if item is scp else pct(item.data("cpu_share_upload"))
        tool = f"probe: {item.tool}" if item.case == "tput" else item.tool
        if item.case == "a" and item.tool.startswith("imgsync"):
            tool += " — the whole sync: export, upload, `docker load` on the peer"
        lines.append(
            row(
                item.link,
                tool,
                runs_text(item, wanted),
                f"{mb(item.bytes or 0):.0f}",
                item.seconds.text(),
                f"**{rate_text(item)}**",
                fmt_ratio(ratio(item.rate, scp.rate if scp else None)),
                ", ".join(item.ciphers) or "-",
                "-" if window is None else f"{mb(window):.0f}",
                cpu,
            )
        )
    return lines


def phases_table(table: list[Row]) -> list[str]:
    lines = [
        "| case | link | imgsync run | seconds (the median run) | where the time went "
        "| CPU of imgsync (export / upload) | peak RSS (MiB) |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for item in table:
        run = item.typical
        if not run.phases:
            continue
        cpu = f"{pct(run.data.get('cpu_share_export'))} / {pct(run.data.get('cpu_share_upload'))}"
        lines.append(
            row(
                item.case,
                item.link,
                item.tool,
                f"{run.seconds:.2f}",
                phase_text(item),
                cpu,
                f"{run.rss.get('imgsync', 0) / 1024:.0f}",
            )
        )
    return lines


def memory_table(table: list[Row]) -> list[str]:
    found = [item for item in table if item.case == "mem"]
    if not found:
        return []
    lines = [
        "| imgsync run | runs | seconds | on the wire (MB) | peak RSS of `imgsync sync` (MiB) "
        "| where the time went |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for item in found:
        wire = item.wire
        lines.append(
            row(
                item.tool,
                item.count,
                item.seconds.text(),
                "-" if wire is None else f"{mb(wire):.1f}",
                f"{item.rss.get('imgsync', 0) / 1024:.0f}",
                phase_text(item),
            )
        )
    return lines


def goals_table(found: list[Goal]) -> list[str]:
    lines = ["| goal | target | measured (medians) | verdict | reason observed |"]
    lines.append("|---|---|---|---|---|")
    for goal in found:
        lines.append(
            row(goal.name, goal.target, goal.measured, f"**{goal.verdict}**", goal.reason or "-")
        )
    return lines


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
def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        return f"? ({err})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine(lab: Lab, docker_cli: list[str]) -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    engine = lab.source.client().version()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu.group(1).strip() if cpu else "?",
        "memory": f"{total_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "docker engine": f"{engine.get('Version')} (API {engine.get('ApiVersion')})",
        "docker CLI (classic pipeline)": f"{docker_cli[0]}: "
        + _first_line([*docker_cli, "--version"]),
        "OpenSSH": _first_line(["ssh", "-V"]),
        "python": platform.python_version(),
        "paramiko": metadata.version("paramiko"),
        "cryptography": metadata.version("cryptography"),
        "imgsync": _first_line([*lab.imgsync_cmd, "--version"]),
    }


def machine_rows(table: list[Row], facts: dict[str, Any]) -> list[str]:
    """How busy the machine was, the ciphers, the start-up times."""
    runs = [run for item in table for run in item.runs]
    loads = Spread.of([float(r.data["load1"]) for r in runs if "load1" in r.data])
    others = [int(r.data["foreign_dockerd"]) for r in runs if "foreign_dockerd" in r.data]
    lines = []
    if loads is not None:
        lines.append(
            f"| load average (1 min, /proc/loadavg) as each run started | {loads.low:.1f} to "
            f"{loads.high:.1f} (median {loads.median:.1f}) |"
        )
    if others:
        lines.append(
            f"| other dockerd processes on the machine (not this lab's) | {min(others)} to "
            f"{max(others)} |"
        )
    if facts.get("imgsync_cipher"):
        lines.append(f"| upload cipher imgsync negotiates (paramiko) | {facts['imgsync_cipher']} |")
    if facts.get("openssh_options"):
        lines.append(
            f"| OpenSSH (classic, scp, probes) run with | `{facts['openssh_options']}`: "
            f"{facts.get('openssh_cipher', '?')} |"
        )
    for key, label in (
        ("cli_version_s", "`imgsync --version`"),
        ("session_ready_s", "peer session ready (`apply --session`, first byte)"),
    ):
        values = facts.get(key)
        if isinstance(values, list):
            spread = Spread.of([float(v) for v in values])
            if spread is not None:
                lines.append(f"| {label}, {spread.count} runs | {spread.text(2, ' s')} |")
        elif values:
            lines.append(f"| {label} | {values} |")
    if facts.get("compression_setting"):
        lines.append(f"| imgsync `[ssh] compression` | {facts['compression_setting']} |")
    return lines


# -- the document ---------------------------------------------------------------------------
def document(data: dict[str, Any]) -> str:
    """The page, from what a run saved (the raw results file's content)."""
    runs = [Run.from_json(run) for run in data["runs"]]
    table = rows(runs)
    facts: dict[str, Any] = data["facts"]
    wanted = int(data.get("runs_per_row", 3))
    found = goals(table, facts)
    out = [
        "# Benchmarks",
        "",
        "imgsync against the classic `docker save | ssh docker load` pipeline and OpenSSH "
        "`scp`, on the test lab (a source dockerd and 4 peers, each its own dockerd + sshd "
        "on 127.0.0.x behind a byte-counting relay). Written by the benchmark itself from "
        f"one run of it: every row is the median of {wanted} runs, with the lowest and "
        "highest in brackets.",
        "",
        "```sh",
        ".venv/bin/python -m bench                  # the full run: this page (~30 min on 2 cores)",
        ".venv/bin/python -m bench --quick          # 100 MB, loopback only, 2 runs: a smoke test",
        ".venv/bin/python -m bench --render RAW     # this page again from a raw file",
        "```",
        "",
        *this_run(data),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in data["host"].items()],
        *machine_rows(table, facts),
        "",
        "## How to read this",
        "",
        *how_to_read(facts, wanted),
        "",
        *failures(facts),
        *contention_note(table, data["host"]),
        "## Goals",
        "",
        *goals_table(found),
        "",
        "## Results",
        "",
        *results_table(table, wanted),
        "",
        "## Upload throughput",
        "",
        "End to end: the bytes of the image divided by the median wall time of the whole "
        "command, start-up and connection included. The goal compares imgsync's transport "
        "(the probe) with scp, both writing the tarball into the peer.",
        "",
        *throughput_table(table, wanted),
        "",
        "## Where imgsync's time went",
        "",
        *phases_table(table),
        "",
        *memory_section(table),
        "## The biggest bottlenecks",
        "",
        "imgsync's phases summed over the loopback (a), (b) and (d) rows (each row's median "
        "run), biggest first. (On the paced links the upload is the link itself; what is left "
        "over there is the same start-ups, export and apply as on loopback, plus round trips.)",
        "",
        *bottlenecks(table, facts),
        "",
    ]
    return "\n".join(out)


def this_run(data: dict[str, Any]) -> list[str]:
    tree = data.get("tree", {})
    start, end = tree.get("start", {}), tree.get("end", {})
    commit = start.get("commit", "?")
    changed = [str(line).strip() for line in start.get("changed", [])]
    label = f"{commit[:7]}-dirty" if changed else commit[:7]
    where = "imgsync/, bench/, lab/"
    state = (
        f"**dirty**: {len(changed)} uncommitted file(s) under {where} ({'; '.join(changed[:6])}"
        f"{'; …' if len(changed) > 6 else ''})"
        if changed
        else f"no uncommitted change under {where}"
    )
    lines = [
        f"This run: `{data['command']}` — {data['seconds'] / 60:.1f} min in all "
        f"({timings_text(data.get('timings', {}))}).",
        "",
        f"Code measured: **{label}** (`{commit}`), {state}.",
    ]
    if tree.get("changed_during_run"):
        lines.append(f"**The tree changed during the run**: {tree['changed_during_run']}.")
    if end and end.get("commit") and end.get("commit") != commit:
        lines.append(f"At the end HEAD was `{end['commit']}`.")
    return lines


def timings_text(timings: dict[str, float]) -> str:
    def took(seconds: float) -> str:
        return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"

    return ", ".join(f"{name} {took(seconds)}" for name, seconds in timings.items())


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
        f"of {BURST // 1024} KiB (the lab relay's own pacing lets a connection that sat idle "
        f"send a burst of idle-time x rate, which would favour a tool that asks before it "
        f"sends). *{RTT.name}*: the same, and every chunk is held {RTT.delay * 1000:.0f} ms "
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


def console_summary(data: dict[str, Any]) -> str:
    table = rows([Run.from_json(run) for run in data["runs"]])
    facts: dict[str, Any] = data["facts"]
    wanted = int(data.get("runs_per_row", 3))
    return "\n".join(
        [
            *failures(facts),
            *results_table(table, wanted),
            "",
            *throughput_table(table, wanted),
            "",
            *phases_table(table),
            "",
            *memory_table(table),
            "",
            *goals_table(goals(table, facts)),
        ]
    )
