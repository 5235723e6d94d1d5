"""The benchmark's links: a relay that paces the upload with a token bucket, can delay every
chunk in both directions (a round trip), and keeps the first bytes of each connection (the
SSH key exchange offers, to name the cipher each tool used).

Pacing: the token bucket of :mod:`lab.pacing`, which the lab's relay uses too, with a
burst of ``BURST`` bytes, as on a real link (a queue, not a memory of past idleness; the
lab's relay allows 0.1 s of its rate, 1.25 MB at 12.5 MB/s, which would let a small thin
upload pass unpaced).

Latency: with ``delay`` set, every chunk read from one side is written to the other
``delay`` seconds later (a delay line per direction, bounded to ``QUEUE_LIMIT`` bytes; the
reader waits when it is full), and a new connection reaches the server one round trip
late (TCP's handshake). ``delay`` 10 ms each way is a 20 ms round trip; it only applies to
connections opened after it was set. Pacing happens before the delay line, so a
paced upload is 12.5 MB/s *and* 10 ms late, as on a real 100 Mbit/s link.

Same counters and faults as the lab's relay; only ``_pump`` differs. It is swapped in for a
started lab's relays on the same address and port (:func:`install`), so configs and
known_hosts stay valid. Only loopback addresses are accepted: this never shapes a real
interface.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass

from lab import Lab, Peer
from lab.pacing import TokenBucket
from lab.relay import BUF_SIZE, ByteCountingRelay, Connection

BURST = 256 * 1024  # bytes: the most a paced connection may send ahead of its rate
SHAPED_RATE = 12.5e6  # bytes/s: 100 Mbit/s
MAX_DELAY = 0.5  # seconds one way: a bound, not a setting
QUEUE_LIMIT = 4 * 1024 * 1024  # bytes a delay line holds at most (per direction)
HEAD_BYTES = 16 * 1024  # the first bytes of each direction kept (banner + KEXINIT)
MAX_HEADS = 512  # connections whose first bytes are kept (the oldest go first)


@dataclass(frozen=True)
class Link:
    """A link the benchmark runs on: its name (in the tables), pace and one-way delay."""

    name: str
    rate: float | None  # bytes/s, source -> peer; None: unpaced
    delay: float = 0.0  # seconds, each direction

    @property
    def rtt_ms(self) -> float:
        return 2000 * self.delay

    def floor_seconds(self, size: int) -> float | None:
        """The least time ``size`` bytes take at this link's rate (None: unpaced)."""
        return size / self.rate if self.rate else None


