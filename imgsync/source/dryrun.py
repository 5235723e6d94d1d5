"""``imgsync sync --dry-run``: what a cycle would export, which peers would get which
images, and about how many bytes — changing nothing anywhere.

It asks the source engine and each peer exactly what a cycle asks (inventory, held
layers) and runs the same planner, but exports, sends, applies and records nothing.
Bytes are exact for a bundle already exported (thin or full); for an image that would
be exported first, the engine's image size stands in (an upper bound for a thin send).
"""

from __future__ import annotations

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imgsync import config as cfg
from imgsync import protocol
from imgsync.adapters.transport import SshSession
from imgsync.bundle import payload
from imgsync.bundle.bundledir import BundleDir, bundle_name
from imgsync.engines.docker import Engine
from imgsync.errors import ImgsyncError, MarkerError
from imgsync.model import DryRun, HeldLayers, Marker, Planned, chain_ids
from imgsync.plan import Step, needs_export, plan_peer
from imgsync.source import selection
from imgsync.source.delivery import thin_for_store


def run(source: cfg.SourceConfig, wanted: list[str], peers: list[cfg.PeerSettings]) -> DryRun:
    report = DryRun()
    engine = Engine(source.docker_host)
    try:
        images = selection.resolve(engine, source)
        images = [i for i in images if not wanted or i in wanted]
        markers, errors = _exports(engine, BundleDir(Path(source.export_dir)), images, report)
    finally:
        engine.close()
    export_dir = Path(source.export_dir)

    def look(peer: cfg.PeerSettings) -> list[Planned]:
        mine = selection.for_peer(images, peer.images)
        failed = [Planned(peer.name, i, None, "failed", error=errors[i]) for i in mine
                  if i in errors]  # fmt: skip
        try:
            return failed + _peer(peer, {i: markers[i] for i in mine if i in markers}, export_dir)
        except ImgsyncError as err:
            return failed + [Planned(peer.name, i, markers[i].version, "failed", error=str(err))
                             for i in mine if i in markers]  # fmt: skip

    with ThreadPoolExecutor(max_workers=source.max_parallel_peers) as pool:
        report.results = [r for results in pool.map(look, peers) for r in results]
    return report


def _exports(
    engine: Engine, bundles: BundleDir, images: list[str], report: DryRun
) -> tuple[dict[str, Marker], dict[str, str]]:
    """The marker each image has, or would get from an export (size: the engine's)."""
    markers, errors = {}, {}
    for image in images:
        try:
            info = engine.inspect(image)
            try:
                current = bundles.read_marker(image)
            except MarkerError:
                current = None
            intact = current is not None and (bundles.path / current.bundle).is_file()
            if current is not None and not needs_export(info.id, current, intact):
                markers[image] = current
                continue
            report.exports.append(image)
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            markers[image] = Marker(image, info.id, info.diff_ids, bundle_name(image, info.id),
                                    info.size, "0" * 64, now)  # fmt: skip
        except ImgsyncError as err:
            errors[image] = f"source: {err}"
    return markers, errors


def _peer(peer: cfg.PeerSettings, markers: dict[str, Marker], export_dir: Path) -> list[Planned]:
    if not markers:
        return []
    with SshSession(peer, threading.Event()) as ssh:
        args = ["--inventory", "--json", *(a for i in markers for a in ("--image", i))]
        inventory = protocol.load_inventory(
            ssh.run([*peer.apply_argv, *args], peer.apply_timeout).stdout
        )
        plan = plan_peer(markers, inventory, peer.inbox)
        chains = {c for item in plan if item.step is Step.SEND
                  for c in chain_ids(item.marker.layers)}  # fmt: skip
        held = HeldLayers("unknown", set())
        if chains and peer.mode == "agent":
            layer_args = ["--json", *(a for c in sorted(chains) for a in ("--has-layer", c))]
            answer = ssh.run([*peer.apply_argv, *layer_args], peer.apply_timeout)
            held = protocol.load_layers(answer.stdout)
    omitted = thin_for_store(plan, held, export_dir)
    results = []
    for item in plan:
        row = Planned(peer.name, item.image, item.marker.version, "unchanged")
        if item.step is Step.NO_ROOM:
            row.action, row.error = "failed", f"peer {peer.name}: {item.reason}"
        elif item.step is Step.APPLY:
            row.action = "would-apply"
        elif item.step is Step.SEND:
            leave_out = omitted.get(item.image, ())
            row.action, row.transfer = "would-send", "thin" if leave_out else "full"
            row.bytes = _estimate(item.marker, export_dir, leave_out)
        results.append(row)
    return results


def _estimate(marker: Marker, export_dir: Path, omitted: tuple[int, ...]) -> int:
    full = export_dir / marker.bundle
    if not full.is_file():
        return marker.size
    if not omitted:
        return full.stat().st_size
    return payload.thin(marker.bundle, full, omitted).size
