"""The cycle's exports: made (:func:`export_selected`), and awaited by the peers'
sessions (:class:`Exports`).

The thread that exports announces the markers as soon as it knows them — on the classic
image store before any save, with the exports still to write as :class:`LiveExport`
(peers plan at once and stream those bundles as they are written) — and finishes with
every final marker. A peer's session asks its inventory meanwhile.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from imgsync import config as cfg
from imgsync import log
from imgsync.adapters.fsutil import temp_name
from imgsync.adapters.signals import Cancelled
from imgsync.adapters.state import StateDB
from imgsync.bundle.bundledir import BundleDir
from imgsync.errors import ConfigError, ImgsyncError
from imgsync.model import Marker
from imgsync.source.live import LiveExport

if TYPE_CHECKING:
    from imgsync.engines.docker import Engine
    from imgsync.source import export


class Exports:
    """The cycle's exports, as the peers' sessions wait for them (they ask their
    inventories meanwhile). Announced early where the source knows every version before
    its save (:meth:`announce`: markers, some of them provisional, with the exports still
    being written as :class:`LiveExport`); finished, with every final marker, at the end."""

    def __init__(self) -> None:
        self._selected = threading.Event()
        self.per_peer: dict[str, list[str]] | None = None  # None: every peer, every image
        self._announced = threading.Event()
        self._done = threading.Event()
        self.markers: dict[str, Marker] = {}
        self.live: dict[str, LiveExport] = {}
        self.errors: dict[str, str] = {}  # image: why it could not be exported
        self._failed: str | None = None

    @classmethod
    def ready(cls, markers: dict[str, Marker], errors: dict[str, str]) -> Exports:
        exports = cls()
        exports.finish(markers, errors)
        return exports

    def select(self, per_peer: dict[str, list[str]]) -> None:
        """Which images each peer gets (its sessions connect before this is known)."""
        self.per_peer = per_peer
        self._selected.set()

    def images_for(self, peer: str, stop: threading.Event) -> list[str]:
        self._wait(self._selected, stop)
        if self.per_peer is None:
            return [*self.markers, *self.errors]
        return list(self.per_peer.get(peer, ()))

    def announce(
        self, markers: dict[str, Marker], live: dict[str, LiveExport], errors: dict[str, str]
    ) -> None:
        self.markers, self.live, self.errors = dict(markers), live, dict(errors)
        self._announced.set()

    def finish(self, markers: dict[str, Marker], errors: dict[str, str]) -> None:
        self.markers, self.errors = markers, errors
        self._selected.set()
        self._announced.set()
        self._done.set()

    def abandon(self, why: str) -> None:
        self._failed = why
        for live in self.live.values():
            live.fail(f"source: {why}")
        self._selected.set()
        self._announced.set()
        self._done.set()

    def announced(
        self, stop: threading.Event
    ) -> tuple[dict[str, Marker], dict[str, LiveExport], dict[str, str]]:
        """The markers as announced (provisional ones for the exports in ``live``)."""
        self._wait(self._announced, stop)
        return dict(self.markers), dict(self.live), dict(self.errors)

    def wait(self, stop: threading.Event) -> tuple[dict[str, Marker], dict[str, str]]:
        """Every final marker, once the exports are done."""
        self._wait(self._done, stop)
        return self.markers, self.errors

    def _wait(self, event: threading.Event, stop: threading.Event) -> None:
        while not event.wait(0.1):
            if stop.is_set():
                raise Cancelled("stopped while the source exported")
        if self._failed is not None:
            raise Cancelled(f"the export failed: {self._failed}")


def export_selected(
    source: cfg.SourceConfig,
    wanted: list[str],
    peers: list[cfg.PeerSettings],
    state: StateDB,
    exports: Exports,
    stop: threading.Event,
    inbox: Path | None = None,
) -> None:
    """Pull, select, tell the peers' sessions what each gets (they connect meanwhile:
    docker-py is imported only now), export. ``inbox``: a relay's own (its [receiver]),
    whose whole bundles of the versions it runs are reused rather than saved again."""
    from imgsync.engines.docker import Engine
    from imgsync.source import selection

    engine = Engine(source.docker_host)
    try:
        if source.pull:
            selection.pull(engine, source)
        images = _chosen(selection.resolve(engine, source), wanted)
        per_peer = {p.name: selection.for_peer(images, p.images) for p in peers}
        exports.select(per_peer)
        needed = [i for i in images if any(i in mine for mine in per_peer.values())]
        exports.finish(*_export_all(engine, source, needed, state, exports, stop, inbox))
    finally:
        engine.close()


def _export_all(
    engine: Engine,
    source: cfg.SourceConfig,
    images: list[str],
    state: StateDB,
    exports: Exports,
    stop: threading.Event,
    inbox: Path | None,
) -> tuple[dict[str, Marker], dict[str, str]]:
    """Export what changed. First every image's head (what the engine holds, whether the
    export dir has it), announced to the peers at once: on the classic image store the
    version is known before the save, so each peer plans right away and streams a new
    bundle while it is written. Then the saves, one after the other."""
    from imgsync.source import export

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
        current = found.current or _received(bundles, inbox, found, state)
        if current is not None:
            markers[image] = current
            export.prune(bundles, current, source.keep)
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


def _received(
    bundles: BundleDir, inbox: Path | None, found: export.Head, state: StateDB
) -> Marker | None:
    """A relay's: the whole bundle its receiver loaded, as the export (no save)."""
    if inbox is None:
        return None
    from imgsync.source import received

    adopted = received.adopt(bundles, inbox, found.reference, found.info.id)
    if adopted is not None:
        state.record_export(adopted)
    return adopted


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
