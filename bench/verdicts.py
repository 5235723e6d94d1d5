"""How a goal is judged and said: REACHED, NOT REACHED by how much, NOT MEASURED and why."""

from __future__ import annotations

from dataclasses import dataclass

from .rows import Row

MEASURED_NOT = "NOT MEASURED"
PROBE_SESSION = "imgsync session -> the peer's inbox (a sync's path)"
PROBE_RECEIVE = "imgsync transport -> imgsync apply --receive"
PROBE_SEND = "imgsync transport -> cat > /dev/null"


@dataclass
class Goal:
    name: str
    target: str
    measured: str = "-"
    verdict: str = MEASURED_NOT
    reason: str = ""


# -- helpers --------------------------------------------------------------------------------
def phase_text(row: Row) -> str:
    run = row.typical
    return ", ".join(f"{name} {sec:.1f}s" for name, sec in run.phases.items() if sec >= 0.05)


def over(value: float, limit: float, unit: str) -> str:
    """How far ``value`` is past ``limit``: ``+0.44x`` or ``+2.3 s``."""
    if unit == "x":
        return f"+{value - limit:.2f}x"
    return f"+{value - limit:.2f} s"


def verdict(misses: list[str]) -> str:
    return "REACHED" if not misses else "NOT REACHED (" + "; ".join(misses) + ")"


def secs(row: Row) -> str:
    return f"{row.median:.2f} s"


def versus(mine: Row, classic: Row) -> tuple[float, str]:
    value = mine.median / classic.median
    return value, f"{value:.2f}x ({secs(mine)} vs {secs(classic)})"


def ratio_goal(
    goal: Goal, pairs: list[tuple[str, Row | None, Row | None, float]], explain: bool = True
) -> Goal:
    """Each (label, imgsync row, classic row, limit) must be within its limit."""
    measured, misses, reasons, unknown = [], [], [], []
    for label, mine, classic, limit in pairs:
        if mine is None or classic is None:
            measured.append(f"{label}: not measured")
            unknown.append(label)
            continue
        value, text = versus(mine, classic)
        measured.append(f"{label}: {text}")
        if value > limit:
            late = mine.median - classic.median * limit
            misses.append(f"{label} by {over(value, limit, 'x')}, {late:.1f} s over")
            if explain:
                reasons.append(f"{label}: {phase_text(mine)}")
    if all(mine is None or classic is None for _, mine, classic, _ in pairs):
        return goal
    goal.measured = "; ".join(measured)
    if unknown and not misses:
        goal.verdict = f"{MEASURED_NOT} ({', '.join(unknown)})"
    else:
        goal.verdict = verdict(misses + [f"{label} not measured" for label in unknown])
    goal.reason = "; ".join(reasons)
    return goal


# -- the goals ------------------------------------------------------------------------------
