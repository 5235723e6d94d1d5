"""The relays' bytes over time, sampled during a run: when 99% had passed, and the rate."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from lab import ByteCountingRelay

from .measure import proc_cpu_seconds


@dataclass
class Sample:
    t: float  # wall clock (time.time()), comparable with log and event timestamps
    up: list[int]  # bytes_up of each relay
    cpu: float | None  # CPU seconds of the watched process so far


@dataclass
class Window:
    """The bulk of an upload: from 1% to 99% of the bytes the relays carried up."""

    start: float
    end: float
    moved: int

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-6)

    @property
    def rate(self) -> float:
        return self.moved / self.seconds


@dataclass
class RelaySampler:
    """Sample the relays' upload counters (and a process's CPU time) every ``interval``."""

    relays: list[ByteCountingRelay]
    interval: float = 0.01
    pid: int | None = None
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RelaySampler:
        self._take()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._take()

    def watch(self, pid: int) -> None:
        self.pid = pid

    def _take(self) -> None:
        cpu = proc_cpu_seconds(self.pid) if self.pid else None
        self.samples.append(Sample(time.time(), [r.bytes_up for r in self.relays], cpu))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def window(
        self, low: float = 0.01, high: float = 0.99, min_bytes: int = 4 << 20
    ) -> Window | None:
        """The bulk of the upload, summed over the relays; None if less than ``min_bytes``."""
        totals = [(s.t, sum(s.up)) for s in self.samples]
        if not totals:
            return None
        base, final = totals[0][1], totals[-1][1]
        moved = final - base
        if moved < min_bytes:
            return None
        start = next((t, v) for t, v in totals if v - base >= low * moved)
        end = next((t, v) for t, v in totals if v - base >= high * moved)
        if end[0] <= start[0]:
            return None
        return Window(start[0], end[0], end[1] - start[1])

    def cpu_share(self, start: float, end: float) -> float | None:
        """CPU seconds the watched process used per wall second between ``start`` and ``end``."""
        inside = [s for s in self.samples if s.cpu is not None and start <= s.t <= end]
        if len(inside) < 2 or inside[-1].t - inside[0].t < 0.05:
            return None
        first, last = inside[0], inside[-1]
        assert first.cpu is not None and last.cpu is not None
        return (last.cpu - first.cpu) / (last.t - first.t)
