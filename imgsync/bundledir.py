"""A folder of bundles and markers: the source's export dir, or a peer's inbox.

Per reference: one marker ``<stem>.marker.json`` naming the current bundle
``<stem>.<version12>.tar``. Both the source and the peer lay their folder out the
same way, so the names the source uploads are the names the peer reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from imgsync import fsutil, marker
from imgsync.errors import StorageError
from imgsync.model import Marker
from imgsync.reference import file_stem


def marker_name(reference: str) -> str:
    return file_stem(reference) + marker.SUFFIX


def bundle_name(reference: str, version: str) -> str:
    return f"{file_stem(reference)}.{version.removeprefix('sha256:')[:12]}.tar"


class BundleDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self) -> None:
        fsutil.ensure_dir(self.path)

    def marker_path(self, reference: str) -> Path:
        return self.path / marker_name(reference)

    def bundle_path(self, current: Marker) -> Path:
        return self.path / current.bundle

    def read_marker(self, reference: str) -> Marker | None:
        """The current marker for ``reference``; ``None`` when there is none."""
        path = self.marker_path(reference)
        raw = self._read(path)
        return None if raw is None else marker.loads(raw, str(path))

    def marker_paths(self) -> Iterator[Path]:
        try:
            yield from sorted(self.path.glob("*" + marker.SUFFIX))
        except OSError as err:
            raise StorageError(f"cannot list {self.path}: {err.strerror}") from None

    def load_marker(self, path: Path) -> Marker:
        raw = self._read(path, limit=marker.MAX_BYTES + 1)
        if raw is None:
            raise StorageError(f"marker {path} disappeared")
        return marker.loads(raw, str(path))

    def write_marker(self, current: Marker) -> None:
        fsutil.write_atomic(self.marker_path(current.reference), marker.dumps(current))

    def remove(self, current: Marker) -> None:
        """Drop a reference's marker first (so it is no longer current), then its bundle."""
        fsutil.remove(self.marker_path(current.reference))
        fsutil.remove(self.bundle_path(current))

    def remove_orphans(self, keep: set[str]) -> list[str]:
        """Remove ``.tar`` bundles that no marker names (older versions); return them."""
        removed = []
        for path in self.path.glob("*.tar"):
            if path.name not in keep:
                fsutil.remove(path)
                removed.append(path.name)
        return removed

    def clean_temp(self, older_than: float = 0.0) -> list[str]:
        """Remove temp files of crashed runs, older than ``older_than`` seconds."""
        now, removed = time.time(), []
        for path in self.path.glob(fsutil.TEMP_PREFIX + "*"):
            try:
                if now - path.stat().st_mtime >= older_than:
                    fsutil.remove(path)
                    removed.append(path.name)
            except FileNotFoundError:
                continue
        return removed

    @staticmethod
    def _read(path: Path, limit: int = marker.MAX_BYTES + 1) -> bytes | None:
        try:
            with path.open("rb") as handle:
                return handle.read(limit)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"cannot read {path}: {err.strerror}") from None
