"""Measuring one run: wall time, a process's own peak RSS and CPU time, bytes on the relay.

Every child is started with :class:`subprocess.Popen` and reaped with ``os.wait4`` so the
kernel hands back *its* rusage, not the sum over all our children. Its peak RSS needs care:
Linux starts a child's ``ru_maxrss`` at the high-water mark of the memory it was forked
(or vforked) from, so a child of this benchmark "peaks" at least at the benchmark's own
peak. So :class:`PeakWatch` also reads the child's ``VmHWM`` (/proc/PID/status, the peak
of its own memory since its exec) every 10 ms while it runs; ``ru_maxrss`` is taken only
when it is above the benchmark's own peak (then it is the child's).
A watchdog kills a child that outlives its timeout; :func:`kill_all` ends whatever we
started that is still running (by PID, never by name).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_live: dict[int, subprocess.Popen[bytes]] = {}
_watches: dict[int, PeakWatch] = {}
_live_lock = threading.Lock()
CLK_TCK = os.sysconf("SC_CLK_TCK")
EN_DASH = "\u2013"  # between the lowest and highest of a range


class BenchError(RuntimeError):
    """A measured command failed or a check after it did not hold."""


@dataclass
class Finished:
    """How one child process ended."""

    argv: list[str]
    code: int
    maxrss_kib: int
    cpu_seconds: float  # user + system, the process's own
    stdout: str = ""
    stderr: str = ""

    def check(self, what: str) -> Finished:
        if self.code != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-8:])
            raise BenchError(f"{what} exited {self.code}: {' '.join(self.argv)}\n{tail}")
        return self


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    inherited = vm_hwm("self") or 0  # what the child's ru_maxrss starts from
    proc = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    with _live_lock:
        _live[proc.pid] = proc
        _watches[proc.pid] = PeakWatch(proc.pid, inherited)
    return proc


def vm_hwm(pid: int | str) -> int | None:
    """The peak resident memory (KiB) of process ``pid`` since its exec; None once it is
    gone (or exited: a zombie has no memory left)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakWatch:
    """Reads a child's VmHWM every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, pid: int, inherited: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.inherited = inherited
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while True:
            value = vm_hwm(self.pid)
            if value is not None:
                self.peak = max(self.peak, value)
            if self._stop.wait(interval):
                return

    def stop(self, ru_maxrss: int) -> int:
        """The child's own peak RSS (KiB), given the ``ru_maxrss`` that wait4 reported."""
        self._stop.set()
        self._thread.join(1)
        if ru_maxrss > self.inherited:
            return ru_maxrss  # above what it inherited: the child's own
        return self.peak  # the last VmHWM read before it exited (0: it never was read)


def reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, float]:
    """Wait for ``proc`` with ``os.wait4``: (exit code, its peak RSS in KiB, its CPU seconds).

    Past ``timeout`` seconds it is killed (exit code then negative)."""
    watchdog = threading.Timer(timeout, _kill, args=(proc,))
    watchdog.daemon = True
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
        with _live_lock:
            _live.pop(proc.pid, None)
            watch = _watches.pop(proc.pid, None)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    peak = watch.stop(int(usage.ru_maxrss)) if watch is not None else int(usage.ru_maxrss)
    return code, peak, float(usage.ru_utime + usage.ru_stime)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)


def kill_all() -> None:
    """Kill every child we started that was not reaped yet (Ctrl-C, a failure)."""
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        if proc.returncode is None:
            _kill(proc)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    stdin: Path | None = None,
) -> Finished:
    """Run ``argv`` to the end (stdin from the file ``stdin``, else none), output captured
    in temp files (no pipe to fill up)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        open(stdin or os.devnull, "rb") as feed,
    ):
        proc = spawn(argv, stdin=feed, stdout=out, stderr=err, env=env)
        if on_start is not None:
            on_start(proc.pid)
        code, rss, cpu = reap(proc, timeout)
        out.seek(0)
        err.seek(0)
        return Finished(
            list(argv),
            code,
            rss,
            cpu,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def pipeline(
    left: Sequence[str], right: Sequence[str], *, timeout: float = 1800
) -> tuple[Finished, Finished]:
    """``left | right``, both reaped separately (each with its own peak RSS)."""
    with (
        tempfile.TemporaryFile() as left_err,
        tempfile.TemporaryFile() as right_out,
        tempfile.TemporaryFile() as right_err,
    ):
        producer = spawn(left, stdout=subprocess.PIPE, stderr=left_err)
        try:
            consumer = spawn(right, stdin=producer.stdout, stdout=right_out, stderr=right_err)
        except BaseException:
            _kill(producer)
            reap(producer, 10)
            raise
        finally:
            if producer.stdout is not None:
                producer.stdout.close()  # the consumer holds the only read end now
        left_code, left_rss, left_cpu = reap(producer, timeout)
        right_code, right_rss, right_cpu = reap(consumer, timeout)
        texts = []
        for handle in (left_err, right_out, right_err):
            handle.seek(0)
            texts.append(handle.read().decode("utf-8", "replace"))
    return (
        Finished(list(left), left_code, left_rss, left_cpu, "", texts[0]),
        Finished(list(right), right_code, right_rss, right_cpu, texts[1], texts[2]),
    )


def first_output(argv: Sequence[str], *, timeout: float = 30) -> float:
    """Seconds from starting ``argv`` (stdin a pipe) until the first byte on its stdout;
    then its stdin is closed and it is reaped (killed if it does not end in ``timeout``)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdin is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        first = os.read(proc.stdout.fileno(), 1) if ready else b""
        seconds = time.monotonic() - t0
        proc.stdin.close()
        drain = threading.Thread(target=proc.stdout.read, daemon=True)  # never blocks it
        drain.start()
        code, _, _ = reap(proc, timeout)
        drain.join(5)
        proc.stdout.close()
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip()[-600:]
    if not first:
        why = "no output" if not ready else f"exit {code} before any output"
        raise BenchError(f"{' '.join(argv)}: {why} within {timeout:.0f}s\n{tail}")
    return seconds


def load_average() -> float:
    """The 1-minute load average, from /proc/loadavg."""
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Spread:
    """The median of several measurements, with their lowest and highest."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``7.73 (7.51\u20138.02)``: median (lowest to highest); one value says so."""
        middle = f"{self.median:.{digits}f}{unit}"
        if self.count == 1:
            return f"{middle} (1 run)"
        return f"{middle} ({self.low:.{digits}f}{EN_DASH}{self.high:.{digits}f})"


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (its threads included), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def log_events(stderr: str) -> list[dict[str, Any]]:
    """imgsync's JSON log lines (stderr, not a terminal), each with ``ts`` as epoch seconds."""
    events = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                event["ts"] = datetime.datetime.fromisoformat(stamp).timestamp()
        events.append(event)
    return events
