"""A relay whose upload pacing is a token bucket with a small burst.

The lab's :class:`~lab.relay.ByteCountingRelay` paces the upload direction by comparing
the bytes moved with the time since the *connection* opened. A connection that sat idle
first (an SSH session that connects, asks a few questions, then uploads) has banked that
idle time, and its next ``idle x rate`` bytes pass unpaced: after 2 s of questions at
12.5 MB/s, 25 MB go at loopback speed. That favours a tool that talks before it sends,
and a small thin upload can fit in the credit entirely. Here the credit is capped at
``BURST`` bytes, as on a real link (a queue, not a memory of past idleness).

Same counters and faults as the lab's relay; only ``_pump`` differs. It is swapped in for a
started lab's relays on the same address and port (:func:`install`), so configs and
known_hosts stay valid.
"""

from __future__ import annotations

import contextlib
import socket
import time

from lab import Lab
from lab.relay import BUF_SIZE, ByteCountingRelay, _Conn

BURST = 256 * 1024  # bytes: the most a paced connection may send ahead of its rate
SHAPED_RATE = 12.5e6  # bytes/s: 100 Mbit/s


class TokenBucketRelay(ByteCountingRelay):
    """ByteCountingRelay with ``rate_limit`` enforced by a token bucket of ``BURST`` bytes."""

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, up: bool) -> None:
        buf = bytearray(BUF_SIZE)
        view = memoryview(buf)
        tokens, last = float(BURST), time.monotonic()
        try:
            while True:
                rate = self.rate_limit if up else None
                # never read more than the bucket can ever hold: a read is sent at once
                limit = min(BUF_SIZE, BURST) if rate else BUF_SIZE
                n = src.recv_into(buf, limit)
                if n == 0:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                    break
                if rate:
                    now = time.monotonic()
                    tokens = min(float(BURST), tokens + (now - last) * rate)
                    last = now
                    if tokens < n:
                        time.sleep((n - tokens) / rate)
                        now = time.monotonic()
                        tokens = min(float(BURST), tokens + (now - last) * rate)
                        last = now
                    tokens -= n
                dst.sendall(view[:n])
                with self._count_lock:
                    if up:
                        self._up += n
                    else:
                        self._down += n
        except OSError:
            conn.close()  # a reset on one side resets the other
        finally:
            with conn.lock:
                conn.open_halves -= 1
                done = conn.open_halves == 0
            if done:
                conn.close()
                with self._conns_lock:
                    self._conns.discard(conn)


def install(lab: Lab) -> None:
    """Replace every started peer relay by a TokenBucketRelay on the same address:port."""
    for peer in lab.peers:
        old = peer.relay
        if isinstance(old, TokenBucketRelay):
            continue
        old.stop()
        new = TokenBucketRelay(old.listen_addr, old.listen_port, old.target_addr, old.target_port)
        for attempt in range(50):  # the old listener's port is free again within moments
            try:
                new.start()
                break
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        peer.relay = new


def shape(lab: Lab, rate: float | None) -> None:
    """Pace every peer's upload direction at ``rate`` bytes/s (None: unlimited)."""
    for peer in lab.peers:
        peer.relay.rate_limit = rate
