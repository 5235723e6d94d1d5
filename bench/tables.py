"""The benchmark page's tables: results (medians with min and max), throughput, phases,
memory, goals; and the formatting of their cells."""

from __future__ import annotations

from .measure import EN_DASH
from .rows import Row, baseline
from .util import mb
from .verdicts import Goal, phase_text


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
