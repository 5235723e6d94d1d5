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

from .goals import goals
from .measure import Spread
from .names import Run
from .notes import bottlenecks, contention_note, failures, how_to_read, memory_section
from .rows import Row, rows
from .tables import (
    goals_table,
    memory_table,
    phases_table,
    results_table,
    throughput_table,
)


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
