"""A threaded TCP relay that counts the bytes on the wire and can drop every connection."""

from __future__ import annotations

import contextlib
import socket
import threading

from .pacing import SharedLink, TokenBucket

BUF_SIZE = 256 * 1024


class Connection:
    """One relayed connection: the client side and the upstream (target) side."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.lock = threading.Lock()
        self.open_halves = 2

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class ByteCountingRelay:
    """Listen on listen_addr:listen_port, forward to target_addr:target_port, count bytes.

    ``bytes_up`` counts client -> target, ``bytes_down`` target -> client.
    """

    def __init__(
        self, listen_addr: str, listen_port: int, target_addr: str, target_port: int
    ) -> None:
        self.listen_addr = listen_addr
        self.listen_port = listen_port
        self.target_addr = target_addr
        self.target_port = target_port
        self._up = 0
        self._down = 0
        self._connections_total = 0
        self._count_lock = threading.Lock()
        self._conns: set[Connection] = set()
        self._conns_lock = threading.Lock()
        self._blocked = False
        self._silent = False
        self._held: list[socket.socket] = []
        self.rate_limit: float | None = None  # bytes/s client -> target; None: unlimited
        self.uplink: SharedLink | None = None  # a rate shared with other relays (client -> target)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"ByteCountingRelay({self.listen_addr}:{self.listen_port} -> "
            f"{self.target_addr}:{self.target_port}, up={self.bytes_up}, "
            f"down={self.bytes_down})"
        )

    # -- counters ---------------------------------------------------------------------------
    @property
    def bytes_up(self) -> int:
        with self._count_lock:
            return self._up

    @property
    def bytes_down(self) -> int:
        with self._count_lock:
            return self._down

    @property
    def bytes_total(self) -> int:
        with self._count_lock:
            return self._up + self._down

    @property
    def connections_total(self) -> int:
        """Connections accepted since start/reset (including blocked ones)."""
        with self._count_lock:
            return self._connections_total

    @property
    def active_connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    def reset(self) -> None:
        with self._count_lock:
            self._up = self._down = self._connections_total = 0

    # -- faults -----------------------------------------------------------------------------
    def drop_all(self) -> int:
        """Close every live connection (a dropped link); returns how many were closed."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        return len(conns)

    def set_blocked(self, blocked: bool) -> None:
        """While blocked, new connections are accepted and closed at once (peer unreachable)."""
        self._blocked = blocked

    def set_silent(self, silent: bool) -> None:
        """While silent, new connections are accepted and never answered (a black hole);
        turning it off (or stop) closes the ones held."""
        self._silent = silent
        if not silent:
            held, self._held = self._held, []
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._listener is not None:
            return
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.listen_addr, self.listen_port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.2)
        self.listen_port = int(listener.getsockname()[1])
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"relay-accept-{self.listen_port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop listening and drop every connection.  Idempotent."""
        self._stopping.set()
        thread, self._accept_thread = self._accept_thread, None
        if thread is not None:
            thread.join(5)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.drop_all()
        self.set_silent(False)

    def __enter__(self) -> ByteCountingRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            with self._count_lock:
                self._connections_total += 1
            if self._blocked:
                client.close()
                continue
            if self._silent:
                self._held.append(client)
                continue
            threading.Thread(
                target=self._open,
                args=(client,),
                daemon=True,
                name=f"relay-open-{self.listen_port}",
            ).start()

    def _open(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection((self.target_addr, self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(client, upstream)
        with self._conns_lock:
            if self._stopping.is_set():
                conn.close()
                return
            self._conns.add(conn)
        threading.Thread(
            target=self._pump,
            args=(conn, client, upstream, True),
            daemon=True,
            name=f"relay-up-{self.listen_port}",
        ).start()
        self._pump(conn, upstream, client, False)

    def _pump(self, conn: Connection, src: socket.socket, dst: socket.socket, up: bool) -> None:
        buf = bytearray(BUF_SIZE)
        view = memoryview(buf)
        bucket = TokenBucket(burst_seconds=0.1)  # credit never builds up past 0.1 s
        try:
            while True:
                n = src.recv_into(buf)
                if n == 0:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                    break
                dst.sendall(view[:n])
                rate = self.rate_limit if up else None
                if rate:
                    bucket.take(n, rate)
                uplink = self.uplink if up else None
                if uplink is not None:
                    uplink.take(n)
                self._add(n, up)
        except OSError:
            conn.close()  # a reset on one side resets the other
        finally:
            self._release(conn)

    def _add(self, n: int, up: bool) -> None:
        """Count ``n`` bytes moved in one direction."""
        with self._count_lock:
            if up:
                self._up += n
            else:
                self._down += n

    def _release(self, conn: Connection) -> None:
        """One direction of ``conn`` has ended; the second one closes and forgets it."""
        with conn.lock:
            conn.open_halves -= 1
            done = conn.open_halves == 0
        if done:
            conn.close()
            with self._conns_lock:
                self._conns.discard(conn)
