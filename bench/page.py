"""Whether this run may write the benchmark page: a committed, unchanged tree, complete
runs, no failures; and re-rendering the page from saved raw results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import report, tree
from .names import Options
from .util import say

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "bench" / "results"
PEERS = 4
MIN_RUNS = 3  # the page's rows are medians of at least this many runs
EXIT_REFUSED = 2  # nothing ran: usage, or the page cannot be written from this tree
EXIT_CHANGED = 3  # it ran, but the tree changed meanwhile: raw results kept, no page


def is_page(path: Path | None) -> bool:
    return path is not None and path.resolve() == DOC.resolve()


def page_problems(args: argparse.Namespace, state: tree.TreeState | None) -> list[str]:
    """Why this run may not write docs/benchmarks.md (empty: it may)."""
    options: Options = args.options
    problems = []
    if args.quick:
        problems.append("--quick runs never write it")
    if not args.complete:
        problems.append("only a run of every case on every link writes it")
    if options.runs < MIN_RUNS:
        problems.append(f"its rows need >= {MIN_RUNS} runs (--runs {options.runs})")
    if options.size_mb != 500:
        problems.append("its images are 500 MB (--size-mb)")
    if state is None:
        problems.append("git could not say which commit this is")
    elif not state.clean:
        problems.append(
            f"the tree has {len(state.changed)} uncommitted change(s) under "
            f"{', '.join(w + '/' for w in tree.WATCHED)}: "
            + "; ".join(line.strip() for line in state.changed[:8])
            + ("; …" if len(state.changed) > 8 else "")
            + " — commit them first (or measure this tree with --quick or --doc OTHER_PATH, "
            "labelled dirty)"
        )
    return problems


def read_tree() -> tree.TreeState | None:
    try:
        return tree.state()
    except tree.TreeError as err:
        say(f"git: {err}")
        return None


def raw_page_problems(data: dict[str, Any]) -> list[str]:
    """Why a raw results file may not become docs/benchmarks.md (empty: it may)."""
    problems = []
    start = data.get("tree", {}).get("start") or {}
    if not start.get("commit") or start.get("changed"):
        problems.append("it was measured on a tree with uncommitted changes (or an unknown one)")
    if data.get("tree", {}).get("changed_during_run"):
        problems.append(f"the tree changed during it: {data['tree']['changed_during_run']}")
    if data.get("quick") or not data.get("complete"):
        problems.append("it is not a complete run")
    if int(data.get("runs_per_row", 1)) < MIN_RUNS:
        problems.append(f"its rows have fewer than {MIN_RUNS} runs")
    return problems


def render(raw: Path, doc: Path | None) -> int:
    """The tables and the doc from a raw results file, without running anything."""
    data = json.loads(raw.read_text())
    target = doc or DOC
    if is_page(target):
        problems = raw_page_problems(data)
        if problems:
            say(f"not writing {DOC.relative_to(REPO)} from {raw}: " + "; ".join(problems))
            return EXIT_REFUSED
    print(report.console_summary(data))
    target.write_text(report.document(data))
    say(f"written: {target}")
    return 0
