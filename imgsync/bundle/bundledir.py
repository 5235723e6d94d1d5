"""A folder of bundles and markers: the source's export dir, or a peer's inbox.

Per reference: one marker ``<stem>.marker.json`` naming the current bundle
``<stem>.<version12>.tar``, and up to ``keep - 1`` older bundles of the same reference
(retention: :meth:`BundleDir.prune`). Both the source and the peer lay their folder out
the same way, so the names the source uploads are the names the peer reads.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.bundle import marker
from imgsync.bundle.verify import hash_file
from imgsync.errors import StorageError
from imgsync.model import Marker
from imgsync.reference import file_stem


def marker_name(reference: str) -> str:
    return file_stem(reference) + marker.SUFFIX


def bundle_name(reference: str, version: str) -> str:
    return f"{file_stem(reference)}.{version.removeprefix('sha256:')[:12]}.tar"


_BUNDLE = re.compile(r"(?P<stem>[^.][^/]*)\.[0-9a-f]{12}\.tar")  # bundle_name's form


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
        """Every marker under its final name: never a ``.tmp-`` or ``.part-`` one still
        being written (pathlib's ``*`` matches names that start with a dot)."""
        try:
            paths = self.path.glob("*" + marker.SUFFIX)
            yield from sorted(p for p in paths if not p.name.startswith("."))
        except OSError as err:
            raise StorageError(f"cannot list {self.path}: {err.strerror}") from None

    def marker_signatures(self) -> dict[str, tuple[int, int, int]]:
        """Cheap change detection: ``(inode, mtime_ns, size)`` of every marker, by name."""
        signatures = {}
        for path in self.marker_paths():
            try:
                st = fsutil.lstat_regular(path)
            except (FileNotFoundError, fsutil.NotRegular):
                continue
            except OSError as err:
                raise StorageError(f"cannot read {path}: {err.strerror}") from None
            signatures[path.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return signatures

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

    def bundle_paths(self, reference: str) -> list[Path]:
        """Every bundle of ``reference`` in the folder, current or older."""
        pattern = re.compile(re.escape(file_stem(reference)) + r"\.[0-9a-f]{12}\.tar")
        try:
            return sorted(p for p in self.path.iterdir() if pattern.fullmatch(p.name))
        except OSError as err:
            raise StorageError(f"cannot list {self.path}: {err.strerror}") from None

    def prune(self, reference: str, current_bundle: str, keep: int) -> list[str]:
        """Keep at most ``keep`` bundles of ``reference``: ``current_bundle`` (the one its
        marker names) and the newest others by mtime; remove the rest, oldest first.
        A bundle newer than ``current_bundle`` is never removed: it is a later version that
        landed meanwhile (its marker may still be on the way). Return the names removed."""
        try:
            current_mtime = (self.path / current_bundle).lstat().st_mtime_ns
        except OSError:
            current_mtime = None
        older = []
        for path in self.bundle_paths(reference):
            if path.name == current_bundle:
                continue
            try:
                mtime = path.lstat().st_mtime_ns
                if current_mtime is None or mtime <= current_mtime:
                    older.append((mtime, path))
            except FileNotFoundError:
                continue
            except OSError as err:
                raise StorageError(f"cannot read {path}: {err.strerror}") from None
        older.sort(key=lambda entry: (entry[0], entry[1].name))
        surplus = older[: max(0, len(older) - (keep - 1))]
        for _mtime, path in surplus:
            fsutil.remove(path)
        return [path.name for _mtime, path in surplus]

    def free_bytes(self) -> int:
        """Bytes free for an unprivileged writer on the folder's file system."""
        try:
            return shutil.disk_usage(self.path).free
        except OSError as err:
            raise StorageError(
                f"cannot read the free space of {self.path}: {err.strerror}"
            ) from None

    def clean_temp(self, older_than: float = 0.0, prefix: str = fsutil.TEMP_PREFIX) -> list[str]:
        """Remove temp files (or, by ``prefix``, partial uploads) older than ``older_than``
        seconds: what crashed or abandoned runs left."""
        try:
            temps = list(self.path.glob(prefix + "*"))
        except OSError as err:
            raise StorageError(f"cannot list {self.path}: {err.strerror}") from None
        return _remove_older(temps, older_than)

    def clean_orphans(self, older_than: float) -> list[str]:
        """Remove bundles that no marker in the folder names by their stem (their marker
        never came, or the reference is no longer synced) once older than ``older_than``
        seconds; a bundle whose marker is on its way is seconds old. Return their names."""
        try:
            names = [_BUNDLE.fullmatch(p.name) for p in self.path.iterdir()]
        except OSError as err:
            raise StorageError(f"cannot list {self.path}: {err.strerror}") from None
        orphans = [
            self.path / name.group(0)
            for name in names
            if name is not None and not (self.path / (name["stem"] + marker.SUFFIX)).exists()
        ]
        return sorted(_remove_older(orphans, older_than))

    def partials(self) -> dict[str, tuple[int, str]]:
        """Each partial upload's final name, with its size and the sha256 of what is there."""
        found = {}
        for path in sorted(self.path.glob(fsutil.PARTIAL_PREFIX + "*")):
            try:
                sha256, size = hash_file(path)
            except fsutil.NotRegular as err:  # planted: a link, a FIFO; never ours
                log.get().warning("not a partial upload; removed", error=str(err))
                fsutil.remove(path)
                continue
            except StorageError:
                continue  # it went away (completed or cleaned) while we looked
            found[path.name.removeprefix(fsutil.PARTIAL_PREFIX)] = (size, sha256)
        return found

    @staticmethod
    def _read(path: Path, limit: int = marker.MAX_BYTES + 1) -> bytes | None:
        try:
            with fsutil.open_regular(path) as handle:
                return handle.read(limit)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"cannot read {path}: {err.strerror}") from None


def _remove_older(paths: list[Path], older_than: float) -> list[str]:
    """Remove those of ``paths`` last changed ``older_than`` seconds ago or more (never
    following a link); return their names."""
    now, removed = time.time(), []
    for path in paths:
        try:
            if now - path.lstat().st_mtime >= older_than:
                fsutil.remove(path)
                removed.append(path.name)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise StorageError(f"cannot read {path}: {err.strerror}") from None
    return removed
