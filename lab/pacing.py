"""The token bucket that paces a relay's upload direction: the lab's relay and the
benchmark's shaped links both use it, so a "10 MB/s" means the same in a test and on the
benchmark page.

Bytes pass at ``rate`` per second with at most a burst ahead of it: a fixed number of bytes
(the benchmark: a queue on a real link), or so many seconds of the current rate (the lab).
Idle time never banks more credit than that.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """:meth:`take` sleeps until ``n`` more bytes may pass at ``rate``."""

    def __init__(
        self, burst_bytes: float | None = None, burst_seconds: float = 0.1, full: bool = False
    ) -> None:
        self.burst_bytes = burst_bytes
        self.burst_seconds = burst_seconds
        self.tokens = float(burst_bytes or 0) if full else 0.0
        self.last = time.monotonic()

    def _burst(self, rate: float) -> float:
        return self.burst_bytes if self.burst_bytes is not None else rate * self.burst_seconds

    def _refill(self, rate: float) -> None:
        now = time.monotonic()
        self.tokens = min(self._burst(rate), self.tokens + (now - self.last) * rate)
        self.last = now

    def take(self, n: int, rate: float) -> None:
        self._refill(rate)
        if self.tokens < n:
            time.sleep((n - self.tokens) / rate)
            self._refill(rate)
        self.tokens -= n


class SharedLink:
    """One link's rate, shared by every connection that sends through it (a source's uplink):
    :meth:`take` paces the bytes of all of them together, in the order they come."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._bucket = TokenBucket(burst_seconds=0.1)
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            self._bucket.take(n, self.rate)
