"""Metrics recorded from synthetic reports, moved by the progress sink, written as a
textfile and taken back from it; the progress sinks composed by Tee, and log lines that
share the terminal with the bars."""

from __future__ import annotations

import fcntl
import os
import re
import stat
import struct
import subprocess
import sys
import termios
import threading
import urllib.request
from pathlib import Path
from unittest.mock import Mock, call

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from imgsync.adapters.metrics import Endpoint, Metrics, split_listen
from imgsync.config import MetricsConfig
from imgsync.errors import ConfigError
from imgsync.model import Action, Report, Result
from imgsync.render import progress

V = "sha256:" + "a" * 64


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def report(*results: Result, seconds: float = 2.5) -> Report:
    return Report(list(results), seconds)


def test_record_counts_a_cycle_its_bytes_failures_and_successes() -> None:
    metrics = Metrics()
    metrics.record(
        report(
            Result("p1", "a:1", V, Action.LOADED, 1000, 1.0),
            Result("p1", "b:1", V, Action.UNCHANGED),
            Result("p2", "a:1", V, Action.FAILED, 300, error="host key"),
            Result("p2", "b:1", V, Action.LOADED, 50),
        ),
        now=1700000000.0,
    )
    assert value(metrics, "imgsync_cycles_total") == 1
    assert value(metrics, "imgsync_cycle_duration_seconds") == 2.5
    assert value(metrics, "imgsync_cycle_seconds_count") == 1
    assert value(metrics, "imgsync_cycle_seconds_sum") == 2.5
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 1000
    assert value(metrics, "imgsync_bytes_sent_total", peer="p2") == 350
    assert value(metrics, "imgsync_failures_total", peer="p2", image="a:1") == 1
    assert value(metrics, "imgsync_failures_total", peer="p1", image="a:1") == 0
    for peer, image in (("p1", "a:1"), ("p1", "b:1"), ("p2", "b:1")):
        stamp = value(metrics, "imgsync_last_success_timestamp_seconds", peer=peer, image=image)
        assert stamp == 1700000000.0
    assert value(metrics, "imgsync_last_success_timestamp_seconds", peer="p2", image="a:1") is None
    assert value(metrics, "imgsync_images_behind", peer="p1") == 0
    assert value(metrics, "imgsync_images_behind", peer="p2") == 1
    assert value(metrics, "imgsync_last_cycle_ok") == 0
    assert value(metrics, "imgsync_last_cycle_timestamp_seconds") == 1700000000.0


def test_a_later_cycle_accumulates_counters_and_moves_gauges() -> None:
    metrics = Metrics()
    metrics.record(report(Result("p1", "a:1", V, Action.FAILED, 10, error="x")), now=100.0)
    metrics.record(report(Result("p1", "a:1", V, Action.LOADED, 20), seconds=4.0), now=200.0)
    assert value(metrics, "imgsync_cycles_total") == 2
    assert value(metrics, "imgsync_cycle_duration_seconds") == 4.0
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 30
    assert value(metrics, "imgsync_failures_total", peer="p1", image="a:1") == 1
    assert value(metrics, "imgsync_last_success_timestamp_seconds", peer="p1", image="a:1") == 200
    assert value(metrics, "imgsync_images_behind", peer="p1") == 0
    assert value(metrics, "imgsync_last_cycle_ok") == 1


def test_a_peer_left_out_of_a_cycle_keeps_its_images_behind() -> None:
    metrics = Metrics()
    metrics.record(report(Result("p1", "a:1", V, Action.FAILED, error="x")))
    metrics.record(report(Result("p2", "a:1", V, Action.LOADED)))  # sync --peer p2
    assert value(metrics, "imgsync_images_behind", peer="p1") == 1
    assert value(metrics, "imgsync_images_behind", peer="p2") == 0


