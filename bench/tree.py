"""Which code is measured: the commit, and whether the tree under ``WATCHED`` differs from it.

A page of numbers is only worth its commit: ``python -m bench`` writes docs/benchmarks.md
only from a clean tree (no modified, staged or untracked file under ``WATCHED``), checked
before anything runs and again at the end (the same commit, the same files). Git is only
read (``--no-optional-locks``: the index is not refreshed, another session's git is not
disturbed).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WATCHED = ("imgsync", "bench", "lab")  # the code under test, the harness, the lab it drives


class TreeError(RuntimeError):
    """git could not tell what the tree holds."""


@dataclass(frozen=True)
class TreeState:
    commit: str  # full ``git rev-parse HEAD``
    changed: list[str] = field(default_factory=list)  # ``git status --porcelain`` lines
    digest: str = ""  # sha256 over the paths and contents of every file under WATCHED

    @property
    def clean(self) -> bool:
        return not self.changed

    @property
    def short(self) -> str:
        return self.commit[:7]

    @property
    def label(self) -> str:
        """``1a2b3c4`` or ``1a2b3c4-dirty``: how the page names the code."""
        return self.short if self.clean else f"{self.short}-dirty"

    def describe(self) -> str:
        if self.clean:
            return f"commit {self.commit} (clean: {', '.join(w + '/' for w in WATCHED)})"
        files = "; ".join(line.strip() for line in self.changed[:6])
        more = "; …" if len(self.changed) > 6 else ""
        return (
            f"commit {self.commit} **dirty**: {len(self.changed)} uncommitted file(s) under "
            f"{', '.join(w + '/' for w in WATCHED)} ({files}{more})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeState:
        return cls(str(data["commit"]), list(data.get("changed", [])), str(data.get("digest", "")))


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise TreeError(f"git {' '.join(args)}: {err}") from None
    if done.returncode != 0:
        raise TreeError(f"git {' '.join(args)}: {done.stderr.strip()[:300]}")
    return done.stdout


def _digest(paths: list[str]) -> str:
    """Every file's path and bytes, so an edit made and undone during a run still shows."""
    total = hashlib.sha256()
    for name in sorted(paths):
        total.update(name.encode() + b"\0")
        try:
            total.update(hashlib.sha256((REPO / name).read_bytes()).digest())
        except OSError:
            total.update(b"(missing)")
    return total.hexdigest()


def state() -> TreeState:
    """HEAD, the uncommitted changes under WATCHED (untracked files too; ignored ones not)."""
    commit = _git("rev-parse", "HEAD").strip()
    changed = _git("status", "--porcelain", "--untracked-files=all", "--", *WATCHED)
    files = _git("ls-files", "--cached", "--others", "--exclude-standard", "--", *WATCHED)
    return TreeState(commit, changed.splitlines(), _digest(files.splitlines()))


def changed_during(start: TreeState, end: TreeState) -> str | None:
    """What differs between the start and the end of a run, or None."""
    if start.commit != end.commit:
        return f"HEAD moved from {start.short} to {end.short}"
    if start.changed != end.changed:
        return f"the uncommitted files changed ({len(start.changed)} -> {len(end.changed)})"
    if start.digest != end.digest:
        return "files under " + ", ".join(w + "/" for w in WATCHED) + " were edited"
    return None
