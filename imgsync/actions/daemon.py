"""``imgsync daemon``: the sync cycle as a service.

A cycle runs at start, then whenever the schedule (APScheduler: ``interval`` or ``cron``,
with jitter; missed runs coalesced) or a change on the source engine asks for one. Cycles
run one at a time on the main thread, under the same host lock as ``imgsync sync``.
SIGTERM/SIGINT abandon a cycle in flight and exit 0; SIGHUP re-reads the config and keeps
the old one when the new one is bad. systemd is told READY, STATUS, RELOADING, STOPPING
and pinged for its watchdog.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from imgsync import config as cfg
from imgsync import log
from imgsync.adapters import metrics, systemd
from imgsync.adapters.signals import Cancelled, install_stop_handlers
from imgsync.errors import ImgsyncError
from imgsync.model import Action, Result
from imgsync.render import progress
from imgsync.source import cycle
from imgsync.source.link import open_link
from imgsync.source.linkpool import LinkPool
from imgsync.source.watcher import EventWatcher

_JOB = "cycle"
_TICK = 0.2
KEEP_MIN = 900.0  # seconds a kept session may stay idle, at least
_CYCLE_SLACK = 600.0  # export and upload time a healthy cycle may add to its SSH timeouts


def make_trigger(schedule: cfg.ScheduleConfig) -> BaseTrigger:
    jitter = max(1, int(cfg.parse_duration(schedule.jitter))) if schedule.jitter else None
    if schedule.cron is not None:
        minute, hour, day, month, day_of_week = schedule.cron.split()
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            jitter=jitter,
            timezone=datetime.UTC,
        )
    seconds = cfg.parse_duration(schedule.interval or "5m")
    return IntervalTrigger(seconds=seconds, jitter=jitter, timezone=datetime.UTC)


class _Heartbeat:
    """A progress sink that only says "alive" (for the watchdog)."""

    def __init__(self, beat: Callable[[], None]) -> None:
        self._beat = beat

    def started(self, peer: str, image: str, total: int) -> None:
        self._beat()

    def advanced(self, peer: str, image: str, done: int) -> None:
        self._beat()

    def finished(self, result: Result) -> None:
        self._beat()


class Daemon:
    def __init__(self, config_path: Path, config: cfg.Config) -> None:
        cfg.require_source(config, config_path)
        self.config_path = config_path
        self.config = config
        self.cycle_due = threading.Event()
        self.reload_due = threading.Event()
        self.stop = install_stop_handlers(reload=self.reload_due)
        self.scheduler = BackgroundScheduler(timezone=datetime.UTC)
        self.watcher: EventWatcher | None = None
        self.logger = log.get().bind(component="daemon")
        self.heartbeat = time.monotonic()
        self.links = _pool(config.schedule)
        self.metrics = metrics.Metrics.resumed(config.metrics)
        self.endpoint = metrics.Endpoint(self.metrics)

    def serve(self) -> None:
        self.endpoint.follow(self.config.metrics)  # [metrics] listen; cannot bind: exit 2
        self.scheduler.start()
        self._follow(self.config)
        self.cycle_due.set()  # one cycle at start
        systemd.ready("starting the first cycle")
        self.logger.info("daemon started", config=str(self.config_path))
        beat = systemd.watchdog_interval()
        if beat is not None:
            threading.Thread(target=self._watchdog, args=(beat,), daemon=True).start()
        try:
            while not self.stop.is_set():
                self.heartbeat = time.monotonic()
                if self.reload_due.is_set():
                    self._reload()
                elif self.cycle_due.is_set():
                    self.cycle_due.clear()
                    self._cycle()
                else:
                    if self.links is not None:
                        self.links.expire()
                    self.stop.wait(_TICK)
        except Cancelled:
            self.logger.info("cycle abandoned: stopping")
        finally:
            systemd.stopping("stopping")
            self._unfollow()
            if self.links is not None:
                self.links.close()
            self.scheduler.shutdown(wait=False)
            self.endpoint.close()
            self.logger.info("daemon stopped")

    def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog while the main loop is alive. The loop beats between
        cycles and whenever bytes move in one; a cycle silent for longer than its peers'
        timeouts and retries allow is stuck, goes unpinged, and systemd restarts us."""
        while not self.stop.wait(interval):
            if time.monotonic() - self.heartbeat < self._allowance():
                systemd.watchdog()

    def _allowance(self) -> float:
        peers = [cfg.peer_settings(self.config, p) for p in self.config.peers]
        worst = max(
            ((p.connect_timeout + p.apply_timeout) * (p.retries + 1) for p in peers), default=0.0
        )
        return worst + _CYCLE_SLACK

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _cycle(self) -> None:
        sink = progress.tee(self.metrics.sink(), _Heartbeat(self.beat))
        connect = self.links.connect if self.links is not None else open_link
        options = cycle.CycleOptions(stop=self.stop, progress=sink, connect=connect)
        try:
            report = cycle.run(self.config, self.config_path, options, self.metrics)
        except ImgsyncError as err:
            self.logger.error("cycle failed", error=str(err))
            systemd.status(f"last cycle failed: {err}")
            return
        failed = sum(r.action is Action.FAILED for r in report.results)
        systemd.status(
            f"last cycle: {len(report.results) - failed} in sync, {failed} failed "
            f"({report.seconds:.1f}s)"
        )

    def _reload(self) -> None:
        self.reload_due.clear()
        systemd.reloading("re-reading the config")
        try:
            config = cfg.load(self.config_path)
            cfg.require_source(config, self.config_path)
        except ImgsyncError as err:
            self.logger.error("config reload failed; keeping the running config", error=str(err))
            systemd.ready("config reload failed; running with the previous config")
            return
        self._unfollow()
        if self.links is not None:
            self.links.close()  # the peers' settings may have changed
        self.links = _pool(config.schedule)
        self.config = config
        self._follow(config)
        try:
            self.endpoint.follow(config.metrics)
        except ImgsyncError as err:
            self.logger.error("metrics not served", error=str(err))
        self.logger.info("config reloaded", config=str(self.config_path))
        systemd.ready("config reloaded")
        self.cycle_due.set()

    def _follow(self, config: cfg.Config) -> None:
        """Schedule cycles and watch the source engine, as ``config`` says."""
        schedule = config.schedule
        self.scheduler.add_job(
            self.cycle_due.set,
            trigger=make_trigger(schedule),
            id=_JOB,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(cfg.parse_duration(schedule.misfire_grace))),
        )
        source = cfg.require_source(config, self.config_path)
        if schedule.events:
            self.watcher = EventWatcher(
                source.docker_host,
                source.images,
                cfg.parse_duration(schedule.debounce),
                self.cycle_due.set,
            )
            self.watcher.start()

    def _unfollow(self) -> None:
        if self.scheduler.get_job(_JOB) is not None:
            self.scheduler.remove_job(_JOB)
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None


def _pool(schedule: cfg.ScheduleConfig) -> LinkPool | None:
    """Sessions kept between cycles (``keep_sessions``), each for as long as two intervals
    (at least ``KEEP_MIN``): a schedule's next cycle, or any image event before it, finds
    them open."""
    if not schedule.keep_sessions:
        return None
    interval = cfg.parse_duration(schedule.interval) if schedule.interval else 0.0
    return LinkPool(keep=max(KEEP_MIN, 2 * interval))