def test_the_sink_moves_bytes_during_the_cycle_and_record_does_not_count_them_twice() -> None:
    metrics = Metrics()
    sink = metrics.sink()
    sink.started("p1", "a:1", 1000)
    sink.advanced("p1", "a:1", 400)
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 400
    sink.advanced("p1", "a:1", 900)
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 900
    sink.started("p1", "a:1", 1000)  # a retry: its own count from 0
    sink.advanced("p1", "a:1", 100)
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 1000
    # the result: both attempts' bundle bytes plus a 60-byte marker
    metrics.record(report(Result("p1", "a:1", V, Action.LOADED, 1060)))
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 1060


def test_bytes_of_an_upload_that_broke_off_stay_counted() -> None:
    metrics = Metrics()
    sink = metrics.sink()
    sink.started("p1", "a:1", 1000)
    sink.advanced("p1", "a:1", 700)  # then the link died: the result says 0
    metrics.record(report(Result("p1", "a:1", V, Action.FAILED, 0, error="reset")))
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 700
    metrics.record(report(Result("p1", "a:1", V, Action.LOADED, 50)))  # nothing carried over
    assert value(metrics, "imgsync_bytes_sent_total", peer="p1") == 750


def test_the_sink_is_safe_from_several_threads() -> None:
    metrics = Metrics()
    sink = metrics.sink()

    def upload(peer: str) -> None:
        sink.started(peer, "a:1", 100_000)
        for done in range(1, 100_001, 7):
            sink.advanced(peer, "a:1", done)
        sink.advanced(peer, "a:1", 100_000)

    threads = [threading.Thread(target=upload, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        assert value(metrics, "imgsync_bytes_sent_total", peer=f"p{i}") == 100_000


def test_a_cycle_that_raised_is_an_error_not_a_cycle() -> None:
    metrics = Metrics()
    metrics.record_error(now=5.0)
    assert value(metrics, "imgsync_cycle_errors_total") == 1
    assert value(metrics, "imgsync_cycles_total") == 0
    assert value(metrics, "imgsync_last_cycle_ok") == 0


def test_the_registry_is_not_the_global_one() -> None:
    metrics = Metrics()
    metrics.record(report(Result("p1", "a:1", V, Action.LOADED, 5)))
    assert REGISTRY.get_sample_value("imgsync_cycles_total") is None


def test_the_textfile_is_written_atomically_readable_and_parseable(tmp_path: Path) -> None:
    path = tmp_path / "imgsync.prom"
    path.write_text("old")
    metrics = Metrics()
    metrics.finish(
        MetricsConfig(textfile=str(path)),
        report(Result("p1", "a:1", V, Action.LOADED, 5), Result("p2", "a:1", V, Action.UNCHANGED)),
    )
    assert [p.name for p in tmp_path.iterdir()] == ["imgsync.prom"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples[("imgsync_cycles_total", ())] == 1
    assert samples[("imgsync_bytes_sent_total", (("peer", "p1"),))] == 5
    assert samples[("imgsync_images_behind", (("peer", "p2"),))] == 0


def test_a_textfile_that_cannot_be_written_is_logged_not_raised(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.finish(MetricsConfig(textfile=str(tmp_path / "missing" / "x.prom")), report())
    assert value(metrics, "imgsync_cycles_total") == 1


def test_counters_and_timestamps_go_on_from_an_earlier_textfile(tmp_path: Path) -> None:
    settings = MetricsConfig(textfile=str(tmp_path / "imgsync.prom"))
    first = Metrics.resumed(settings)  # no file yet: a first run
    first.finish(settings, report(Result("p1", "a:1", V, Action.LOADED, 100)))
    second = Metrics.resumed(settings)
    second.record(report(Result("p1", "a:1", V, Action.FAILED, 10, error="x")), now=1.0)
    assert value(second, "imgsync_cycles_total") == 2
    assert value(second, "imgsync_bytes_sent_total", peer="p1") == 110
    assert value(second, "imgsync_failures_total", peer="p1", image="a:1") == 1
    earlier = value(first, "imgsync_last_success_timestamp_seconds", peer="p1", image="a:1")
    kept = value(second, "imgsync_last_success_timestamp_seconds", peer="p1", image="a:1")
    assert kept == earlier is not None
    assert value(second, "imgsync_images_behind", peer="p1") == 1


@pytest.mark.parametrize(
    "text", ["not { a metric", "\xff\xfe", 'imgsync_failures_total{x="1"} 3\n']
)
def test_an_unusable_earlier_textfile_is_skipped(tmp_path: Path, text: str) -> None:
    path = tmp_path / "imgsync.prom"
    path.write_text(text, encoding="latin-1")
    metrics = Metrics.resumed(MetricsConfig(textfile=str(path)))
    assert value(metrics, "imgsync_cycles_total") == 0


def test_the_endpoint_serves_the_registry_and_moves_with_the_config() -> None:
    metrics = Metrics()
    metrics.record(report(Result("p1", "a:1", V, Action.LOADED, 5)))
    endpoint = Endpoint(metrics)
    try:
        endpoint.follow(MetricsConfig.model_construct(listen="127.0.0.1:0"))
        assert endpoint.server is not None
        port = endpoint.server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            body = answer.read().decode()
        assert 'imgsync_bytes_sent_total{peer="p1"} 5.0' in body
        endpoint.follow(MetricsConfig())
        assert endpoint.server is None
    finally:
        endpoint.close()


def test_a_listen_address_in_use_is_a_config_error() -> None:
    assert split_listen("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert split_listen("[::1]:9477") == ("::1", 9477)
    first, second = Endpoint(Metrics()), Endpoint(Metrics())
    try:
        first.follow(MetricsConfig.model_construct(listen="127.0.0.1:0"))
        assert first.server is not None
        taken = f"127.0.0.1:{first.server.server_port}"
        with pytest.raises(ConfigError, match=r"metrics\.listen: cannot listen on"):
            second.follow(MetricsConfig(listen=taken))
    finally:
        first.close()
        second.close()


def test_tee_tells_every_sink_and_drops_the_missing_ones() -> None:
    one, two = Mock(), Mock()
    assert progress.tee(None, None) is None
    assert progress.tee(one, None) is one
    both = progress.tee(one, None, two)
    assert both is not None
    done = Result("p1", "a:1", V, Action.LOADED)
    both.started("p1", "a:1", 10)
    both.advanced("p1", "a:1", 5)
    both.finished(done)
    expected = [call.started("p1", "a:1", 10), call.advanced("p1", "a:1", 5), call.finished(done)]
    assert one.method_calls == two.method_calls == expected


CHILD = """
import logging, sys, time
from imgsync import log
from imgsync.render import progress
from imgsync.model import Action, Result
if sys.argv[1:] == ["unguarded"]:  # to see what the guard prevents: lines glued to bars
    import contextlib
    progress._logs_through = lambda console: contextlib.nullcontext()
log.configure(level=logging.INFO, stream=sys.stderr)
with progress.bars(progress.make_console()) as bars:
    bars.started("p1", "a:1", 1000)
    for done in range(0, 1001, 50):
        bars.advanced("p1", "a:1", done)
        log.get().info("logged at %d" % done)
        time.sleep(0.03)
    bars.finished(Result("p1", "a:1", None, Action.LOADED, 1000))
"""
MOVES = re.compile(r"\r|\x1b\[[0-9;]*[ABCDEFGHJKST]")  # the cursor leaves the line / erases
COLOURS = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(*args: str) -> str:
    """Run CHILD with stdout and stderr on one pty; what stays on each screen line."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "CI")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdin=subprocess.DEVNULL, stdout=slave,
        stderr=slave, env={**env, "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert child.wait(60) == 0
    return COLOURS.sub("", MOVES.sub("\n", b"".join(chunks).decode()))


def test_log_lines_print_whole_above_the_bars_on_a_shared_terminal() -> None:
    lines = on_a_terminal("guarded").splitlines()
    logged = [line for line in lines if "logged at" in line]
    assert len(logged) == 21
    assert not any("━" in line or "MB" in line or " B" in line for line in logged), logged
    assert any("1.0/1.0 kB" in line for line in lines)  # the bar ran to its end
