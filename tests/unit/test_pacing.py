"""The lab's token bucket (lab/pacing.py), on a fake clock: bytes pass at the rate, with at
most the burst ahead of it, and idle time banks no more than the burst."""

from __future__ import annotations

import pytest

from lab import pacing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(pacing.time, "sleep", fake.sleep)
    return fake


def test_bytes_pass_at_the_rate_after_a_full_burst(clock: Clock) -> None:
    bucket = pacing.TokenBucket(burst_bytes=1000, full=True)
    for _ in range(10):
        bucket.take(1000, rate=10_000.0)
    assert clock.slept == pytest.approx(0.9)  # the first 1000 bytes were the burst


def test_idle_time_banks_no_more_than_the_burst(clock: Clock) -> None:
    bucket = pacing.TokenBucket(burst_seconds=0.1)  # the lab relay's: 0.1 s of the rate
    clock.now += 60  # a minute idle
    for _ in range(5):
        bucket.take(1000, rate=10_000.0)
    assert clock.slept == pytest.approx(0.4)  # 5000 bytes, 1000 of them credit


def test_an_empty_bucket_waits_for_the_first_bytes_too(clock: Clock) -> None:
    bucket = pacing.TokenBucket(burst_bytes=1000)
    bucket.take(500, rate=1000.0)
    assert clock.slept == pytest.approx(0.5)


def test_a_shared_link_paces_all_its_senders_together(clock: Clock) -> None:
    uplink = pacing.SharedLink(rate=10_000.0)
    for _ in range(5):  # two relays' connections, taking in turn: 10 000 bytes in all
        uplink.take(1000)
        uplink.take(1000)
    assert clock.slept == pytest.approx(1.0)  # the rate of the one link, not twice it
