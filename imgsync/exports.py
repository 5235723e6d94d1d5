"""The cycle's exports, as the peers' sessions wait for them.

The thread that exports announces the markers as soon as it knows them — on the classic
image store before any save, with the exports still to write as :class:`LiveExport`
(peers plan at once and stream those bundles as they are written) — and finishes with
every final marker. A peer's session asks its inventory meanwhile.
"""

from __future__ import annotations

import threading

from imgsync.live import LiveExport
from imgsync.model import Marker
from imgsync.signals import Cancelled


class Exports:
    """The cycle's exports, as the peers' sessions wait for them (they ask their
    inventories meanwhile). Announced early where the source knows every version before
    its save (:meth:`announce`: markers, some of them provisional, with the exports still
    being written as :class:`LiveExport`); finished, with every final marker, at the end."""

    def __init__(self) -> None:
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

    def announce(
        self, markers: dict[str, Marker], live: dict[str, LiveExport], errors: dict[str, str]
    ) -> None:
        self.markers, self.live, self.errors = dict(markers), live, dict(errors)
        self._announced.set()

    def finish(self, markers: dict[str, Marker], errors: dict[str, str]) -> None:
        self.markers, self.errors = markers, errors
        self._announced.set()
        self._done.set()

    def abandon(self, why: str) -> None:
        self._failed = why
        for live in self.live.values():
            live.fail(f"source: {why}")
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
