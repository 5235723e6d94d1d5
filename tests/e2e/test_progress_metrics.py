"""Live progress on a real terminal (a pty), none with --json or in the daemon; the daemon's
/metrics endpoint during and after a cycle; the textfile of a one-shot sync."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab import Lab, build_image

from .helpers import build, by_peer_image, sync_json

pytestmark = pytest.mark.lab

MB = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
MOVES = re.compile(r"\r|\x1b\[[0-9;]*[ABCDEFGHJKST]")  # the cursor leaves the line / erases
BAR_CHARS = ("━", "╸", "╺", "\x1b[")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def rate_limit(rate: float) -> dict[str, str]:
    """[ssh] max_rate: imgsync paces each upload from its own start. The relays pace too,
    but from the connection's start: the seconds spent asking the peer first are credit
    that lets a whole bundle through at once."""
    return {"max_rate": f"{rate / 1e6:g}MB/s"}


@contextmanager
def paced(lab: Lab, rate: float) -> Iterator[None]:
    before = {peer.name: peer.relay.rate_limit for peer in lab.peers}
    for peer in lab.peers:
        peer.relay.rate_limit = rate
    try:
        yield
    finally:
        for peer in lab.peers:
            peer.relay.rate_limit = before[peer.name]


def in_pty(
    argv: list[str], timeout: float, stderr_too: bool = True
) -> tuple[int, str, list[tuple[float, str]]]:
    """Run ``argv`` with stdout (and stderr) on a 120x40 pty; return its exit code, all it
    wrote there, and the chunks as read with the time each came."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "COLUMNS", "LINES", "CI", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)  # rich: a real interactive terminal
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave if stderr_too else subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    chunks: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the slave is gone
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
            elif process.poll() is not None:
                break
        else:
            process.kill()
            raise AssertionError(f"{argv} still running after {timeout}s")
        code = process.wait(30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    if not stderr_too and process.stderr is not None:
        process.stderr.close()
    return code, "".join(text for _, text in chunks), chunks


def plain(text: str) -> str:
    return ANSI.sub("", text)


def screen_lines(screen: str) -> list[str]:
    """What stays on one line of the screen: cut where the cursor moves or a line is
    erased; colours dropped. A log line written into a bar would stay glued to it."""
    return plain(MOVES.sub("\n", screen)).splitlines()


def test_sync_on_a_terminal_shows_live_bars_then_a_summary_table(lab: Lab, tmp_path: Path) -> None:
    ref = "progress-tty/big:1"
    image_id = build_image(lab.source.client(), ref, [("big.bin", 200 * MB)], seed=12000)
    lab.write_configs([ref], ssh_overrides=rate_limit(50e6))
    with paced(lab, 50e6):  # ~4 s per upload: many refreshes of each bar
        code, screen, chunks = in_pty(lab.imgsync_argv("-v", "sync"), timeout=600)
    (tmp_path / "screen.txt").write_text(screen)
    text = plain(screen)
    assert code == 0, text[-3000:]
    for peer in lab.peers:
        assert peer.docker.image_id(ref) == image_id
        bar = re.compile(rf"{peer.name}  {re.escape(ref)}\s.*?(\d+\.\d)/(\d+\.\d) MB")
        amounts = {m.group(1) for m in bar.finditer(text)}
        assert len(amounts) >= 3, (peer.name, amounts, text[-3000:])
    assert re.search(r"\d+\.\d MB/s", text), text[-3000:]
    # the bars moved over time, not in one final burst
    moving = [t for t, chunk in chunks if re.search(r"\d+\.\d/\d+\.\d MB", plain(chunk))]
    assert moving and moving[-1] - moving[0] > 1.0
    # the summary table names every peer with the image and its action, then the verdict
    summary = text[text.rindex("┃ peer") :]
    for peer in lab.peers:
        assert re.search(rf"│ {peer.name}\s*│ {re.escape(ref)}\s*│ loaded", summary), summary
    assert re.search(r"^ok: 2 loaded, 0 unchanged, 0 failed across 2 peer\(s\)", summary, re.M)
    # -v logs shared the terminal: printed whole, above the bars, never inside a bar line
    logged = [line for line in screen_lines(screen) if "cycle finished" in line]
    assert logged, text[-3000:]
    assert not any("━" in line for line in logged), logged


def test_sync_json_on_a_terminal_prints_one_json_document_and_no_progress(lab: Lab) -> None:
    ref = "progress-json/web:1"
    build(lab, ref, seed=12001, size=30 * MB)
    lab.write_configs([ref], ssh_overrides=rate_limit(10e6))
    with paced(lab, 10e6):  # ~3 s of upload during which no bar may appear
        code, screen, _ = in_pty(lab.imgsync_argv("sync", "--json"), 600, stderr_too=False)
    assert code == 0, screen
    assert not any(char in screen for char in BAR_CHARS), screen
    document = json.loads(screen)  # exactly one document: anything else fails to parse
    assert document["ok"] is True
    assert {(r["peer"], r["action"]) for r in document["results"]} == {
        ("p1", "loaded"),
        ("p2", "loaded"),
    }


def test_sync_piped_prints_the_plain_lines(lab: Lab) -> None:
    ref = "progress-pipe/web:1"
    build(lab, ref, seed=12002)
    lab.write_configs([ref])
    done = lab.run_imgsync("sync")
    assert done.returncode == 0, done.stderr
    assert not any(char in done.stdout for char in BAR_CHARS), done.stdout
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("ok: 2 loaded"), lines


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return parse(answer.read().decode())


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def peer_values(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (metric, labels), value in samples.items() if metric == name}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def cycles(log_path: Path) -> list[dict[str, object]]:
    lines = log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if '"cycle finished"' in line]


