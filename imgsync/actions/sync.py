"""``imgsync sync``: one cycle by hand (:mod:`imgsync.source.cycle`, the one the daemon runs
too), with live bars on a terminal and the metrics textfile when configured; or, with
``--dry-run``, what a cycle would do, changing nothing. The CLI prints what these return.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imgsync import config as cfg
from imgsync.model import DryRun, Report
from imgsync.source import cycle
from imgsync.source.cycle import CycleOptions, select_peers, wanted_images


def dry_run(
    config: cfg.Config, config_path: Path, images: tuple[str, ...], peers: tuple[str, ...]
) -> DryRun:
    """What a cycle would do, with nothing exported, sent, applied or recorded."""
    from imgsync.source import dryrun

    source = cfg.require_source(config, config_path)
    wanted = wanted_images(images, config_path)
    return dryrun.run(source, wanted, select_peers(config, peers, config_path))


def run(config: cfg.Config, config_path: Path, options: CycleOptions, live: bool) -> Report:
    """One cycle; ``live``: with bars on this terminal, then the summary table printed."""
    if not live and not config.metrics.textfile:  # plain: no bars, no metrics to import
        return cycle.run(config, config_path, options)
    from imgsync.adapters import metrics
    from imgsync.render import progress

    stats = metrics.Metrics.resumed(config.metrics) if config.metrics.textfile else None
    console = progress.make_console() if live else None
    with progress.bars(console) as bars:  # live bars only on a terminal, never with --json
        sink = progress.tee(bars, stats.sink() if stats else None)
        report = cycle.run(config, config_path, replace(options, progress=sink), stats)
    if console is not None:
        progress.print_summary(console, report)
    return report
