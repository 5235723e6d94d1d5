"""``imgsync sync``: one cycle — export what changed, then per peer (in parallel):
ask what it has, send what it lacks, have it apply, record the results.

A peer's failure is caught here and becomes that peer's ``failed`` results; it never
stops the other peers. An image that cannot be exported fails on every peer alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from imgsync import config as cfg
from imgsync import log
from imgsync.bundledir import BundleDir
from imgsync.engine import Engine
from imgsync.errors import ConfigError, ImgsyncError
from imgsync.export import export_image
from imgsync.lock import cycle_lock
from imgsync.model import Action, Marker, Report
from imgsync.peer import sync_peer
from imgsync.reference import normalize
from imgsync.signals import Cancelled
from imgsync.state import StateDB


@dataclass(frozen=True)
class SyncOptions:
    images: tuple[str, ...] = ()  # empty: every configured image
    peers: tuple[str, ...] = ()  # empty: every configured peer
    wait: bool = True
    stop: threading.Event | None = None  # set by SIGTERM: abandon the cycle (Cancelled)


def run(config: cfg.Config, config_path: Path, options: SyncOptions) -> Report:
    source = cfg.require_source(config, config_path)
    images = _select_images(source.images, options.images, config_path)
    peers = _select_peers(config, options.peers, config_path)
    state_path = Path(config.state.path)
    with cycle_lock(state_path.with_name("imgsync.lock"), wait=options.wait, stop=options.stop):
        return _cycle(config, source, images, peers, state_path, options.stop or threading.Event())


def _cycle(
    config: cfg.Config,
    source: cfg.SourceConfig,
    images: list[str],
    peers: list[cfg.PeerSettings],
    state_path: Path,
    stop: threading.Event,
) -> Report:
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    logger = log.get()
    state = StateDB(state_path)
    try:
        markers, export_errors = _export_all(source, images, state, stop)
        with ThreadPoolExecutor(max_workers=source.max_parallel_peers) as pool:
            per_peer = list(
                pool.map(
                    lambda p: sync_peer(
                        p, images, markers, export_errors, Path(source.export_dir), stop
                    ),
                    peers,
                )
            )
        report = Report([r for results in per_peer for r in results])
        state.record_results(run_id, report.results)
    finally:
        state.close()
        structlog.contextvars.unbind_contextvars("run_id")
    report.seconds = time.monotonic() - started
    counts = {a.value: sum(r.action is a for r in report.results) for a in Action}
    logger.info(
        "cycle finished",
        run_id=run_id,
        seconds=round(report.seconds, 2),
        bytes_sent=sum(r.bytes_sent for r in report.results),
        **counts,
    )
    return report


def _export_all(
    source: cfg.SourceConfig, images: list[str], state: StateDB, stop: threading.Event
) -> tuple[dict[str, Marker], dict[str, str]]:
    bundles = BundleDir(Path(source.export_dir))
    bundles.create()
    bundles.clean_temp()
    markers: dict[str, Marker] = {}
    errors: dict[str, str] = {}
    try:
        engine = Engine(source.docker_host)
    except ImgsyncError as err:
        return {}, {image: f"source: {err}" for image in images}
    try:
        for image in images:
            if stop.is_set():
                raise Cancelled("stopped before exporting " + image)
            try:
                exported, fresh = export_image(engine, bundles, image, source.keep)
            except ImgsyncError as err:
                log.get().error("export failed", image=image, error=str(err))
                errors[image] = f"source: {err}"
                continue
            markers[image] = exported
            if fresh:
                state.record_export(exported)
    finally:
        engine.close()
    return markers, errors


def _select_images(configured: list[str], wanted: tuple[str, ...], path: Path) -> list[str]:
    if not wanted:
        return list(configured)
    chosen, problems = [], []
    for raw in wanted:
        try:
            image = normalize(raw)
        except ValueError as err:
            problems.append(f"--image: {err}")
            continue
        if image not in configured:
            problems.append(f"--image {raw}: not in source.images")
        chosen.append(image)
    if problems:
        raise ConfigError(f"config {path}", problems)
    return [image for image in configured if image in chosen]


def _select_peers(
    config: cfg.Config, wanted: tuple[str, ...], path: Path
) -> list[cfg.PeerSettings]:
    names = [p.name for p in config.peers]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ConfigError(f"config {path}", [f"--peer {n}: no such peer" for n in unknown])
    return [cfg.peer_settings(config, p) for p in config.peers if not wanted or p.name in wanted]
