"""The goals (issue #11), each with what was measured and a verdict: REACHED, NOT REACHED
(by how much), or NOT MEASURED (and why). Every time is a median of the row's runs, every
ratio a ratio of medians."""

from __future__ import annotations

from typing import Any

from .measure import Spread
from .names import (
    CLASSIC,
    CLASSIC_4,
    IMGSYNC_FIRST,
    IMGSYNC_NOOP,
    IMGSYNC_V2,
    LOOPBACK,
    RTT,
    SAVE,
    SCP,
    SHAPED,
)
from .rows import Row, find
from .util import mb
from .verdicts import Goal, over, phase_text, ratio_goal, secs, verdict

MEASURED_NOT = "NOT MEASURED"
PROBE_SESSION = "imgsync session -> the peer's inbox (a sync's path)"
PROBE_RECEIVE = "imgsync transport -> imgsync apply --receive"
PROBE_SEND = "imgsync transport -> cat > /dev/null"


def goals(table: list[Row], facts: dict[str, Any]) -> list[Goal]:
    return [
        first_sync_loopback(table),
        first_sync_rtt(table, facts),
        four_peers(table),
        update_shaped(table),
        update_loopback(table),
        nothing_changed(table),
        throughput(table, facts),
        startup(facts),
        memory(table, facts),
    ]


def first_sync_loopback(table: list[Row]) -> Goal:
    goal = Goal(
        "first sync, 1 peer, ~500 MB random layers, loopback",
        "<= 1.0x classic, verification on",
    )
    mine = find(table, "a", LOOPBACK.name, IMGSYNC_FIRST)
    classic = find(table, "a", LOOPBACK.name, CLASSIC)
    return ratio_goal(goal, [("loopback", mine, classic, 1.0)])


def first_sync_rtt(table: list[Row], facts: dict[str, Any]) -> Goal:
    goal = Goal(
        f"first sync, 1 peer, {RTT.name}",
        "<= 1.0x classic (<= 0.6x on compressible layers: imgsync with the link's "
        "`[ssh] compression`, classic uncompressed)",
    )
    pairs = [
        (
            "random layers",
            find(table, "a", RTT.name, IMGSYNC_FIRST),
            find(table, "a", RTT.name, CLASSIC),
            1.0,
        ),
        (
            "compressible layers",
            find(table, "e", RTT.name, IMGSYNC_FIRST),
            find(table, "e", RTT.name, CLASSIC),
            0.6,
        ),
    ]
    ratio_goal(goal, pairs)
    mine, classic = pairs[1][1], pairs[1][2]
    if mine is None or classic is None:
        return goal
    used = compression_of(mine) or str(facts.get("compression_setting", "?"))
    goal.measured += f"; imgsync ran with {used}"
    if mine.wire and classic.wire:
        goal.measured += (
            f"; compressible layers on the wire: imgsync {mb(mine.wire):.0f} MB, classic "
            f"{mb(classic.wire):.0f} MB"
        )
        if mine.wire > 0.9 * classic.wire:
            goal.reason += (
                f"; compressible layers: imgsync sent {mb(mine.wire):.0f} MB where classic "
                f"sent {mb(classic.wire):.0f} MB, next to nothing saved on the wire ({used})"
            )
    goal.reason = goal.reason.lstrip("; ")
    return goal


def compression_of(row: Row) -> str:
    """The ``[ssh] compression`` the row's runs had in their config ("" when not noted)."""
    found = sorted({str(run.data["compression"]) for run in row.runs if "compression" in run.data})
    return " / ".join(f'`compression = "{value}"`' for value in found)


def four_peers(table: list[Row]) -> Goal:
    goal = Goal("first sync, 4 peers", "<= 1.0x four classic pipelines in parallel, on both links")
    pairs = [
        (
            link.name,
            find(table, "d", link.name, IMGSYNC_FIRST),
            find(table, "d", link.name, CLASSIC_4),
            1.0,
        )
        for link in (LOOPBACK, RTT)
    ]
    return ratio_goal(goal, pairs)


def update_shaped(table: list[Row]) -> Goal:
    goal = Goal(f"update, one new 10 MB layer, {SHAPED.name}", "<= 0.15x classic")
    mine = find(table, "b", SHAPED.name, IMGSYNC_V2)
    classic = find(table, "b", SHAPED.name, CLASSIC)
    return ratio_goal(goal, [(SHAPED.name, mine, classic, 0.15)])


def update_loopback(table: list[Row]) -> Goal:
    goal = Goal("update, loopback", "<= `docker save` alone + 1.0 s")
    mine = find(table, "b", LOOPBACK.name, IMGSYNC_V2)
    save = find(table, "b", LOOPBACK.name, SAVE)
    if mine is None or save is None:
        return goal
    budget = save.median + 1.0
    goal.measured = f"{secs(mine)} vs {budget:.2f} s (`docker save -o` of v2 {secs(save)} + 1.0 s)"
    goal.verdict = verdict(
        [] if mine.median <= budget else [f"by {over(mine.median, budget, 's')}"]
    )
    if mine.median > budget:
        goal.reason = phase_text(mine)
    return goal


