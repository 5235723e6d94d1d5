"""Turn the runs into markdown: the results table, the upload throughput, where imgsync's
time goes, the goals (REACHED / NOT REACHED, with the measured ratio and the reason seen)
and the biggest bottlenecks, ranked by the seconds they cost."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lab import Lab

from .cases import LOOPBACK, SHAPED, Run, mb

CASE_TITLES = {
    "a": "(a) first sync, 1 peer",
    "b": "(b) v2 = v1 + one new top layer, 1 peer",
    "c": "(c) nothing changed, 10 small images x 4 peers",
    "d": "(d) first sync, 4 peers",
    "mem": "(mem) 2 GB image, 4 peers",
    "tput": "transport probes",
}
CASE_ORDER = list(CASE_TITLES)
LINK_ORDER = [LOOPBACK, SHAPED]
WHY = {
    "startup": "start-up of the imgsync CLI on the source (Python imports, config, state DB)",
    "export": (
        "the export: `docker save` streamed through docker-py into Python, hashed, parsed "
        "layer by layer, written and fsynced — all before the first byte is sent (the classic "
        "pipeline overlaps save, transfer and load)"
    ),
    "connect + ask": (
        "the SSH handshake, then `imgsync apply --inventory` and `apply --has-layer` on the "
        "peer, each a fresh Python interpreter there"
    ),
    "upload": (
        "the upload: the bundle through paramiko into `imgsync apply --receive` on the peer "
        "(a Python process copying stdin to the inbox)"
    ),
    "end of receive": (
        "from the last byte on the wire to the marker in the inbox: the receiver's fsync of "
        "the bundle, then the marker sent by one more `imgsync apply --receive` (one more "
        "Python start on the peer)"
    ),
    "apply": (
        "`imgsync apply` on the peer, after everything was received: a Python start, the "
        "bundle read again to verify it (sha256, layer digests), then `docker load` — "
        "nothing of it overlaps with the upload"
    ),
    "report + state DB": "after the last load: the apply report read back, the state DB",
    "exit": "from the end of the cycle to the end of the process",
    "rest": "after the last step seen: the apply report, the state DB, exit",
}


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    verdict: str  # REACHED, NOT REACHED, NOT MEASURED
    reason: str = ""


# -- helpers --------------------------------------------------------------------------------
def find(runs: list[Run], case: str, link: str, tool: str) -> Run | None:
    """The run of ``case`` on ``link`` whose tool starts with ``tool``."""
    for run in runs:
        if run.case == case and run.link == link and run.tool.startswith(tool):
            return run
    return None


def baseline(runs: list[Run], case: str, link: str) -> Run | None:
    return next((r for r in runs if r.case == case and r.link == link and r.baseline), None)


def ordered(runs: list[Run]) -> list[Run]:
    def key(item: tuple[int, Run]) -> tuple[int, int, int]:
        index, run = item
        case = CASE_ORDER.index(run.case) if run.case in CASE_ORDER else 99
        link = LINK_ORDER.index(run.link) if run.link in LINK_ORDER else 9
        return case, link, index

    return [run for _, run in sorted(enumerate(runs), key=key)]


def rss_text(run: Run) -> str:
    if not run.rss:
        return "n/a"
    return ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in run.rss.items())


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.0f}%"


def verdict(ok: bool) -> str:
    return "REACHED" if ok else "NOT REACHED"


def phase_text(run: Run) -> str:
    return ", ".join(f"{name} {sec:.1f}s" for name, sec in run.phases.items() if sec >= 0.05)


# -- tables ---------------------------------------------------------------------------------
def row(*cells: object) -> str:
    """One markdown table row; a ``|`` inside a cell (``save | ssh``) is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def results_table(runs: list[Run]) -> list[str]:
    lines = [
        "| case | link | tool | seconds | on the wire (MB) | peak RSS (MiB) "
        "| time vs classic | bytes vs classic | notes |",
        "|---|---|---|---:|---:|---|---:|---:|---|",
    ]
    for run in ordered(runs):
        if run.case == "tput":
            continue
        base = baseline(runs, run.case, run.link)
        time_ratio = ratio(run.seconds, base.seconds if base else None)
        byte_ratio = ratio(run.wire, base.wire if base else None) if run.wire is not None else None
        wire = "-" if run.wire is None else f"{mb(run.wire):.1f}"
        tool = f"**{run.tool}**" if run.baseline else run.tool
        lines.append(
            row(
                run.case,
                run.link,
                tool,
                f"{run.seconds:.2f}",
                wire,
                rss_text(run),
                fmt_ratio(time_ratio),
                fmt_ratio(byte_ratio),
                "; ".join(run.notes),
            )
        )
    return lines


