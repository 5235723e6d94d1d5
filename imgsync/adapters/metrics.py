"""Prometheus metrics of the sync cycles, in a registry of their own.

:meth:`Metrics.record` takes a cycle's :class:`Report`; :meth:`Metrics.sink` is a
:class:`ProgressSink` that moves ``imgsync_bytes_sent_total`` while the bytes move, so a
scrape during a long upload sees it. ``record`` then adds only what the sink did not count
(the markers), so the counter ends at the results' ``bytes_sent`` — or above, by the bytes
of an upload that broke off, which did move.

The daemon serves the registry over HTTP (``[metrics] listen``); the daemon and the one-shot
``sync`` write it to ``[metrics] textfile`` after each cycle, for node-exporter's textfile
collector. A process that writes the textfile first takes the counters and timestamps back
from it (:meth:`Metrics.resume_from`), so they go on across one-shot runs and restarts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.parser import text_string_to_metric_families

from imgsync import config as cfg
from imgsync import log
from imgsync.adapters import fsutil
from imgsync.errors import ConfigError, ImgsyncError
from imgsync.model import Action, Report, Result

_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycle_duration = Gauge(
            "imgsync_cycle_duration_seconds", "How long the last cycle took.", registry=r
        )
        self.cycle_seconds = Histogram(
            "imgsync_cycle_seconds", "How long cycles take.", buckets=_BUCKETS, registry=r
        )
        self.cycles = Counter("imgsync_cycles", "Cycles that ran to a report.", registry=r)
        self.cycle_errors = Counter(
            "imgsync_cycle_errors",
            "Cycles that ended without a report (config, lock, source engine, state DB).",
            registry=r,
        )
        self.last_cycle = Gauge(
            "imgsync_last_cycle_timestamp_seconds", "When the last cycle ended.", registry=r
        )
        self.last_cycle_ok = Gauge(
            "imgsync_last_cycle_ok",
            "1 if the last cycle brought every peer x image in sync, else 0.",
            registry=r,
        )
        self.bytes_sent = Counter(
            "imgsync_bytes_sent", "Bytes sent to a peer (on the wire).", ["peer"], registry=r
        )
        self.failures = Counter(
            "imgsync_failures", "Failed peer x image results.", ["peer", "image"], registry=r
        )
        self.last_success = Gauge(
            "imgsync_last_success_timestamp_seconds",
            "When a cycle last found or left this peer x image in sync.",
            ["peer", "image"],
            registry=r,
        )
        self.images_behind = Gauge(
            "imgsync_images_behind",
            "Images not current on this peer after the last cycle that served it.",
            ["peer"],
            registry=r,
        )
        self._counted: dict[tuple[str, str], int] = {}  # bytes the sink added this cycle
        self._last: dict[tuple[str, str], int] = {}  # ``done`` of the upload in flight
        self._lock = threading.Lock()

    @classmethod
    def resumed(cls, settings: cfg.MetricsConfig) -> Metrics:
        """New metrics, taken back from the textfile when one is configured."""
        metrics = cls()
        if settings.textfile is not None:
            metrics.resume_from(settings.textfile)
        return metrics

    # -- during a cycle: the ProgressSink --------------------------------------------------
    def sink(self) -> MetricsSink:
        return MetricsSink(self)

    def _started(self, peer: str, image: str) -> None:
        with self._lock:
            self._last[peer, image] = 0

    def _advanced(self, peer: str, image: str, done: int) -> None:
        key = (peer, image)
        with self._lock:
            delta = done - self._last.get(key, 0)
            self._last[key] = done
            if delta <= 0:
                return
            self._counted[key] = self._counted.get(key, 0) + delta
        self.bytes_sent.labels(peer=peer).inc(delta)

    # -- after a cycle ---------------------------------------------------------------------
    def record(self, report: Report, now: float | None = None) -> None:
        """Account for a finished cycle's report."""
        now = time.time() if now is None else now
        with self._lock:
            counted, self._counted, self._last = self._counted, {}, {}
        behind: dict[str, int] = {}
        for result in report.results:
            self._record_result(result, counted.pop((result.peer, result.image), 0), now)
            behind[result.peer] = behind.get(result.peer, 0) + (result.action is Action.FAILED)
        for peer, count in behind.items():
            self.images_behind.labels(peer=peer).set(count)
        self.cycles.inc()
        self.cycle_duration.set(report.seconds)
        self.cycle_seconds.observe(report.seconds)
        self.last_cycle.set(now)
        self.last_cycle_ok.set(1 if report.ok else 0)

    def _record_result(self, result: Result, counted: int, now: float) -> None:
        extra = result.bytes_sent - counted
        if extra > 0:
            self.bytes_sent.labels(peer=result.peer).inc(extra)
        else:  # make the label exist (0) for a peer nothing was sent to
            self.bytes_sent.labels(peer=result.peer)
        failures = self.failures.labels(peer=result.peer, image=result.image)
        if result.action is Action.FAILED:
            failures.inc()
        else:
            self.last_success.labels(peer=result.peer, image=result.image).set(now)

    def record_error(self, now: float | None = None) -> None:
        """A cycle that raised before it had a report."""
        with self._lock:
            self._counted, self._last = {}, {}
        self.cycle_errors.inc()
        self.last_cycle.set(time.time() if now is None else now)
        self.last_cycle_ok.set(0)

    def resume_from(self, path: str | Path) -> None:
        """Take counters, success timestamps and images behind back from an earlier
        textfile; a missing file is a first run, an unreadable one is logged and skipped."""
        try:
            text = Path(path).read_text()
            families = list(text_string_to_metric_families(text))
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeDecodeError) as err:
            log.get().warning("metrics textfile not resumed", path=str(path), error=str(err))
            return
        counters = {
            "imgsync_cycles_total": self.cycles,
            "imgsync_cycle_errors_total": self.cycle_errors,
            "imgsync_bytes_sent_total": self.bytes_sent,
            "imgsync_failures_total": self.failures,
        }
        gauges = {
            "imgsync_last_success_timestamp_seconds": self.last_success,
            "imgsync_images_behind": self.images_behind,
            "imgsync_last_cycle_timestamp_seconds": self.last_cycle,
        }
        for sample in (s for family in families for s in family.samples):
            labels, value = sample.labels, sample.value
            try:
                if sample.name in counters and value > 0:
                    metric = counters[sample.name]
                    (metric.labels(**labels) if labels else metric).inc(value)
                elif sample.name in gauges:
                    gauge = gauges[sample.name]
                    (gauge.labels(**labels) if labels else gauge).set(value)
            except ValueError:  # labels of another version: leave that sample
                continue

    # -- out -------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: str | Path) -> None:
        """Atomically (temp name beside it, fsync, rename), readable by node-exporter."""
        fsutil.write_atomic(Path(path), self.exposition(), mode=0o644)

    def finish(self, settings: cfg.MetricsConfig, report: Report | None) -> None:
        """After a cycle: record its report (``None``: it raised), write the textfile."""
        if report is None:
            self.record_error()
        else:
            self.record(report)
        self.publish(settings)

    def publish(self, settings: cfg.MetricsConfig) -> None:
        """Write the textfile if one is configured; a failure is logged, never raised."""
        if settings.textfile is None:
            return
        try:
            self.write_textfile(settings.textfile)
        except ImgsyncError as err:
            log.get().warning("metrics textfile not written", error=str(err))

    def serve(self, listen: str) -> WSGIServer:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread."""
        host, port = split_listen(listen)
        try:
            server, _thread = _start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            raise ConfigError("metrics.listen", [f"cannot listen on {listen}: {err}"]) from None
        log.get().info("serving metrics", listen=listen)
        return server


class MetricsSink:
    """The :class:`ProgressSink` half of :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def started(self, peer: str, image: str, total: int) -> None:
        self.metrics._started(peer, image)

    def advanced(self, peer: str, image: str, done: int) -> None:
        self.metrics._advanced(peer, image, done)

    def finished(self, result: Result) -> None:
        pass  # ``record`` takes the whole report


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9477"`` → ``("127.0.0.1", 9477)``; ``"[::1]:9477"`` → ``("::1", 9477)``."""
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


class Endpoint:
    """The daemon's ``/metrics`` server, moved when ``[metrics] listen`` changes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.listen: str | None = None
        self.server: WSGIServer | None = None

    def follow(self, settings: cfg.MetricsConfig) -> None:
        if settings.listen == self.listen:
            return
        self.close()
        if settings.listen is not None:
            self.server = self.metrics.serve(settings.listen)
            self.listen = settings.listen

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.server, self.listen = None, None
