"""sd_notify against real AF_UNIX datagram sockets: exact datagrams, and silence when it must."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsync.adapters import systemd


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests may themselves run under systemd: never talk to the real socket."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound to a path in tmp_path, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    assert len(os.fsencode(path)) < 108, f"socket path too long for sun_path: {path}"
    sock = _receiver(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()


def _nothing_queued(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)
    return False


def test_fields_go_out_as_one_newline_separated_datagram(receiver: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=watching 2 images") is True
    assert receiver.recv(4096) == b"READY=1\nSTATUS=watching 2 images"
    assert _nothing_queued(receiver)


def test_the_convenience_calls_send_exactly_their_assignments(receiver: socket.socket) -> None:
    assert systemd.ready("up: 3 peers") is True
    assert receiver.recv(4096) == b"READY=1\nSTATUS=up: 3 peers"
    assert systemd.ready() is True
    assert receiver.recv(4096) == b"READY=1"
    assert systemd.status("cycle 7: 2 loaded, 0 failed") is True
    assert receiver.recv(4096) == b"STATUS=cycle 7: 2 loaded, 0 failed"
    assert systemd.stopping() is True
    assert receiver.recv(4096) == b"STOPPING=1"
    assert systemd.stopping("SIGTERM: finishing the cycle") is True
    assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=SIGTERM: finishing the cycle"
    assert systemd.watchdog() is True
    assert receiver.recv(4096) == b"WATCHDOG=1"


def test_reloading_carries_the_monotonic_clock_in_microseconds(receiver: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = receiver.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC" and value.isdigit()
    assert before <= int(value) <= after

    assert systemd.reloading("re-reading /etc/imgsync/imgsync.toml") is True
    lines = receiver.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert lines[2:] == ["STATUS=re-reading /etc/imgsync/imgsync.toml"]


def test_a_newline_in_a_value_cannot_inject_another_assignment(receiver: socket.socket) -> None:
    assert systemd.status("peer edge-1 failed\nREADY=1\r\nSTOPPING=1") is True
    assert receiver.recv(4096) == b"STATUS=peer edge-1 failed READY=1  STOPPING=1"


def test_non_ascii_status_is_sent_as_utf8(receiver: socket.socket) -> None:
    assert systemd.status("synced → 3 peers, 50 µs") is True
    assert receiver.recv(4096) == "STATUS=synced → 3 peers, 50 µs".encode()


def test_an_abstract_namespace_socket_is_reached_through_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"imgsync-test-{secrets.token_hex(8)}"
    sock = _receiver(b"\0" + name.encode())
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
        assert systemd.ready("abstract") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=abstract"
    finally:
        sock.close()


def test_unset_variable_is_a_silent_no_op(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify("READY=1") is False
    assert systemd.ready("x") is False
    assert systemd.status("x") is False
    assert systemd.stopping() is False
    assert systemd.reloading() is False
    assert systemd.watchdog() is False
    assert _nothing_queued(receiver)


def test_empty_variable_and_no_fields_send_nothing(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert systemd.notify() is False
    assert _nothing_queued(receiver)
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert systemd.notify("READY=1") is False
    assert _nothing_queued(receiver)


@pytest.mark.parametrize(
    "value",
    [
        "relative/notify.sock",  # systemd only hands out absolute or abstract addresses
        "@",  # an abstract name needs at least one character
        "vsock:2:1234",  # systemd >= 253 can use AF_VSOCK; not supported here
    ],
)
def test_unsupported_addresses_return_false(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.notify("READY=1") is False


def test_a_socket_path_that_does_not_exist_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone" / "notify"))
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog() is False


def test_an_abstract_name_nobody_bound_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"@imgsync-test-unbound-{secrets.token_hex(8)}")
    assert systemd.notify("READY=1") is False


def test_a_path_that_is_not_a_datagram_socket_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    monkeypatch.setenv("NOTIFY_SOCKET", str(plain))
    assert systemd.notify("READY=1") is False

    stream_path = tmp_path / "stream"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        stream.bind(str(stream_path))
        stream.listen(1)
        monkeypatch.setenv("NOTIFY_SOCKET", str(stream_path))
        assert systemd.notify("READY=1") is False


def test_a_path_too_long_for_sun_path_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/" + "x" * 200)
    assert systemd.notify("READY=1") is False


def test_a_receiver_that_stopped_reading_cannot_block_the_sender(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Datagrams to a full queue block; the send gives up after SEND_TIMEOUT and says False."""
    monkeypatch.setattr(systemd, "SEND_TIMEOUT", 0.05)
    assert systemd.watchdog() is True
    for _ in range(5000):
        started = time.monotonic()
        if not systemd.watchdog():
            break
    else:
        pytest.fail("the receiver's queue never filled up")
    assert time.monotonic() - started < 2
    assert receiver.recv(4096) == b"WATCHDOG=1"


# --- watchdog_interval --------------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert systemd.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_USEC", "3")
    assert systemd.watchdog_interval() == 1.5e-6


def test_watchdog_interval_is_none_without_watchdog_usec() -> None:
    assert systemd.watchdog_interval() is None


def test_watchdog_pid_of_this_process_enables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 10.0


def test_watchdog_pid_of_another_process_disables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))
    assert os.getppid() != os.getpid()
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize("pid", ["", "abc", "-1", " 1", "0x10", "1.0"])
def test_an_unparsable_watchdog_pid_disables_it(monkeypatch: pytest.MonkeyPatch, pid: str) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", pid)
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "abc", "1.5", " 100", "1_000", "²"])
def test_an_invalid_watchdog_usec_disables_it(monkeypatch: pytest.MonkeyPatch, usec: str) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert systemd.watchdog_interval() is None