def throughput_rows(runs: list[Run]) -> list[str]:
    lines = [
        "| link | tool | MB/s during the transfer | MB/s over the whole command "
        "| CPU of the sending process during the transfer | vs scp |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for link in LINK_ORDER:
        scp = find(runs, "a", link, "OpenSSH scp")
        scp_rate = scp.data.get("window_rate") if scp else None
        for tool in ("OpenSSH scp", "imgsync warm", "imgsync cold"):
            run = find(runs, "a", link, tool)
            if run is None or "window_rate" not in run.data:
                continue
            size = run.data.get("bytes") or run.data.get("bytes_sent") or 0
            whole = f"{mb(size / run.seconds):.0f}" if size else "-"
            rate = run.data["window_rate"]
            cpu = (
                "n/a (its ssh child)"
                if tool == "OpenSSH scp"
                else pct(run.data.get("cpu_share_upload"))
            )
            lines.append(
                row(link, run.tool, f"{mb(rate):.0f}", whole, cpu, fmt_ratio(ratio(rate, scp_rate)))
            )
        for run in runs:
            if run.case != "tput" or run.link != link or "window_rate" not in run.data:
                continue
            rate = run.data["window_rate"]
            lines.append(
                row(
                    link,
                    f"probe: {run.tool}",
                    f"{mb(rate):.0f}",
                    f"{mb(run.data['bytes'] / run.seconds):.0f}",
                    pct(run.data.get("cpu_share_upload")),
                    fmt_ratio(ratio(rate, scp_rate)),
                )
            )
    return lines


def phases_table(runs: list[Run]) -> list[str]:
    lines = [
        "| case | link | imgsync run | seconds | where the time went | CPU of imgsync "
        "(export / upload) | peak RSS (MiB) |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for run in ordered(runs):
        if not run.phases:
            continue
        cpu = f"{pct(run.data.get('cpu_share_export'))} / {pct(run.data.get('cpu_share_upload'))}"
        lines.append(
            row(
                run.case,
                run.link,
                run.tool,
                f"{run.seconds:.2f}",
                phase_text(run),
                cpu,
                f"{run.rss.get('imgsync', 0) / 1024:.0f}",
            )
        )
    return lines


# -- goals ----------------------------------------------------------------------------------
def goals(runs: list[Run], facts: dict[str, Any]) -> list[Goal]:
    found: list[Goal] = []

    # upload throughput, 500 MB, loopback
    scp = find(runs, "a", LOOPBACK, "OpenSSH scp")
    warm = find(runs, "a", LOOPBACK, "imgsync warm")
    goal = Goal(
        "upload throughput (big tarball, loopback)",
        ">= 1.0x scp (at least 0.9x)",
        "-",
        "NOT MEASURED",
    )
    if scp and warm and "window_rate" in scp.data and "window_rate" in warm.data:
        value = warm.data["window_rate"] / scp.data["window_rate"]
        goal.measured = (
            f"{value:.2f}x ({mb(warm.data['window_rate']):.0f} vs "
            f"{mb(scp.data['window_rate']):.0f} MB/s)"
        )
        goal.verdict = (
            "REACHED" if value >= 1.0 else "REACHED (minimum)" if value >= 0.9 else "NOT REACHED"
        )
        if value < 1.0:
            goal.reason = throughput_reason(runs, warm, scp)
    found.append(goal)

    # (a) first sync, 1 peer, loopback
    classic = baseline(runs, "a", LOOPBACK)
    cold = find(runs, "a", LOOPBACK, "imgsync cold")
    goal = Goal("(a) first sync, 1 peer, loopback", "<= 1.0x classic", "-", "NOT MEASURED")
    if classic and cold:
        value = cold.seconds / classic.seconds
        goal.measured = f"{value:.2f}x cold ({cold.seconds:.1f}s vs {classic.seconds:.1f}s)"
        if warm:
            goal.measured += f"; warm {warm.seconds / classic.seconds:.2f}x"
        goal.verdict = verdict(value <= 1.0)
        if value > 1.0:
            goal.reason = (
                f"the classic pipeline overlaps save, transfer and load in one stream "
                f"({classic.seconds:.1f}s); imgsync runs them one after the other: "
                f"{phase_text(cold)}"
            )
    found.append(goal)

    # (b) bytes
    layer = facts.get("changed_layer_bytes")
    for link in LINK_ORDER:
        thin = find(runs, "b", link, "imgsync")
        if thin is None or not layer or thin.wire is None:
            continue
        value = thin.wire / layer
        goal = Goal(
            f"(b) v2 bytes on the wire, {link}",
            "<= 1.1x the changed layer",
            f"{value:.3f}x ({mb(thin.wire):.2f} MB for a {mb(layer):.2f} MB layer)",
            verdict(value <= 1.1),
        )
        if value > 1.1:
            goal.reason = f"transfer {thin.data.get('transfers')}, {thin.data.get('bytes_sent')} B"
        found.append(goal)
        break
    if not layer:
        found.append(
            Goal("(b) v2 bytes on the wire", "<= 1.1x the changed layer", "-", "NOT MEASURED")
        )

    # (b) time on 100 Mbit/s
    classic = baseline(runs, "b", SHAPED)
    thin = find(runs, "b", SHAPED, "imgsync")
    goal = Goal("(b) v2 time, 100 Mbit/s", "<= 0.15x classic", "-", "NOT MEASURED")
    if classic and thin:
        value = thin.seconds / classic.seconds
        goal.measured = f"{value:.3f}x ({thin.seconds:.1f}s vs {classic.seconds:.1f}s)"
        goal.verdict = verdict(value <= 0.15)
        if value > 0.15:
            goal.reason = phase_text(thin)
    found.append(goal)

    # (b) time on loopback vs docker save
    save = find(runs, "b", LOOPBACK, "docker save")
    thin = find(runs, "b", LOOPBACK, "imgsync")
    goal = Goal("(b) v2 time, loopback", "<= the source's docker save + 1.5 s", "-", "NOT MEASURED")
    if save and thin:
        budget = save.seconds + 1.5
        goal.measured = (
            f"{thin.seconds:.2f}s vs {budget:.2f}s (docker save -o {save.seconds:.2f}s + 1.5); "
            f"{thin.seconds - save.seconds:+.2f}s over the save"
        )
        goal.verdict = verdict(thin.seconds <= budget)
        if thin.seconds > budget:
            goal.reason = (
                f"{phase_text(thin)}; imgsync's export ({thin.phases.get('export', 0):.1f}s) "
                f"vs the CLI's docker save -o ({save.seconds:.1f}s)"
            )
    found.append(goal)

    # (c) no change
    for link in LINK_ORDER:
        run = find(runs, "c", link, "imgsync")
        if run is None:
            continue
        per_peer = max(run.data.get("per_peer_wire", {0: 0}).values())
        ok = (
            run.seconds <= 2.0
            and run.data.get("saves") == 0
            and run.data.get("loads") == 0
            and per_peer < 100_000
        )
        goal = Goal(
            f"(c) no change, 10 images x 4 peers, {link}",
            "<= 2 s, no docker save, no docker load, < 100 kB per peer",
            f"{run.seconds:.2f}s, {run.data.get('saves')} save, "
            f"{run.data.get('loads')} load, max {per_peer / 1e3:.1f} kB per peer",
            verdict(ok),
        )
        if not ok:
            goal.reason = phase_text(run) or "see the table"
            if facts.get("cli_startup_s"):
                goal.reason += (
                    f"; the imgsync CLI takes {facts['cli_startup_s']:.2f}s just to start "
                    "(imports), once on the source and once more on every peer for the "
                    "inventory (in parallel, on the same 2 cores here)"
                )
        found.append(goal)

    # (d) 4 peers vs 1 peer
    for link in LINK_ORDER:
        for kind in ("cold", "warm"):
            four = find(runs, "d", link, f"imgsync {kind}")
            one = find(runs, "a", link, f"imgsync {kind}")
            if four is None or one is None:
                continue
            value = four.seconds / one.seconds
            saves = four.data.get("saves")
            want_saves = 1 if kind == "cold" else 0
            ok = value <= 2.0 and saves == want_saves
            goal = Goal(
                f"(d) 4 peers vs 1 peer, {link}, {kind}",
                f"<= 2.0x the 1-peer time, {want_saves} docker save",
                f"{value:.2f}x ({four.seconds:.1f}s vs {one.seconds:.1f}s), {saves} docker save",
                verdict(ok),
            )
            if not ok:
                apply_ratio = ratio(four.phases.get("apply"), one.phases.get("apply"))
                goal.reason = (
                    f"the peers' own work grows with their number on this one machine: the "
                    f"apply phase (verify + docker load on every peer) took "
                    f"{four.phases.get('apply', 0):.1f}s for 4 peers vs "
                    f"{one.phases.get('apply', 0):.1f}s for 1 ({fmt_ratio(apply_ratio)}): the 4 "
                    f"peers share the same cores, where real peers would each have their "
                    f"own. 4 peers: {phase_text(four)}; 1 peer: {phase_text(one)}; imgsync's "
                    f"process used {pct(four.data.get('cpu_share_upload'))} of a core while "
                    f"uploading to 4 peers ({mb(four.data.get('window_rate', 0)):.0f} MB/s in "
                    f"all) vs {pct(one.data.get('cpu_share_upload'))} for one "
                    f"({mb(one.data.get('window_rate', 0)):.0f} MB/s)"
                )
            found.append(goal)

    # memory
    mem = next((r for r in runs if r.case == "mem"), None)
    biggest = max((r.rss.get("imgsync", 0) for r in runs), default=0)
    if mem is not None:
        peak = mem.rss["imgsync"] * 1024
        goal = Goal(
            "peak RSS, 2 GB image to 4 peers",
            "<= 150 MB",
            f"{peak / 1e6:.0f} MB",
            verdict(peak <= 150e6),
        )
    else:
        why = facts.get("memory_skipped", "not run (python -m bench --memory-case)")
        goal = Goal(
            "peak RSS, 2 GB image to 4 peers",
            "<= 150 MB",
            f"{why}; the largest imgsync peak in this run: {biggest * 1024 / 1e6:.0f} MB",
            "NOT MEASURED",
        )
    found.append(goal)
    return found


def throughput_reason(runs: list[Run], warm: Run, scp: Run) -> str:
    """Which end limits the upload, from the transport probes (same tarball, loopback)."""
    rate = {r.tool: r.data.get("window_rate") for r in runs if r.case == "tput"}
    del scp
    ssh_null = rate.get("OpenSSH ssh -> cat > /dev/null")
    ssh_recv = rate.get("OpenSSH ssh -> imgsync apply --receive")
    own_null = rate.get("imgsync SshSession -> cat > /dev/null")
    own_recv = rate.get("imgsync SshSession -> imgsync apply --receive")
    text = (
        f"imgsync's process used {pct(warm.data.get('cpu_share_upload'))} of a core during "
        "the upload: its sender is not CPU-bound"
    )
    if ssh_null and ssh_recv and own_null:
        text += (
            f". The probes split the gap: OpenSSH into `cat > /dev/null` "
            f"{mb(ssh_null):.0f} MB/s; OpenSSH into `imgsync apply --receive` "
            f"{mb(ssh_recv):.0f} MB/s (the receiving end alone); imgsync's SSH transport "
            f"(paramiko) into `cat > /dev/null` {mb(own_null):.0f} MB/s (the sending end "
            "alone)"
        )
        if own_recv:
            text += f"; both imgsync ends {mb(own_recv):.0f} MB/s"
        slower = "receiving" if ssh_recv < own_null else "sending"
        text += f". The {slower} end is the tighter limit"
    return text


def goals_table(found: list[Goal]) -> list[str]:
    lines = ["| goal | target | measured | verdict | reason observed |", "|---|---|---|---|---|"]
    for goal in found:
        lines.append(
            row(goal.name, goal.target, goal.measured, f"**{goal.verdict}**", goal.reason or "-")
        )
    return lines


def bottlenecks(runs: list[Run], facts: dict[str, Any]) -> list[str]:
    """imgsync's phases summed over the loopback first-sync and v2 runs, biggest first (on
    the 100 Mbit/s link the upload is the link itself: as long as scp's, see the table)."""
    totals: dict[str, float] = {}
    examples: dict[str, Run] = {}
    for run in runs:
        if run.case not in ("a", "b", "d") or run.link != LOOPBACK or not run.phases:
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
        lines.append(
            f"{rank}. **{name}** — {seconds:.1f}s of the {everything:.1f}s that imgsync spent in "
            f"the loopback (a), (b), (d) runs ({seconds / everything * 100:.0f}%). Largest in "
            f"({run.case}) {run.link}, {run.tool}: {run.phases[name]:.1f}s of {run.seconds:.1f}s. "
            f"Why: {WHY.get(name, name)}."
        )
        if name == "upload" and run.data.get("cpu_share_upload") is not None:
            lines[-1] += (
                f" There imgsync's process used {pct(run.data['cpu_share_upload'])} of a core "
                f"for {mb(run.data.get('window_rate', 0)):.0f} MB/s."
            )
        if name in ("connect + ask", "end of receive", "apply", "all") and facts.get(
            "cli_startup_s"
        ):
            lines[-1] += (
                f" The imgsync CLI alone takes {facts['cli_startup_s']:.2f}s to start "
                "(`imgsync --version`, best of 3, imports only); a first sync starts it 5 times "
                "on each peer (inventory, layers, bundle, marker, apply), a no-change cycle "
                "once per peer plus once on the source."
            )
        if name == "apply" and facts.get("docker_load_s"):
            lines[-1] += (
                f" For comparison, `docker load -i` of the big tarball on a peer, alone, took "
                f"{facts['docker_load_s']:.1f}s (see the table)."
            )
        if name == "export" and run.data.get("cpu_share_export") is not None:
            lines[-1] += (
                f" There imgsync's process used {pct(run.data['cpu_share_export'])} of a core."
            )
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
        "imgsync": f"{metadata.version('imgsync')}, {tree_state()}",
    }


def tree_state() -> str:
    """The commit measured and how many files under imgsync/ differ from it (read-only git:
    ``--no-optional-locks`` so the index is not refreshed)."""
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "--no-optional-locks", "-C", str(repo)]
    commit = _first_line([*git, "rev-parse", "--short", "HEAD"])
    try:
        done = subprocess.run(
            [*git, "status", "--porcelain", "--", "imgsync"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return f"commit {commit}"
    changed = len(done.stdout.splitlines())
    return f"commit {commit}" + (f" + {changed} uncommitted file(s) in imgsync/" if changed else "")


# -- the document ---------------------------------------------------------------------------
def document(
    runs: list[Run],
    facts: dict[str, Any],
    host: dict[str, str],
    command: str,
    total_seconds: float,
) -> str:
    found = goals(runs, facts)
    sizes = facts.get("tarball_bytes", {})
    big = sizes.get("v1.tar")
    layer = facts.get("changed_layer_bytes")
    out = [
        "# Benchmarks",
        "",
        "imgsync against the classic `docker save | ssh docker load` pipeline and OpenSSH "
        "`scp`, on the test lab (a source dockerd and 4 peers, each its own dockerd + sshd "
        "on 127.0.0.x behind a byte-counting relay). Written by the benchmark itself; "
        "every number below is from one run.",
        "",
        "```sh",
        "sudo .venv/bin/python -m bench                 # the full run (~15-20 min on 2 cores)",
        "sudo .venv/bin/python -m bench --quick         # 100 MB, loopback only: a smoke test",
        "sudo .venv/bin/python -m bench --memory-case   # + a 2 GB image to 4 peers (peak RSS)",
        "```",
        "",
        f"This run: `{command}` — {total_seconds / 60:.1f} min including building the images.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in host.items()],
        *contention_rows(runs, facts),
        "",
        "## How to read this",
        "",
        images_line(big, layer),
    ]
    out += [
        "- **Tools.** *classic*: `docker -H SOURCE save IMG | ssh -p RELAY root@PEER docker -H "
        "PEER_SOCKET load` with the lab's ssh options (strict known_hosts, the lab's key "
        "only, BatchMode). *scp*: OpenSSH `scp` (SFTP protocol) of the same image saved to a "
        "file first. *imgsync*: `imgsync --config SOURCE_CONFIG -v sync --json` (the lab "
        "writes the configs; the peers run `imgsync apply` over SSH).",
        "- **Cold / warm.** *cold*: the source's export dir and state DB are emptied first, so "
        "the number includes imgsync's `docker save` (export). *warm*: the bundle was "
        "exported by the run before, so only ask, upload and apply are timed. (b) always "
        "includes the export of v2 (a new version is exported once, whatever the peers). The "
        "classic pipeline always includes its `docker save`; scp never does (the tarball "
        "was saved before: its time is the `docker save -o FILE` row).",
        "- **Peers start empty** for each first sync: the image is removed on the peer "
        "(`remove_image`), then every unused image is pruned through the API, and the inbox "
        "is emptied. In (b) the peer runs v1; after the classic run it is put back on v1 "
        "(v2 removed, v1 re-tagged).",
        "- **seconds**: wall time of the whole command (for classic, of the pipeline). **on "
        "the wire**: bytes the relays carried, both directions, summed over the peers "
        "involved (SSH framing and handshakes included). **peak RSS**: `ru_maxrss` of the "
        "process itself from `os.wait4` (imgsync on the source; for classic the docker "
        "CLI that saves and the ssh client; for scp, scp with the ssh it runs). The peer side "
        "(sshd, `imgsync apply`, `docker load`) is not in it.",
        "- **vs classic**: time and bytes divided by the classic run of the same case and "
        "link (in bold). In (d) that is the faster of *one after another* and *in parallel*; "
        "in (c) it is re-sending every image (a classic cron job cannot tell that nothing "
        "changed).",
        "- **100 Mbit/s** is not kernel `tc`: each peer's relay paces the *upload* direction "
        "(source -> peer) at 12.5 MB/s with a token bucket of 256 KiB (`bench/shaping.py`; "
        "the lab relay's own pacing lets a connection that sat idle send a burst of "
        "idle-time x rate, which would favour imgsync's ask-then-send). No latency is added, "
        "and each peer has its own 100 Mbit/s (4 peers in parallel get 4 x 100 Mbit/s). The "
        "classic and scp runs go through the same relays.",
        "- **MB/s during the transfer**: bytes the relay carried up between 1% and 99% of the "
        "upload, divided by that time (relay counters sampled every 10 ms): the transport "
        "alone, without connection set-up, export or load. Used for the throughput goal; "
        "the imgsync figure is from case (a) *warm*, whose upload is the big bundle itself, "
        "sent by `imgsync sync` as it always is. The *probes* send the same tarball with one "
        "end swapped, to tell which end limits the upload.",
        "- **Where the time went** splits each imgsync run at points seen from outside: its "
        "log (`cycle finished` and its seconds: start of the cycle; `exporting` / `exported`; "
        "`sending`), the relay samples (end of the upload), the ctime of the marker in the "
        "peer's inbox (end of the last receive) and the peers' `load` events (end of the "
        "load). With several peers each point is the last one. CPU is the imgsync process's "
        "own (from /proc) in that phase; 100% = one core.",
        "- Everything runs on one machine with all files in the page cache: disks are not "
        "what is measured. The CPUs are shared by the source, every peer (sshd, `imgsync "
        "apply`, dockerd), the relays and the benchmark: what real peers do in parallel on "
        "their own CPUs (verify, `docker load`) competes here, which weighs on (d) on "
        "loopback. The relays are Python threads; above a few hundred MB/s they are part of "
        "what is measured, the same for every tool.",
        "",
        *failures(facts),
        *contention_note(runs, host),
        "## Results",
        "",
        *results_table(runs),
        "",
        "## Upload throughput",
        "",
        *throughput_rows(runs),
        "",
        "## Where imgsync's time went",
        "",
        *phases_table(runs),
        "",
        "## Goals",
        "",
        *goals_table(found),
        "",
        "## The biggest bottlenecks",
        "",
        "imgsync's phases summed over the loopback (a), (b) and (d) runs, biggest first. "
        "(On the 100 Mbit/s link the upload is the link itself and takes as long as scp's; "
        "what is left over there is the same start-ups, export and apply as on loopback.)",
        "",
        *bottlenecks(runs, facts),
        "",
    ]
    return "\n".join(out)


def contention_note(runs: list[Run], host: dict[str, str]) -> list[str]:
    loads = sorted(float(r.data["load1"]) for r in runs if "load1" in r.data)
    cores = int(host.get("nproc", "0") or 0)
    if not loads or not cores or loads[len(loads) // 2] <= cores:
        return []
    return [
        f"**Note: the machine was busy.** Other sessions' labs and test suites ran on it during "
        f"this run (load average {loads[0]:.1f} to {loads[-1]:.1f} on {cores} cores, see "
        "above). Every wall-clock number includes waiting for a CPU; Python start-ups "
        "(imgsync on the source and on each peer) suffer most, the 100 Mbit/s transfers least. "
        "Ratios compare runs made seconds or minutes apart, under similar but not equal load.",
        "",
    ]


def failures(facts: dict[str, Any]) -> list[str]:
    failed = facts.get("failures", [])
    if not failed:
        return []
    return ["## Failed cases", "", *[f"- {line}" for line in failed], ""]


def contention_rows(runs: list[Run], facts: dict[str, Any]) -> list[str]:
    """How busy the machine was: other sessions' labs and tests may share the CPUs."""
    loads = [float(r.data["load1"]) for r in runs if "load1" in r.data]
    others = [int(r.data["foreign_dockerd"]) for r in runs if "foreign_dockerd" in r.data]
    rows = []
    if loads:
        rows.append(
            f"| load average (1 min) as each run started | {min(loads):.1f} to {max(loads):.1f} "
            f"(median {sorted(loads)[len(loads) // 2]:.1f}) |"
        )
    if others:
        rows.append(
            f"| other dockerd processes on the machine (not this lab's) | {min(others)} to "
            f"{max(others)} |"
        )
    if facts.get("openssh_cipher"):
        rows.append(f"| cipher OpenSSH negotiates (classic, scp) | {facts['openssh_cipher']} |")
    if facts.get("imgsync_ciphers"):
        rows.append(
            f"| imgsync's cipher preference (paramiko) | {', '.join(facts['imgsync_ciphers'])} |"
        )
    if "cli_startup_s" in facts:
        rows.append(
            f"| `imgsync --version` (CLI start-up, best of 3) | {facts['cli_startup_s']:.2f}s |"
        )
    return rows


def images_line(big: int | None, layer: int | None) -> str:
    size = f"{mb(big):.0f} MB as a `docker save` tarball" if big else "size as asked"
    top = f"{mb(layer):.1f} MB" if layer else "~10 MB"
    return (
        f"- **Images.** The big image is busybox + 5 layers of random bytes ({size}; random, "
        f"so no compression can cheat); v2 adds one top layer of {top}. Case (c) uses 10 "
        "images of busybox + 1 MiB."
    )


def console_summary(runs: list[Run], facts: dict[str, Any]) -> str:
    found = goals(runs, facts)
    return "\n".join(
        [
            *failures(facts),
            *results_table(runs),
            "",
            *throughput_rows(runs),
            "",
            *phases_table(runs),
            "",
            *goals_table(found),
            "",
            *bottlenecks(runs, facts),
        ]
    )