def nothing_changed(table: list[Row]) -> Goal:
    goal = Goal("nothing changed, 10 images x 4 peers", "<= 1.0 s, 0 saves, 0 loads")
    found = [row for row in table if row.case == "c" and row.tool == IMGSYNC_NOOP]
    if not found:
        return goal
    measured, misses, reasons = [], [], []
    for row in found:
        saves = sum(int(str(s or 0)) for s in row.every("saves"))
        loads = sum(int(str(n or 0)) for n in row.every("loads"))
        measured.append(
            f"{row.link}: {row.seconds.text(2, ' s')}, {saves} saves, {loads} loads "
            f"in {row.count} runs"
        )
        if row.median > 1.0:
            misses.append(f"{row.link} by {over(row.median, 1.0, 's')}")
            reasons.append(f"{row.link}: {phase_text(row)}")
        if saves or loads:
            misses.append(f"{row.link}: {saves} saves, {loads} loads")
    goal.measured = "; ".join(measured)
    goal.verdict = verdict(misses)
    goal.reason = "; ".join(reasons)
    return goal


def throughput(table: list[Row], facts: dict[str, Any]) -> Goal:
    goal = Goal("upload throughput, end to end, same cipher", ">= 1.0x OpenSSH `scp`")
    scp = find(table, "a", LOOPBACK.name, SCP)
    probe = find(table, "tput", LOOPBACK.name, PROBE_SESSION)
    label = "imgsync's session (the path a sync's bundles take) into the peer's inbox"
    if probe is None:
        probe = find(table, "tput", LOOPBACK.name, PROBE_RECEIVE)
        label = "imgsync's transport into the peer's `imgsync apply --receive`"
    if probe is None:
        probe = find(table, "tput", LOOPBACK.name, PROBE_SEND)
        label = "imgsync's transport into `cat > /dev/null` (sending end only)"
    if scp is None or probe is None or not scp.rate or not probe.rate:
        why = facts.get("probe_na_tools") or facts.get("probe_na")
        if why:
            goal.reason = f"the probe is n/a: {why}"
        return goal
    value = probe.rate / scp.rate
    goal.measured = (
        f"{value:.2f}x on loopback, {mb(scp.bytes or 0):.0f} MB, whole commands: {label} "
        f"{mb(probe.rate):.0f} MB/s, {probe.seconds.text(2, ' s')}; scp "
        f"{mb(scp.rate):.0f} MB/s, {scp.seconds.text(2, ' s')}"
    )
    if probe.ciphers != scp.ciphers:
        goal.verdict = f"{MEASURED_NOT} (ciphers differ)"
        goal.reason = f"imgsync {probe.ciphers}, scp {scp.ciphers}"
        return goal
    goal.measured += f", both {', '.join(scp.ciphers)}"
    goal.verdict = verdict([] if value >= 1.0 else [f"by {1.0 - value:.2f}x"])
    if value < 1.0:
        goal.reason = probe_reason(table)
    return goal


def probe_reason(table: list[Row]) -> str:
    """Which end limits the upload, from the probes (one end swapped at a time)."""
    rate = {row.tool: row.rate for row in table if row.case == "tput"}
    parts = [f"{tool}: {mb(value):.0f} MB/s" for tool, value in rate.items() if value]
    return "the probes, whole commands: " + "; ".join(parts) if parts else ""


def startup(facts: dict[str, Any]) -> Goal:
    goal = Goal("`imgsync --version`; peer session ready", "<= 0.2 s; <= 0.3 s")
    version = facts.get("cli_version_s")
    session = facts.get("session_ready_s")
    measured, misses, unknown = [], [], []
    for label, values, limit in (("--version", version, 0.2), ("session ready", session, 0.3)):
        if isinstance(values, list) and values:
            spread = Spread.of([float(v) for v in values])
            assert spread is not None
            measured.append(f"{label} {spread.text(2, ' s')}, {spread.count} runs")
            if spread.median > limit:
                misses.append(f"{label} by {over(spread.median, limit, 's')}")
        else:
            measured.append(f"{label} {values or 'not measured'}")
            unknown.append(label)
    if version is None and session is None:
        return goal
    goal.measured = "; ".join(measured)
    if misses:
        goal.verdict = verdict(misses)
        if unknown:
            goal.reason = f"{', '.join(unknown)}: not measured"
    elif unknown:
        goal.verdict = f"{MEASURED_NOT} ({', '.join(unknown)})"
    else:
        goal.verdict = "REACHED"
    return goal


def memory(table: list[Row], facts: dict[str, Any]) -> Goal:
    goal = Goal("peak RSS, 2 GB image to 4 peers (source)", "<= 100 MB")
    mem = next((row for row in table if row.case == "mem"), None)
    if mem is None:
        biggest = max((row.rss.get("imgsync", 0) for row in table), default=0)
        why = facts.get("memory_skipped", "not run (--no-memory-case)")
        goal.measured = (
            f"{why}; the largest imgsync peak in this run: {biggest * 1024 / 1e6:.0f} MB"
        )
        return goal
    peak = mem.rss.get("imgsync", 0) * 1024
    goal.measured = f"{peak / 1e6:.0f} MB (`ru_maxrss` of `imgsync sync`, one run)"
    goal.verdict = verdict([] if peak <= 100e6 else [f"by +{(peak - 100e6) / 1e6:.0f} MB"])
    return goal
