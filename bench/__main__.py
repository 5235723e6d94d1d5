"""``sudo .venv/bin/python -m bench [--size-mb 500] [--quick] [--memory-case]``.

Builds the lab (a source and 4 peers), runs every case on loopback and on links shaped to
100 Mbit/s, prints the tables and writes docs/benchmarks.md (a full run) and the raw
numbers (bench/results/*.raw, JSON). The lab is torn down at the end, also on Ctrl-C.
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

from lab import Lab, unavailable_reason

from . import measure, report, shaping
from .cases import LOOPBACK, SHAPED, Bench, Options, Run

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "bench" / "results"
PEERS = 4


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="imgsync vs docker save | ssh docker load vs scp, on the test lab",
    )
    parser.add_argument(
        "--size-mb",
        type=int,
        default=None,
        help="size of the big image's 5 random layers together (default 500; 100 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 100 MB image, loopback only, docs not written",
    )
    parser.add_argument(
        "--memory-case",
        action="store_true",
        help="also sync a 2 GB image to 4 peers for imgsync's peak RSS "
        "(needs ~11x its size free on disk)",
    )
    parser.add_argument("--memory-mb", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument(
        "--cases",
        default="a,b,c,d",
        help="which of a,b,c,d to run (default all; b needs a; 'none' runs only --memory-case)",
    )
    parser.add_argument(
        "--links", default=None, help="loopback,shaped (default both; loopback with --quick)"
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help=f"where to write the markdown (default {DOC.relative_to(REPO)} "
        "after a complete run: every case, both links, not --quick)",
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
    if not set(cases) <= {"a", "b", "c", "d"}:
        parser.error("--cases: a comma-separated subset of a,b,c,d")
    if "b" in cases and "a" not in cases:
        parser.error("--cases: b needs a (the peer must run v1 first)")
    links = args.links or ("loopback" if args.quick else "loopback,shaped")
    names = {"loopback": LOOPBACK, "shaped": SHAPED}
    if not set(links.split(",")) <= set(names):
        parser.error("--links: a comma-separated subset of loopback,shaped")
    args.options = Options(
        size_mb=args.size_mb or (100 if args.quick else 500),
        links=tuple(names[link] for link in links.split(",")),
        cases=cases,
        memory_case=args.memory_case,
        memory_mb=args.memory_mb,
    )
    complete = set(cases) == {"a", "b", "c", "d"} and set(links.split(",")) == set(names)
    if args.doc is None and complete and not args.quick:
        args.doc = DOC  # only a complete run replaces the committed numbers
    return args


def render(raw: Path, doc: Path | None) -> int:
    """The tables and the doc from a raw results file, without running anything."""
    data = json.loads(raw.read_text())
    runs = [Run(**run) for run in data["runs"]]
    print(report.console_summary(runs, data["facts"]))
    target = doc or DOC
    target.write_text(
        report.document(runs, data["facts"], data["host"], data["command"], data["seconds"])
    )
    say(f"written: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render is not None:
        return render(args.render, args.doc)
    reason = unavailable_reason()
    if reason is not None:
        say(reason)
        return 2
    options: Options = args.options
    command = "sudo .venv/bin/python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="imgsync-bench-", dir="/var/tmp"))
    started = time.monotonic()
    lab = Lab(root, peers=PEERS, keep=args.keep)
    bench: Bench | None = None
    try:
        with lab:
            try:
                say(f"lab up in {lab.timings['start']:.1f}s under {root}")
                shaping.install(lab)
                bench = Bench(lab, options, say)
                host = report.machine(lab, bench.docker_cli)
                bench.build_images()
                bench.measure_startup()
                bench.ciphers()
                for link in options.links:
                    shaping.shape(lab, shaping.SHAPED_RATE if link == SHAPED else None)
                    say(f"link: {link}")
                    for case in options.cases:
                        bench.attempt(case, link)
                shaping.shape(lab, None)
                if options.memory_case:
                    say("memory case")
                    bench.attempt("mem", LOOPBACK)
            finally:
                measure.kill_all()  # before the lab goes: nothing of ours left talking to it
    except KeyboardInterrupt:
        say("interrupted; the lab is down")
        return 130
    total = time.monotonic() - started
    assert bench is not None
    end_state = report.tree_state()
    if end_state != host["imgsync"].split(", ", 1)[-1]:
        host["imgsync at the end"] = end_state  # others committed while we measured
    print()
    print(report.console_summary(bench.runs, bench.facts))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = RESULTS / f"{stamp}.raw"
    raw.write_text(
        json.dumps(
            {
                "command": command,
                "host": host,
                "facts": bench.facts,
                "seconds": total,
                "runs": [run.to_json() for run in bench.runs],
            },
            indent=1,
        )
    )
    say(f"raw numbers: {raw}")
    if args.doc is not None:
        args.doc.write_text(report.document(bench.runs, bench.facts, host, command, total))
        say(f"written: {args.doc}")
    say(f"done in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