def assert_after_a_good_cycle(samples: Samples, lab: Lab, refs: list[str]) -> None:
    assert samples[("imgsync_cycles_total", ())] >= 1
    assert samples[("imgsync_cycle_duration_seconds", ())] > 0
    assert samples[("imgsync_last_cycle_ok", ())] == 1
    for peer in lab.peers:
        assert samples[("imgsync_images_behind", (("peer", peer.name),))] == 0
        for ref in refs:
            labels = (("image", ref), ("peer", peer.name))
            assert samples[("imgsync_last_success_timestamp_seconds", labels)] > time.time() - 900
            assert samples[("imgsync_failures_total", labels)] == 0


def test_the_daemon_serves_metrics_that_move_during_a_cycle(lab: Lab, tmp_path: Path) -> None:
    ref = "metrics-daemon/big:1"
    build_image(lab.source.client(), ref, [("big.bin", 120 * MB)], seed=12010)
    port, textfile = free_port(), tmp_path / "daemon.prom"
    lab.write_configs(
        [ref],
        ssh_overrides=rate_limit(20e6),
        extra={
            "schedule": {"interval": "1h", "events": False},
            "metrics": {"listen": f"127.0.0.1:{port}", "textfile": str(textfile)},
        },
    )
    log_path = tmp_path / "daemon.log"
    with paced(lab, 20e6), log_path.open("w") as log:  # ~6 s per upload
        daemon = subprocess.Popen(
            lab.imgsync_argv("daemon"), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def sent() -> float:
                try:
                    return sum(peer_values(scrape(port), "imgsync_bytes_sent_total").values())
                except OSError:  # not listening yet
                    return 0.0

            wait_for(lambda: sent() > 0, 300, "bytes are counted while the upload runs")
            first = sent()
            time.sleep(1.5)
            second = sent()
            assert first < second < 2 * 120 * MB * 1.05, (first, second)
            wait_for(lambda: bool(cycles(log_path)), 300, "the daemon's first cycle finishes")
            after = scrape(port)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            finally:
                if daemon.poll() is None:
                    daemon.kill()
    assert daemon.returncode == 0
    assert_after_a_good_cycle(after, lab, [ref])
    assert after[("imgsync_cycles_total", ())] == 1
    (cycle,) = cycles(log_path)
    assert cycle["loaded"] == 2
    assert sum(peer_values(after, "imgsync_bytes_sent_total").values()) == cycle["bytes_sent"]
    on_file = parse(textfile.read_text())
    assert on_file[("imgsync_cycles_total", ())] == 1
    assert_after_a_good_cycle(on_file, lab, [ref])
    # the daemon's stdout is JSON log lines, nothing else (no bars, no escapes)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), lines[:5]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert not any(char in "".join(lines) for char in BAR_CHARS)


def test_a_one_shot_sync_writes_the_textfile(lab: Lab, tmp_path: Path) -> None:
    refs = ["metrics-textfile/web:1", "metrics-textfile/worker:1"]
    for seed, ref in enumerate(refs, start=12020):
        build(lab, ref, seed=seed)
    textfile = tmp_path / "textfile" / "imgsync.prom"
    textfile.parent.mkdir()
    lab.write_configs(refs, extra={"metrics": {"textfile": str(textfile)}})
    code, report = sync_json(lab)
    assert code == 0, report
    samples = parse(textfile.read_text())
    assert [p.name for p in textfile.parent.iterdir()] == ["imgsync.prom"]  # no temp left
    assert samples[("imgsync_cycles_total", ())] == 1
    assert_after_a_good_cycle(samples, lab, refs)
    results = by_peer_image(report)
    for peer in lab.peers:
        expected = sum(r["bytes_sent"] for (name, _), r in results.items() if name == peer.name)
        assert samples[("imgsync_bytes_sent_total", (("peer", peer.name),))] == expected > 0

    # a second run goes on from the file: counters add up, nothing is behind
    code, report = sync_json(lab)
    assert code == 0, report
    again = parse(textfile.read_text())
    assert again[("imgsync_cycles_total", ())] == 2
    assert again[("imgsync_failures_total", (("image", refs[0]), ("peer", "p1")))] == 0
    assert_after_a_good_cycle(again, lab, refs)