class _DelayLine:
    """Chunks in order, each released at its due time; holds at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque[tuple[bytes | None, float]] = collections.deque()
        self._held = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, data: bytes | None, due: float) -> bool:
        """Queue ``data`` (None: end of stream); False once the line is closed."""
        size = len(data) if data else 0
        with self._cond:
            while self._held and self._held + size > self.limit and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append((data, due))
            self._held += size
            self._cond.notify_all()
            return True

    def get(self) -> tuple[bytes | None, float] | None:
        """The next chunk and its due time; None once closed."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            data, due = self._items.popleft()
            self._held -= len(data) if data else 0
            self._cond.notify_all()
            return data, due

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class TokenBucketRelay(ByteCountingRelay):
    """ByteCountingRelay with ``rate_limit`` enforced by a token bucket of ``BURST`` bytes,
    an optional one-way ``delay``, and the first bytes of every connection kept."""

    def __init__(
        self, listen_addr: str, listen_port: int, target_addr: str, target_port: int
    ) -> None:
        super().__init__(listen_addr, listen_port, target_addr, target_port)
        self.delay = 0.0
        self._heads: collections.deque[tuple[bytearray, bytearray]] = collections.deque(
            maxlen=MAX_HEADS
        )
        self._heads_lock = threading.Lock()

    # -- the first bytes of each connection -------------------------------------------------
    def heads(self) -> list[tuple[bytes, bytes]]:
        """(client -> server, server -> client) first bytes of each connection since reset."""
        with self._heads_lock:
            return [(bytes(up), bytes(down)) for up, down in self._heads]

    def reset(self) -> None:
        super().reset()
        with self._heads_lock:
            self._heads.clear()

    def _head(self, conn: Connection, up: bool) -> bytearray:
        """This connection's first bytes in one direction (kept on the connection itself:
        both pumps of a connection share one pair)."""
        with self._heads_lock:
            pair: tuple[bytearray, bytearray] | None = getattr(conn, "bench_heads", None)
            if pair is None:
                pair = (bytearray(), bytearray())
                conn.bench_heads = pair  # type: ignore[attr-defined]
                self._heads.append(pair)
        return pair[0] if up else pair[1]

    def _count(self, head: bytearray, data: memoryview | bytes, up: bool) -> None:
        if len(head) < HEAD_BYTES:
            head += data[: HEAD_BYTES - len(head)]
        self._add(len(data), up)

    # -- pumping ----------------------------------------------------------------------------
    def _open(self, client: socket.socket) -> None:
        delay = min(self.delay, MAX_DELAY)
        if delay > 0:
            time.sleep(2 * delay)  # TCP's own handshake: one round trip before any data
        super()._open(client)

    def _pump(self, conn: Connection, src: socket.socket, dst: socket.socket, up: bool) -> None:
        head = self._head(conn, up)
        delay = min(self.delay, MAX_DELAY)
        try:
            if delay > 0:
                self._pump_delayed(conn, src, dst, up, head, delay)
            else:
                self._pump_direct(src, dst, up, head)
        except OSError:
            conn.close()  # a reset on one side resets the other
        finally:
            self._release(conn)

    def _read(self, src: socket.socket, buf: bytearray, up: bool, bucket: TokenBucket) -> int:
        """One read, paced when this direction has a rate: returns its size (0 at EOF)."""
        rate = self.rate_limit if up else None
        # never read more than the bucket can ever hold: a read is sent at once
        n = src.recv_into(buf, min(BUF_SIZE, BURST) if rate else BUF_SIZE)
        if n and rate:
            bucket.take(n, rate)
        return n

    def _pump_direct(
        self, src: socket.socket, dst: socket.socket, up: bool, head: bytearray
    ) -> None:
        buf = bytearray(BUF_SIZE)
        view = memoryview(buf)
        bucket = _bucket()
        while True:
            n = self._read(src, buf, up, bucket)
            if n == 0:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                return
            dst.sendall(view[:n])
            self._count(head, view[:n], up)

    def _pump_delayed(
        self,
        conn: Connection,
        src: socket.socket,
        dst: socket.socket,
        up: bool,
        head: bytearray,
        delay: float,
    ) -> None:
        """Read here, write from a second thread ``delay`` seconds after each read."""
        line = _DelayLine(QUEUE_LIMIT)
        writer = threading.Thread(
            target=self._deliver,
            args=(conn, line, dst, up, head),
            daemon=True,
            name=f"relay-delay-{self.listen_port}",
        )
        writer.start()
        buf = bytearray(BUF_SIZE)
        bucket = _bucket()
        try:
            while True:
                n = self._read(src, buf, up, bucket)
                if not line.put(bytes(buf[:n]) if n else None, time.monotonic() + delay) or not n:
                    break
        except OSError:
            line.close()
            raise
        finally:
            writer.join()

    def _deliver(
        self, conn: Connection, line: _DelayLine, dst: socket.socket, up: bool, head: bytearray
    ) -> None:
        try:
            while (item := line.get()) is not None:
                data, due = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on, late too
                    return
                dst.sendall(data)
                self._count(head, data, up)
        except OSError:
            conn.close()
        finally:
            line.close()


def _bucket() -> TokenBucket:
    """The shaped links' bucket: ``BURST`` bytes, full at the start (lab/pacing.py)."""
    return TokenBucket(burst_bytes=BURST, full=True)


def install(lab: Lab) -> None:
    """Replace every started peer relay by a TokenBucketRelay on the same address:port."""
    for peer in lab.peers:
        old = peer.relay
        if isinstance(old, TokenBucketRelay):
            continue
        for address in (old.listen_addr, old.target_addr):
            if not ipaddress.ip_address(address).is_loopback:
                raise ValueError(f"{peer.name}: the bench shapes loopback relays only ({address})")
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


def relay(peer: Peer) -> TokenBucketRelay:
    """The peer's relay, as :func:`install` left it."""
    found = peer.relay
    if not isinstance(found, TokenBucketRelay):
        raise RuntimeError("shaping.install(lab) first")
    return found


def shape(lab: Lab, link: Link) -> None:
    """Pace every peer's upload direction at ``link.rate`` and delay both directions by
    ``link.delay`` (for connections opened from now on)."""
    if not 0 <= link.delay <= MAX_DELAY:
        raise ValueError(f"one-way delay {link.delay}s: 0 to {MAX_DELAY}s")
    for peer in lab.peers:
        relay(peer).rate_limit = link.rate
        relay(peer).delay = link.delay
