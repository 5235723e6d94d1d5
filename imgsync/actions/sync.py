"""``imgsync sync``: one cycle — export what changed, then per peer (in parallel):
ask what it has, send what it lacks, have it apply, record the results.

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

import structlog

from imgsync import config as cfg
from imgsync import export, log, selection
from imgsync.actions import dryrun
from imgsync.bundledir import BundleDir
from imgsync.engine import Engine
from imgsync.errors import ConfigError, ImgsyncError
from imgsync.exports import Exports
from imgsync.fsutil import temp_name
from imgsync.live import LiveExport
from imgsync.lock import cycle_lock
from imgsync.model import Action, Marker, ProgressSink, Report, Result
from imgsync.peer import sync_peer
from imgsync.reference import normalize
from imgsync.signals import Cancelled
from imgsync.state import StateDB


@dataclass(frozen=True)
class SyncOptions:
    images: tuple[str, ...] = ()  # empty: every image the source selects
    peers: tuple[str, ...] = ()  # empty: every configured peer
    wait: bool = True
    stop: threading.Event | None = None  # set by SIGTERM: abandon the cycle (Cancelled)
    progress: ProgressSink | None = None


def run(config: cfg.Config, config_path: Path, options: SyncOptions) -> Report:
    source = cfg.require_source(config, config_path)
    wanted = _wanted_images(options.images, config_path)
    peers = _select_peers(config, options.peers, config_path)
    state_path = Path(config.state.path)
    stop = options.stop or threading.Event()
    with cycle_lock(state_path.with_name("imgsync.lock"), wait=options.wait, stop=stop):
        started = time.monotonic()
        run_id = uuid.uuid4().hex[:12]
        structlog.contextvars.bind_contextvars(run_id=run_id)
        try:
            report = _cycle(source, wanted, peers, state_path, stop, options.progress, run_id)
        finally:
            structlog.contextvars.unbind_contextvars("run_id")
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


def dry_run(
    config: cfg.Config, config_path: Path, images: tuple[str, ...], peers: tuple[str, ...]
) -> dryrun.DryRun:
    """What a cycle would do, with nothing exported, sent, applied or recorded."""
    source = cfg.require_source(config, config_path)
    wanted = _wanted_images(images, config_path)
    return dryrun.run(source, wanted, _select_peers(config, peers, config_path))


def _cycle(
    source: cfg.SourceConfig,
    wanted: list[str],
    peers: list[cfg.PeerSettings],
    state_path: Path,
    stop: threading.Event,
    progress: ProgressSink | None,
    run_id: str,
) -> Report:
    """Export in this thread while the peers' sessions, each in its own, connect and ask
    their inventories; each then plans and sends as soon as the exports are done."""
    state = StateDB(state_path)
    try:
        engine = Engine(source.docker_host)
        try:
            if source.pull:
                selection.pull(engine, source)
            images = _chosen(selection.resolve(engine, source), wanted)
            per_peer = {p.name: selection.for_peer(images, p.images) for p in peers}
            needed = [i for i in images if any(i in mine for mine in per_peer.values())]
            exports = Exports()
            export_dir = Path(source.export_dir)
            context = contextvars.copy_context()

            def serve(peer: cfg.PeerSettings) -> list[Result]:
                mine = per_peer[peer.name]
                return context.copy().run(
                    sync_peer, peer, mine, exports, export_dir, stop, progress
                )

            with ThreadPoolExecutor(max_workers=source.max_parallel_peers) as pool:
                futures = [pool.submit(serve, peer) for peer in peers if per_peer[peer.name]]
                try:
                    exports.finish(*_export_all(engine, source, needed, state, exports, stop))
                except BaseException as err:
                    exports.abandon(str(err) or type(err).__name__)
                    raise
                report = Report([r for future in futures for r in future.result()])
        finally:
            engine.close()
        state.record_results(run_id, report.results)
    finally:
        state.close()
    return report


def _export_all(
    engine: Engine,
    source: cfg.SourceConfig,
    images: list[str],
    state: StateDB,
    exports: Exports,
    stop: threading.Event,
) -> tuple[dict[str, Marker], dict[str, str]]:
    """Export what changed. First every image's head (what the engine holds, whether the
    export dir has it), announced to the peers at once: on the classic image store the
    version is known before the save, so each peer plans right away and streams a new
    bundle while it is written. Then the saves, one after the other."""
    bundles = BundleDir(Path(source.export_dir))
    bundles.create()
    bundles.clean_temp()
    markers: dict[str, Marker] = {}
    errors: dict[str, str] = {}
    heads: list[export.Head] = []
    for image in images:
        try:
            found = export.head(engine, bundles, image)
        except ImgsyncError as err:
            log.get().error("export failed", image=image, error=str(err))
            errors[image] = f"source: {err}"
            continue
        if found.current is not None:
            markers[image] = found.current
            export.prune(bundles, found.current, source.keep)
        else:
            heads.append(found)
    live = {}
    if heads and engine.store() == "classic":  # else the version is known after the save
        for found in heads:
            plan = export.provisional(found)
            live[found.reference] = LiveExport(plan, bundles.path / temp_name(plan.bundle))
        exports.announce({**markers, **{i: x.provisional for i, x in live.items()}}, live, errors)
    for found in heads:
        if stop.is_set():
            raise Cancelled("stopped before exporting " + found.reference)
        try:
            exported = export.save(engine, bundles, found, source.keep, live.get(found.reference))
        except ImgsyncError as err:
            log.get().error("export failed", image=found.reference, error=str(err))
            errors[found.reference] = f"source: {err}"
            continue
        markers[found.reference] = exported
        state.record_export(exported)
    return markers, errors


def _wanted_images(wanted: tuple[str, ...], path: Path) -> list[str]:
    chosen, problems = [], []
    for raw in wanted:
        try:
            chosen.append(normalize(raw))
        except ValueError as err:
            problems.append(f"--image: {err}")
    if problems:
        raise ConfigError(f"config {path}", problems)
    return chosen


def _chosen(images: list[str], wanted: list[str]) -> list[str]:
    """``--image``: only these, each of which the source must select."""
    if not wanted:
        return images
    unknown = [w for w in wanted if w not in images]
    if unknown:
        raise ConfigError(
            "--image", [f"{w}: not selected by source.images or source.labels" for w in unknown]
        )
    return [image for image in images if image in wanted]


def _select_peers(
    config: cfg.Config, wanted: tuple[str, ...], path: Path
) -> list[cfg.PeerSettings]:
    names = [p.name for p in config.peers]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ConfigError(f"config {path}", [f"--peer {n}: no such peer" for n in unknown])
    return [cfg.peer_settings(config, p) for p in config.peers if not wanted or p.name in wanted]
