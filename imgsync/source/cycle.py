"""One cycle, as ``imgsync sync`` runs it once and ``imgsync daemon`` on its schedule —
export what changed, then per peer (in parallel): ask what it has, send what it lacks, have
it apply, record the results (in the state DB, and in the metrics when given).

A peer's failure is caught here and becomes that peer's ``failed`` results; it never
stops the other peers. An image that cannot be exported fails on every peer alone.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgsync import config as cfg
from imgsync import log
from imgsync.adapters.lock import cycle_lock
from imgsync.adapters.state import StateDB
from imgsync.errors import ConfigError, ExitCode, ImgsyncError
from imgsync.model import Action, ProgressSink, Report, Result
from imgsync.reference import normalize
from imgsync.source import exports as exporting
from imgsync.source.exports import Exports
from imgsync.source.link import Connect, open_link
from imgsync.source.peer import sync_peer

if TYPE_CHECKING:
    from imgsync.adapters.metrics import Metrics


@dataclass(frozen=True)
class CycleOptions:
    images: tuple[str, ...] = ()  # empty: every image the source selects
    peers: tuple[str, ...] = ()  # empty: every configured peer
    wait: bool = True
    stop: threading.Event | None = None  # set by SIGTERM: abandon the cycle (Cancelled)
    progress: ProgressSink | None = None
    connect: Connect = open_link  # how a peer's link is opened (the daemon's: kept sessions)


def run(
    config: cfg.Config, config_path: Path, options: CycleOptions, metrics: Metrics | None = None
) -> Report:
    """One cycle under the host lock. With ``metrics``, it is recorded: its report, or — when
    it broke off (exit code 1: not a config error or a lock held) — as a failed cycle."""
    try:
        report = _locked(config, config_path, options)
    except ImgsyncError as err:
        if metrics is not None and err.exit_code is ExitCode.FAILED:
            metrics.finish(config.metrics, None)
        raise
    if metrics is not None:
        metrics.finish(config.metrics, report)
    return report


def _locked(config: cfg.Config, config_path: Path, options: CycleOptions) -> Report:
    source = cfg.require_source(config, config_path)
    wanted = wanted_images(options.images, config_path)
    peers = select_peers(config, options.peers, config_path)
    state_path = Path(config.state.path)
    stop = options.stop or threading.Event()
    with cycle_lock(state_path.with_name("imgsync.lock"), wait=options.wait, stop=stop):
        started = time.monotonic()
        run_id = uuid.uuid4().hex[:12]
        log.bind(run_id=run_id)
        try:
            inbox = Path(config.receiver.inbox) if config.receiver is not None else None
            report = _cycle(source, wanted, peers, state_path, stop, options, run_id, inbox)
        finally:
            log.unbind("run_id")
    report.seconds = time.monotonic() - started
    counts = {a.value: sum(r.action is a for r in report.results) for a in Action}
    log.get().info(
        "cycle finished",
        run_id=run_id,
        seconds=round(report.seconds, 2),
        bytes_sent=sum(r.bytes_sent for r in report.results),
        **counts,
    )
    return report


def _cycle(
    source: cfg.SourceConfig,
    wanted: list[str],
    peers: list[cfg.PeerSettings],
    state_path: Path,
    stop: threading.Event,
    options: CycleOptions,
    run_id: str,
    inbox: Path | None = None,
) -> Report:
    """Export in this thread while the peers' sessions, each in its own, connect and ask
    their inventories; each then plans and sends as soon as the exports are done."""
    state = StateDB(state_path)
    exports = Exports()
    export_dir = Path(source.export_dir)
    context = contextvars.copy_context()

    def serve(peer: cfg.PeerSettings) -> list[Result]:
        return context.copy().run(
            sync_peer, peer, None, exports, export_dir, stop, options.progress, options.connect
        )

    try:
        with ThreadPoolExecutor(max_workers=source.max_parallel_peers) as pool:
            futures = [pool.submit(serve, peer) for peer in peers]  # they connect meanwhile
            try:
                exporting.export_selected(source, wanted, peers, state, exports, stop, inbox)
            except BaseException as err:
                exports.abandon(str(err) or type(err).__name__)
                raise
            report = Report([r for future in futures for r in future.result()])
        state.record_results(run_id, report.results)
    finally:
        state.close()
    return report


def wanted_images(wanted: tuple[str, ...], path: Path) -> list[str]:
    chosen, problems = [], []
    for raw in wanted:
        try:
            chosen.append(normalize(raw))
        except ValueError as err:
            problems.append(f"--image: {err}")
    if problems:
        raise ConfigError(f"config {path}", problems)
    return chosen


def select_peers(config: cfg.Config, wanted: tuple[str, ...], path: Path) -> list[cfg.PeerSettings]:
    names = [p.name for p in config.peers]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ConfigError(f"config {path}", [f"--peer {n}: no such peer" for n in unknown])
    return [cfg.peer_settings(config, p) for p in config.peers if not wanted or p.name in wanted]
