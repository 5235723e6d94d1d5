"""``.venv/bin/python -m bench [--runs 3] [--quick] [--no-memory-case] ...``.

Builds the lab (a source and 4 peers), runs every case on its links (loopback, 100 Mbit/s,
100 Mbit/s + 20 ms RTT), each row ``--runs`` times, prints the tables, saves the raw
numbers (bench/results/*.raw, JSON) and writes docs/benchmarks.md — only after a complete
run of a committed tree: a tree with uncommitted changes under imgsync/, bench/ or lab/ is
refused before anything runs, and the page is not written if HEAD or those files changed
while it ran. ``--quick`` and ``--doc OTHER`` measure any tree, labelled "dirty", and never
write the page. The lab is torn down at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab import Lab, unavailable_reason

from . import measure, report, shaping, tree
from .cases import Bench
from .names import CASES, COMPRESSION_MODES, LINKS, LOOPBACK, PLAN, Options, compression_setting
from .page import (
    DOC,
    EXIT_CHANGED,
    EXIT_REFUSED,
    MIN_RUNS,
    PEERS,
    REPO,
    RESULTS,
    is_page,
    page_problems,
    read_tree,
    render,
)
from .util import say


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="imgsync vs docker save | ssh docker load vs scp, on the test lab",
    )
    parser.add_argument(
        "--size-mb",
        type=int,
        default=None,
        help="size of the big image's 5 layers together (default 500; 100 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 100 MB images, loopback only, 2 runs, no memory case; "
        "any tree, never the page",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs per row, the median shown (default 3, 2 with --quick; the page needs "
        f">= {MIN_RUNS})",
    )
    parser.add_argument(
        "--memory-case",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sync a 2 GB image to 4 peers once, for imgsync's peak RSS (default on, off "
        "with --quick; needs ~11x its size free on disk, skipped otherwise)",
    )
    parser.add_argument("--memory-mb", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which of {','.join(CASES)} to run (default all; 'none' runs only the memory case)",
    )
    parser.add_argument(
        "--links",
        default=None,
        help=f"which of {','.join(LINKS)} (default all; loopback with --quick)",
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSION_MODES,
        default="per-link",
        help="imgsync's [ssh] compression in the lab's config: per-link (the default) is "
        "what an operator would set, zstd on the paced links and none on loopback; none or "
        "zstd force one everywhere (the classic pipeline is never compressed)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help=f"where to write the markdown (default {DOC.relative_to(REPO)} after a complete "
        "run of a committed tree; another path takes any run)",
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="lab directory (default a new one under /var/tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the lab directory")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RAW",
        help="run nothing: write the markdown again from a raw results file (bench/results/)",
    )
    args = parser.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip() not in ("", "none"))
    if not set(cases) <= set(CASES):
        parser.error(f"--cases: a comma-separated subset of {','.join(CASES)}")
    links = tuple((args.links or ("loopback" if args.quick else ",".join(LINKS))).split(","))
    if not set(links) <= set(LINKS):
        parser.error(f"--links: a comma-separated subset of {','.join(LINKS)}")
    runs = args.runs if args.runs is not None else (2 if args.quick else MIN_RUNS)
    if runs < 1:
        parser.error("--runs: at least 1")
    args.options = Options(
        size_mb=args.size_mb or (100 if args.quick else 500),
        links=tuple(LINKS[name] for name in links),
        cases=cases,
        runs=runs,
        memory_case=args.memory_case if args.memory_case is not None else not args.quick,
        memory_mb=args.memory_mb,
        compression=args.compression,
    )
    args.complete = set(cases) == set(CASES) and set(links) == set(LINKS)
    if args.doc is None and args.render is None and args.complete and not args.quick:
        args.doc = DOC  # only a complete run replaces the committed numbers
    return args


def run_all(bench: Bench, lab: Lab, options: Options, timings: dict[str, float]) -> None:
    """Every case on its links, then the memory case; ``timings`` gets each part's time."""

    def timed(name: str, started: float) -> None:
        timings[name] = time.monotonic() - started

    t0 = time.monotonic()
    bench.build_images()
    timed("images", t0)
    t0 = time.monotonic()
    bench.calibrate_cipher()
    bench.measure_startup()
    timed("start-up + cipher", t0)
    for link in options.links:
        t0 = time.monotonic()
        say(f"link: {link.name}")
        for case in PLAN[link.name]:
            if case in options.cases:
                bench.attempt(case, link)
        timed(link.name, t0)
    shaping.shape(lab, LOOPBACK)
    if options.memory_case:
        t0 = time.monotonic()
        say("memory case")
        bench.attempt("mem", LOOPBACK)
        timed("memory case", t0)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render is not None:
        return render(args.render, args.doc)
    options: Options = args.options
    start_tree = read_tree()
    if is_page(args.doc):
        problems = page_problems(args, start_tree)
        if problems:
            say(f"refusing to write {DOC.relative_to(REPO)}: " + "; ".join(problems))
            return EXIT_REFUSED
    reason = unavailable_reason()
    if reason is not None:
        say(reason)
        return EXIT_REFUSED
    if start_tree is not None:
        say(f"measuring {start_tree.describe()}")
    command = ".venv/bin/python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="imgsync-bench-", dir="/var/tmp"))
    started = time.monotonic()
    timings: dict[str, float] = {}
    lab = Lab(root, peers=PEERS, keep=args.keep)
    bench: Bench | None = None
    try:
        with lab:
            try:
                timings["lab start"] = lab.timings["start"]
                say(f"lab up in {lab.timings['start']:.1f}s under {root}")
                shaping.install(lab)
                bench = Bench(lab, options, say)
                host = report.machine(lab, bench.docker_cli)
                run_all(bench, lab, options, timings)
            finally:
                measure.kill_all()  # before the lab goes: nothing of ours left talking to it
    except KeyboardInterrupt:
        say("interrupted; the lab is down")
        return 130
    total = time.monotonic() - started
    assert bench is not None
    end_tree = read_tree()
    changed = (
        tree.changed_during(start_tree, end_tree)
        if start_tree is not None and end_tree is not None
        else "git could not tell"
    )
    bench.facts["compression_setting"] = compression_setting(options.compression, options.links)
    data = {
        "command": command,
        "host": host,
        "facts": bench.facts,
        "seconds": total,
        "timings": timings,
        "runs_per_row": options.runs,
        "quick": args.quick,
        "complete": args.complete,
        "tree": {
            "start": start_tree.to_json() if start_tree else {},
            "end": end_tree.to_json() if end_tree else {},
            "describe": start_tree.describe() if start_tree else "unknown",
            "changed_during_run": changed,
        },
        "runs": [run.to_json() for run in bench.runs],
    }
    print()
    print(report.console_summary(data))
    raw = save_raw(data)
    say(f"raw numbers: {raw}")
    say(f"done in {total / 60:.1f} min")
    if args.doc is None:
        return 0
    if is_page(args.doc) and changed:
        say(
            f"NOT writing {DOC.relative_to(REPO)}: {changed} during the run; the raw numbers "
            f"are in {raw}"
        )
        return EXIT_CHANGED
    args.doc.write_text(report.document(data))
    say(f"written: {args.doc}")
    return 0


def save_raw(data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = RESULTS / f"{stamp}.raw"
    raw.write_text(json.dumps(data, indent=1))
    return raw


if __name__ == "__main__":
    sys.exit(main())
