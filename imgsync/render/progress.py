"""Progress on a terminal: one bar per peer x image being sent, then a summary table.

Only ``sync`` on a terminal uses this (not ``--json``, not a pipe, never the daemon). The
bars render on stdout; logs stay on stderr, except while the bars are live *and* stderr is
the same terminal: then log lines are printed through the bars' console, above them, so
neither garbles the other.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from rich.ansi import AnsiDecoder
from rich.console import Console, JustifyMethod
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from imgsync.model import Action, ProgressSink, Report, Result
from imgsync.render import results

_STYLE = {
    Action.LOADED: "green",
    Action.RESTORED: "yellow",
    Action.UNCHANGED: "dim",
    Action.FAILED: "bold red",
}


def wanted(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (stdout) is a terminal that can show live bars."""
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class RichProgress:
    """A :class:`ProgressSink` drawing on a :class:`rich.progress.Progress`. Safe to call
    from the peers' threads: rich's Progress takes its own lock, the task map takes ours.

    The bars go live with the first upload, so what comes before (export, the questions to
    the peers, their log lines) prints as usual; :meth:`close` ends them."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._totals: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._live = False

    def close(self) -> None:
        with self._lock:
            if self._live:
                self.progress.stop()
                self._live = False

    def started(self, peer: str, image: str, total: int) -> None:
        """A bundle upload begins (again, after a retry or for a fallback: same bar)."""
        with self._lock:
            if not self._live:
                self.progress.start()
                self._live = True
            task = self._tasks.get((peer, image))
            self._totals[peer, image] = max(total, 1)
            if task is None:
                self._tasks[peer, image] = self.progress.add_task(
                    f"{peer}  {image}", total=max(total, 1)
                )
            else:
                self.progress.reset(task, total=max(total, 1), description=f"{peer}  {image}")

    def advanced(self, peer: str, image: str, done: int) -> None:
        """``done``: bytes of this upload on the wire so far (compressed, if it is)."""
        with self._lock:
            task = self._tasks.get((peer, image))
        if task is not None:
            self.progress.update(task, completed=done)

    def finished(self, result: Result) -> None:
        key = (result.peer, result.image)
        with self._lock:
            task, total = self._tasks.get(key), self._totals.get(key, 1)
        if task is None:  # nothing was sent for it: no bar
            return
        if result.action is Action.FAILED:
            self.progress.update(task, description=f"{result.peer}  {result.image}  [red]failed")
        else:  # a compressed upload ends short of the bundle's size: show it complete
            self.progress.update(task, completed=total)
        self.progress.stop_task(task)


class Tee:
    """Several sinks told the same thing (the bars and the metrics)."""

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks

    def started(self, peer: str, image: str, total: int) -> None:
        for sink in self.sinks:
            sink.started(peer, image, total)

    def advanced(self, peer: str, image: str, done: int) -> None:
        for sink in self.sinks:
            sink.advanced(peer, image, done)

    def finished(self, result: Result) -> None:
        for sink in self.sinks:
            sink.finished(result)


def tee(*sinks: ProgressSink | None) -> ProgressSink | None:
    """One sink for the given ones that are not ``None`` (``None`` if none is)."""
    present = [sink for sink in sinks if sink is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return Tee(*present)


def make_console(stream: IO[str] | None = None) -> Console:
    return Console(file=stream if stream is not None else sys.stdout, highlight=False)


@contextlib.contextmanager
def bars(console: Console | None) -> Iterator[RichProgress | None]:
    """Live bars on ``console`` for the block's lifetime; ``None`` (and no output at all)
    when ``console`` is ``None``."""
    if console is None:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=8,
    )
    sink = RichProgress(progress)
    with _logs_through(console):
        try:
            yield sink
        finally:
            sink.close()


@contextlib.contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """While the bars are live, print the root logger's lines that would land on the same
    terminal through ``console`` (above the bars); put the streams back afterwards."""
    moved: list[tuple[logging.StreamHandler[Any], IO[str]]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and _same_terminal(
            handler.stream, console.file
        ):
            moved.append((handler, handler.stream))
            handler.setStream(_LogLines(console, handler.stream))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


class _LogLines(io.TextIOBase):
    """A log handler's stream that prints whole lines through ``console``: above the live
    bars, with their colours, long lines left for the terminal to wrap."""

    def __init__(self, console: Console, stream: IO[str]) -> None:
        self.console = console
        self.stream = stream
        self.pending = ""
        self.decoder = AnsiDecoder()

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.console.print(self.decoder.decode_line(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.write("\n")

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _same_terminal(one: Any, other: IO[str]) -> bool:
    try:
        if not (one.isatty() and other.isatty()):
            return False
        return os.path.samestat(os.fstat(one.fileno()), os.fstat(other.fileno()))
    except (AttributeError, OSError, ValueError):
        return False


def print_summary(console: Console, report: Report) -> None:
    """The results as a table, then the verdict line of the plain output."""
    console.print(summary(report))
    console.print(results.sync_lines(report)[-1], markup=False)


def summary(report: Report) -> Table:
    table = Table(header_style="bold")
    errors = any(r.error for r in report.results)  # an error column only when needed
    names = ["peer", "image", "action", "version", "sent", "time"] + (["error"] if errors else [])
    for name in names:
        justify: JustifyMethod = "right" if name in ("sent", "time") else "left"
        table.add_column(name, justify=justify, overflow="fold")  # nothing cut off
    for r in report.results:
        table.add_row(
            r.peer,
            r.image,
            Text(r.action.value, style=_STYLE[r.action]),
            results.short(r.version),
            results.human_bytes(r.bytes_sent),
            f"{r.seconds:.1f}s",
            *([Text(r.error or "", style="red")] if errors else []),
        )
    return table
