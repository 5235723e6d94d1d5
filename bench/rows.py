"""The runs of one (case, link, tool) as one row: medians, with the lowest and highest."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .measure import Spread
from .names import CASES, LINKS, Run

CASE_ORDER = [*CASES, "mem", "tput"]
LINK_ORDER = [link.name for link in LINKS.values()]


@dataclass
class Row:
    case: str
    link: str
    tool: str
    runs: list[Run]

    @property
    def seconds(self) -> Spread:
        spread = Spread.of([run.seconds for run in self.runs])
        assert spread is not None  # a row has at least one run
        return spread

    @property
    def median(self) -> float:
        return self.seconds.median

    @property
    def count(self) -> int:
        return len(self.runs)

    @property
    def baseline(self) -> bool:
        return any(run.baseline for run in self.runs)

    @property
    def wire(self) -> float | None:
        values = [run.wire for run in self.runs if run.wire is not None]
        return statistics.median(values) if values else None

    @property
    def rss(self) -> dict[str, int]:
        """Per process, the highest peak RSS (KiB) of the runs."""
        peaks: dict[str, int] = {}
        for run in self.runs:
            for name, kib in run.rss.items():
                peaks[name] = max(peaks.get(name, 0), kib)
        return peaks

    @property
    def loads(self) -> Spread | None:
        return Spread.of([float(run.data["load1"]) for run in self.runs if "load1" in run.data])

    @property
    def ciphers(self) -> list[str]:
        seen: list[str] = []
        for run in self.runs:
            seen += [name for name in run.ciphers if name not in seen]
        return seen

    @property
    def typical(self) -> Run:
        """The run whose time is the median (the lower one of the middle two)."""
        ranked = sorted(self.runs, key=lambda run: run.seconds)
        return ranked[(len(ranked) - 1) // 2]

    def data(self, key: str) -> float | None:
        """The median of ``run.data[key]`` over the runs that have it."""
        values = [float(run.data[key]) for run in self.runs if run.data.get(key) is not None]
        return statistics.median(values) if values else None

    def every(self, key: str) -> list[object]:
        return [run.data.get(key) for run in self.runs]

    @property
    def bytes(self) -> float | None:
        """The image bytes the command delivered (x peers), when that is what it does."""
        return self.data("bytes")

    @property
    def rate(self) -> float | None:
        """End to end: bytes / the median wall time of the whole command."""
        size = self.bytes
        return size / self.median if size else None


def rows(runs: list[Run]) -> list[Row]:
    """Group the runs by (case, link, tool), in case and link order, tools as first run."""
    found: dict[tuple[str, str, str], Row] = {}
    for run in runs:
        key = (run.case, run.link, run.tool)
        if key not in found:
            found[key] = Row(run.case, run.link, run.tool, [])
        found[key].runs.append(run)

    def order(item: tuple[int, Row]) -> tuple[int, int, int]:
        index, row = item
        case = CASE_ORDER.index(row.case) if row.case in CASE_ORDER else 99
        link = LINK_ORDER.index(row.link) if row.link in LINK_ORDER else 9
        return case, link, index

    return [row for _, row in sorted(enumerate(found.values()), key=order)]


def find(table: list[Row], case: str, link: str, tool: str) -> Row | None:
    """The row of ``case`` on ``link`` whose tool starts with ``tool``."""
    return next(
        (r for r in table if r.case == case and r.link == link and r.tool.startswith(tool)), None
    )


def baseline(table: list[Row], case: str, link: str) -> Row | None:
    return next((r for r in table if r.case == case and r.link == link and r.baseline), None)


def where(table: list[Row], test: Callable[[Row], bool]) -> list[Row]:
    return [row for row in table if test(row)]
