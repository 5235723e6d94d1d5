"""The daemon's kept sessions: reused while they answer, replaced when they do not, never
reused after a failure, a settings change or too long idle; agentless links are not kept."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from imgsync.config import PeerSettings
from imgsync.errors import TransportError
from imgsync.source import linkpool
from imgsync.source.linkpool import LinkPool

STOP = threading.Event()


def settings(name: str = "edge-1", **changes: Any) -> PeerSettings:
    fields: dict[str, Any] = {
        "name": name, "host": "192.0.2.1", "port": 22, "inbox": "/var/lib/imgsync/inbox",
        "apply_argv": ("imgsync", "apply"), "user": "imgsync", "identity_file": "/k",
        "known_hosts": "/kh", "connect_timeout": 5.0, "io_timeout": 60.0,
        "apply_timeout": 600.0, "retries": 2, "retry_wait": 2.0, "passphrase_credential": None,
        "compression": "none", "compression_level": 3, "max_rate": None,
        "trust_unknown_hosts": False, "mode": "agent", "docker_argv": ("docker",), "images": None,
    }  # fmt: skip
    fields.update(changes)
    return PeerSettings(**fields)


class FakeLink:
    engine_version, store = "26.1.5", "containerd"

    def __init__(self) -> None:
        self.closed, self.dead, self.pings = False, False, 0

    def ping(self, timeout: float) -> None:
        self.pings += 1
        if self.dead:
            raise TransportError("peer edge-1: its session ended during ping")

    def inventory(self, images: Any) -> Any:
        if self.dead:
            raise TransportError("peer edge-1: its session ended during inventory")
        return "inventory"

    def close(self) -> None:
        self.closed = True


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[FakeLink]:
    links: list[FakeLink] = []

    def fake_open(peer: PeerSettings, export_dir: Path, stop: threading.Event) -> FakeLink:
        links.append(FakeLink())
        return links[-1]

    monkeypatch.setattr(linkpool, "open_link", fake_open)
    return links


def cycle(pool: LinkPool, peer: PeerSettings) -> Any:
    link = pool.connect(peer, Path("/export"), STOP)
    try:
        return link.inventory(["acme/web:1"])
    finally:
        link.close()


def test_a_second_cycle_reuses_the_session_after_one_ping(opened: list[FakeLink]) -> None:
    pool = LinkPool(keep=900)
    cycle(pool, settings())
    cycle(pool, settings())
    assert len(opened) == 1 and opened[0].pings == 1 and not opened[0].closed


def test_a_session_that_does_not_answer_its_ping_is_closed_and_replaced(
    opened: list[FakeLink],
) -> None:
    pool = LinkPool(keep=900)
    cycle(pool, settings())
    opened[0].dead = True
    cycle(pool, settings())
    assert len(opened) == 2 and opened[0].closed and not opened[1].closed


def test_a_session_that_failed_in_a_cycle_is_closed_not_kept(opened: list[FakeLink]) -> None:
    pool = LinkPool(keep=900)
    link = pool.connect(settings(), Path("/export"), STOP)
    opened[0].dead = True
    with pytest.raises(TransportError):
        link.inventory(["acme/web:1"])
    link.close()
    assert opened[0].closed and len(pool) == 0


def test_changed_settings_or_a_long_idle_mean_a_new_session(opened: list[FakeLink]) -> None:
    clock = Clock()
    pool = LinkPool(keep=900, clock=clock)
    cycle(pool, settings())
    cycle(pool, settings(port=2222))  # the peer's settings changed: not the same session
    assert len(opened) == 2 and opened[0].closed
    clock.now += 901
    cycle(pool, settings(port=2222))
    assert len(opened) == 3 and opened[1].closed


def test_idle_sessions_are_closed_when_they_expire_and_all_when_the_pool_closes(
    opened: list[FakeLink],
) -> None:
    clock = Clock()
    pool = LinkPool(keep=900, clock=clock)
    cycle(pool, settings("a"))
    clock.now += 600
    cycle(pool, settings("b"))
    clock.now += 400
    pool.expire()
    assert [link.closed for link in opened] == [True, False] and len(pool) == 1
    pool.close()
    assert opened[1].closed and len(pool) == 0


def test_agentless_peers_are_not_kept(opened: list[FakeLink]) -> None:
    pool = LinkPool(keep=900)
    cycle(pool, settings(mode="agentless"))
    assert len(pool) == 0 and opened[0].closed
