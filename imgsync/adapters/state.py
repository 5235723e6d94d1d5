"""The source's state DB (SQLite): what was exported, and every peer x image result.

The schema's format number is SQLite's ``user_version``; a DB of an unknown format, or
one that is not SQLite at all, is refused with :class:`StateError` and never written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsync.adapters import fsutil
from imgsync.errors import StateError
from imgsync.model import Marker, Result
from imgsync.text import printable_text

FORMAT = 2
_ENGINES = """
CREATE TABLE peer_engines (
    peer      TEXT PRIMARY KEY,
    engine    TEXT,
    store     TEXT,
    updated_at REAL NOT NULL
);
"""
_SCHEMA = (
    """
CREATE TABLE exports (
    reference TEXT NOT NULL,
    version   TEXT NOT NULL,
    bundle    TEXT NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    exported_at REAL NOT NULL,
    PRIMARY KEY (reference, version)
);
CREATE TABLE results (
    run_id    TEXT NOT NULL,
    peer      TEXT NOT NULL,
    reference TEXT NOT NULL,
    version   TEXT,
    action    TEXT NOT NULL,
    bytes_sent INTEGER NOT NULL,
    seconds   REAL NOT NULL,
    error     TEXT,
    at        REAL NOT NULL
);
CREATE INDEX results_by_peer ON results (peer, reference, at);
CREATE TABLE peer_images (
    peer      TEXT NOT NULL,
    reference TEXT NOT NULL,
    version   TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (peer, reference)
);
"""
    + _ENGINES
)


@dataclass(frozen=True)
class PairRecord:
    """What the DB knows of one peer x image (``imgsync status``): its latest result, what
    the peer ran at its last success, and its latest result that moved bytes."""

    peer: str
    reference: str
    last_at: float
    last_action: str
    last_error: str | None
    last_version: str | None  # the version that result was about (what the source had)
    running: str | None  # the peer's version at its last success (None: never)
    last_success: float | None
    bytes_sent: int | None  # None: no result moved any bytes yet
    seconds: float | None


_PAIRS = """
WITH ranked AS (
    SELECT peer, reference, at, action, error, version, bytes_sent, seconds,
        row_number() OVER (PARTITION BY peer, reference ORDER BY at DESC, rowid DESC) AS n,
        row_number() OVER (
            PARTITION BY peer, reference, bytes_sent > 0 ORDER BY at DESC, rowid DESC) AS m
    FROM results)
SELECT last.peer, last.reference, last.at, last.action, last.error, last.version,
    seen.version, seen.updated_at, moved.bytes_sent, moved.seconds
FROM ranked AS last
LEFT JOIN peer_images AS seen ON seen.peer = last.peer AND seen.reference = last.reference
LEFT JOIN ranked AS moved ON moved.peer = last.peer AND moved.reference = last.reference
    AND moved.bytes_sent > 0 AND moved.m = 1
WHERE last.n = 1
ORDER BY last.peer, last.reference
"""


class StateDB:
    @classmethod
    def existing(cls, path: Path) -> StateDB | None:
        """The DB at ``path`` for reading, or ``None`` when there is none yet: a reader
        (``imgsync status``, perhaps as another user) creates nothing."""
        try:
            if not path.stat().st_size:
                return None
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"state DB {path}: {err.strerror}") from None
        return cls(path)

    def __init__(self, path: Path) -> None:
        self.path = path
        fsutil.ensure_dir(path.parent, mode=0o750)
        try:
            fsutil.open_regular(path, write=True, mode=0o600).close()  # never through a link
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StateError(f"state DB {path} is unusable: {err}") from None
        except OSError as err:
            raise StateError(f"state DB {path}: {err.strerror}") from None
        except fsutil.NotRegular as err:
            raise StateError(f"state DB {err}") from None

    def _migrate(self) -> None:
        (found,) = self._db.execute("PRAGMA user_version").fetchone()
        if found == FORMAT:
            return
        if found == 1:  # format 2 adds what each peer said of its engine
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(_ENGINES)
                self._db.execute(f"PRAGMA user_version = {FORMAT}")
            return
        if found != 0:
            raise StateError(
                f"state DB {self.path} has format {found}; this imgsync reads format {FORMAT}"
            )
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StateError(f"state DB {self.path} has unknown tables and no format number")
        with self._db:
            self._db.execute("BEGIN")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def close(self) -> None:
        self._db.close()

    def record_export(self, marker: Marker) -> None:
        self._write(
            "INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    marker.reference,
                    marker.version,
                    marker.bundle,
                    marker.size,
                    marker.sha256,
                    time.time(),
                )
            ],
        )

    def record_results(self, run_id: str, results: Iterable[Result]) -> None:
        now = time.time()
        rows = list(results)
        self._write(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    r.peer,
                    r.image,
                    r.version,
                    str(r.action),
                    r.bytes_sent,
                    r.seconds,
                    printable_text(r.error) if r.error is not None else None,
                    now,
                )
                for r in rows
            ],
        )
        self._write(
            "INSERT OR REPLACE INTO peer_images VALUES (?, ?, ?, ?)",
            [
                (r.peer, r.image, r.version, now)
                for r in rows
                if r.error is None and r.version is not None
            ],
        )
        engines = {r.peer: (r.engine, r.store) for r in rows if r.engine is not None}
        self._write(
            "INSERT OR REPLACE INTO peer_engines VALUES (?, ?, ?, ?)",
            [(peer, engine, store, now) for peer, (engine, store) in engines.items()],
        )

    def peer_engines(self) -> dict[str, tuple[str | None, str | None]]:
        """Per peer, its engine and image store as its last inventory said."""
        rows = self._read("SELECT peer, engine, store FROM peer_engines")
        return {str(peer): (engine, store) for peer, engine, store in rows}

    def peer_versions(self, peer: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT reference, version FROM peer_images WHERE peer = ?", (peer,)
        ).fetchall()
        return {reference: version for reference, version in rows}

    def latest_exports(self) -> dict[str, tuple[str, float]]:
        """Per reference, the version exported last and when."""
        rows = self._read(
            "SELECT reference, version, max(exported_at) FROM exports GROUP BY reference"
        )
        return {str(ref): (str(version), float(at)) for ref, version, at in rows}

    def pair_records(self) -> list[PairRecord]:
        """Every peer x image any sync recorded a result for."""
        return [PairRecord(*row) for row in self._read(_PAIRS)]

    def _read(self, sql: str) -> list[Any]:
        try:
            return list(self._db.execute(sql).fetchall())
        except sqlite3.DatabaseError as err:
            raise StateError(f"state DB {self.path}: cannot read: {err}") from None

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(sql, rows)
        except sqlite3.DatabaseError as err:
            raise StateError(f"state DB {self.path}: cannot write: {err}") from None
