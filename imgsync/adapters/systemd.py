"""The sd_notify protocol, hand-written: tell systemd how the service is doing.

A service started with ``Type=notify`` (or with ``WatchdogSec=``) finds the path of a datagram
socket in ``$NOTIFY_SOCKET``: an absolute file-system path, or a name in Linux's abstract
namespace when it starts with ``@`` (the ``@`` stands for a leading NUL byte). A message is
one ``AF_UNIX``/``SOCK_DGRAM`` datagram of newline-separated ``KEY=VALUE`` assignments, e.g.
``READY=1\\nSTATUS=watching 3 images``. The ones used here:

``READY=1``
    start-up is finished; ``systemctl start`` returns (and, after a reload, the reload is done).
``STATUS=…``
    one line shown by ``systemctl status``.
``STOPPING=1``
    the service is shutting down.
``RELOADING=1`` + ``MONOTONIC_USEC=…``
    a reload (SIGHUP) began; it ends with the next ``READY=1``. systemd >= 253 wants the
    ``CLOCK_MONOTONIC`` time in µs with it for ``Type=notify-reload``; older ones ignore it.
``WATCHDOG=1``
    keep-alive; with ``WatchdogSec=`` systemd kills a service that stops sending it. systemd
    passes the interval in ``$WATCHDOG_USEC`` (and the pid it is meant for in
    ``$WATCHDOG_PID``); :func:`watchdog_interval` says how often to ping.

Outside systemd (``$NOTIFY_SOCKET`` unset) every call is a no-op returning ``False``. A
failure to send is never raised either: a service must not die because systemd's socket
hiccuped. Only ``systemd`` itself reads these messages, by default only from the main pid.
"""

from __future__ import annotations

import os
import socket
import time

from imgsync import log

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

# A datagram to a receiver whose queue is full blocks; never wait longer than this for
# systemd (a wedged PID 1 must not wedge the daemon's watchdog or shutdown path).
SEND_TIMEOUT = 2.0

_log = log.get("imgsync.systemd")


def _address(value: str) -> bytes | None:
    """The ``sockaddr_un`` path for ``$NOTIFY_SOCKET``, or None when it is not one we support."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None  # relative paths are invalid; "vsock:…" (systemd >= 253) is not supported


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"KEY=VALUE"`` each) as one datagram to ``$NOTIFY_SOCKET``.

    Returns True when the datagram was sent, False when there is nothing to send, the
    variable is unset, or sending failed. A newline inside a field is replaced by a space,
    so a value (a status text, an error message) cannot inject another assignment.
    """
    value = os.environ.get(NOTIFY_SOCKET)
    if not value or not fields:
        return False
    address = _address(value)
    if address is None:
        _log.debug("sd_notify: unsupported socket address", notify_socket=value)
        return False
    payload = "\n".join(f.replace("\r", " ").replace("\n", " ") for f in fields)
    data = payload.encode("utf-8", errors="replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sent = sock.send(data)
    except OSError as err:  # includes TimeoutError
        _log.debug("sd_notify: send failed", notify_socket=value, error=str(err))
        return False
    return sent == len(data)


def ready(status: str | None = None) -> bool:
    """Start-up (or a reload) is complete; optionally with a status line."""
    if status is None:
        return notify("READY=1")
    return notify("READY=1", f"STATUS={status}")


def status(text: str) -> bool:
    """Set the line ``systemctl status`` shows."""
    return notify(f"STATUS={text}")


def stopping(status: str | None = None) -> bool:
    """The service began to shut down."""
    if status is None:
        return notify("STOPPING=1")
    return notify("STOPPING=1", f"STATUS={status}")


def reloading(status: str | None = None) -> bool:
    """A reload began (send :func:`ready` when it is done), stamped with CLOCK_MONOTONIC."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = ["RELOADING=1", f"MONOTONIC_USEC={usec}"]
    if status is not None:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def watchdog() -> bool:
    """Keep-alive ping for ``WatchdogSec=``."""
    return notify("WATCHDOG=1")


def _decimal(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def watchdog_interval() -> float | None:
    """How often to call :func:`watchdog`, in seconds: half of ``$WATCHDOG_USEC``.

    None when the watchdog is off: ``$WATCHDOG_USEC`` unset, not a positive integer, or
    ``$WATCHDOG_PID`` set to anything but this process's pid (the variables were inherited
    from a parent they were meant for).
    """
    raw_usec = os.environ.get(WATCHDOG_USEC)
    if raw_usec is None:
        return None
    usec = _decimal(raw_usec)
    if not usec:
        return None
    raw_pid = os.environ.get(WATCHDOG_PID)
    if raw_pid is not None and _decimal(raw_pid) != os.getpid():
        return None
    return usec / 2 / 1_000_000
