"""``imgsync sync``: one cycle — export what changed, then per peer (in parallel):
ask what it has, send what it lacks, have it apply, record the results.

A peer's failure is caught here and becomes that peer's ``failed`` results; it never
stops the other peers. An image that cannot be exported fails on every peer alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from imgsync import config as cfg
from imgsync import log, protocol
from imgsync.bundledir import BundleDir, marker_name
from imgsync.engine import Engine
from imgsync.errors import ConfigError, ImgsyncError, RemoteCommandError
from imgsync.export import export_image
from imgsync.lock import cycle_lock
from imgsync.model import Action, Marker, Report, Result
from imgsync.plan import PlanItem, Step, plan_peer
from imgsync.reference import normalize
from imgsync.signals import Cancelled
from imgsync.state import StateDB
from imgsync.transport import SshSession

T = TypeVar("T")


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
                    lambda p: _sync_peer(p, images, markers, export_errors, source, stop), peers
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


def _sync_peer(
    peer: cfg.PeerSettings,
    images: list[str],
    markers: dict[str, Marker],
    export_errors: dict[str, str],
    source: cfg.SourceConfig,
    stop: threading.Event,
) -> list[Result]:
    structlog.contextvars.bind_contextvars(peer=peer.name)
    logger = log.get()
    results = {
        image: Result(peer.name, image, None, Action.FAILED, error=error)
        for image, error in export_errors.items()
    }
    try:
        if markers:
            _sync_session(peer, markers, Path(source.export_dir), stop, results)
    except ImgsyncError as err:
        logger.error("peer failed", error=str(err))
        for image, exported in markers.items():
            done = results.get(image)
            if done is None or (done.action is Action.FAILED and done.error is None):
                results[image] = Result(
                    peer.name, image, exported.version, Action.FAILED, error=str(err)
                )
    finally:
        structlog.contextvars.unbind_contextvars("peer")
    return [results[image] for image in images if image in results]


def _sync_session(
    peer: cfg.PeerSettings,
    markers: dict[str, Marker],
    export_dir: Path,
    stop: threading.Event,
    results: dict[str, Result],
) -> None:
    """Fill ``results`` as the session goes, so what finished before a failure stays
    reported as it is (a result still FAILED without an error is one in flight)."""
    with SshSession(peer, stop) as ssh:
        ssh.remove_temp_files(peer.inbox)  # this host's lock is held: they are leftovers
        inventory = _ask(ssh, peer, ["--inventory", *_image_args(markers)], protocol.load_inventory)
        plan = plan_peer(markers, inventory, peer.inbox)
        to_apply: list[PlanItem] = []
        for item in plan:
            if item.step is Step.NO_ROOM:  # nothing is sent: the peer keeps what it runs
                log.get().error("not sent", image=item.image, reason=item.reason)
                results[item.image] = Result(
                    peer.name,
                    item.image,
                    item.marker.version,
                    Action.FAILED,
                    error=f"peer {peer.name}: {item.reason}",
                )
                continue
            if item.step is Step.SKIP:
                results[item.image] = Result(
                    peer.name, item.image, item.marker.version, Action.UNCHANGED
                )
                continue
            started = time.monotonic()
            sent = 0
            if item.step is Step.SEND:
                log.get().info("sending", image=item.image, reason=item.reason)
                sent = _send(ssh, peer, item.marker, export_dir)
            results[item.image] = Result(
                peer.name,
                item.image,
                item.marker.version,
                Action.FAILED,
                bytes_sent=sent,
                seconds=time.monotonic() - started,
            )
            to_apply.append(item)
        if to_apply:
            _apply(ssh, peer, to_apply, results)


def _send(ssh: SshSession, peer: cfg.PeerSettings, exported: Marker, export_dir: Path) -> int:
    """Bundle first, marker last: the peer never sees a marker without its bundle."""
    sent = ssh.upload(export_dir / exported.bundle, peer.inbox, exported.bundle)
    sent += ssh.upload(
        export_dir / marker_name(exported.reference), peer.inbox, marker_name(exported.reference)
    )
    return sent


def _apply(
    ssh: SshSession, peer: cfg.PeerSettings, items: list[PlanItem], results: dict[str, Result]
) -> None:
    markers = {item.image: item.marker for item in items}
    outcomes = _ask(ssh, peer, _image_args(markers), protocol.load_apply)
    reported = {o.image: o for o in outcomes}
    for image, exported in markers.items():
        result = results[image]
        outcome = reported.get(image)
        if outcome is None:
            result.error = f"peer {peer.name} did not report on {image}"
            continue
        result.seconds += outcome.seconds
        if outcome.action is Action.FAILED:
            result.error = f"peer {peer.name}: {outcome.error}"
        elif outcome.version != exported.version:
            result.error = (
                f"peer {peer.name} runs {outcome.version} after apply, expected {exported.version}"
            )
        else:
            result.action = Action.LOADED if outcome.action is Action.LOADED else Action.UNCHANGED


def _image_args(markers: dict[str, Marker]) -> list[str]:
    return ["--json", *(arg for image in markers for arg in ("--image", image))]


def _ask(
    ssh: SshSession, peer: cfg.PeerSettings, args: Sequence[str], parse: Callable[[bytes], T]
) -> T:
    """Run the peer's apply command with ``args`` and parse its JSON answer."""
    answer = ssh.run([*peer.apply_argv, *args], timeout=peer.apply_timeout)
    try:
        return parse(answer.stdout)
    except protocol.ProtocolError as err:
        detail = answer.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = detail[-1] if detail else str(err)
        raise RemoteCommandError(
            f"peer {peer.name}: {peer.apply_argv[0]} exited {answer.exit_status}: {tail}"
        ) from None


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
