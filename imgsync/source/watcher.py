"""Follow the source engine's image events and ask for a cycle when a configured image
changes, debounced, so a build that tags several times asks once.

The stream is the engine adapter's; when it drops, the watcher reconnects with backoff
while the daemon's schedule keeps running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from imgsync import log, reference
from imgsync.engines.docker import Engine, ImageEvents
from imgsync.errors import EngineError

# Events that can change what a reference points at. A load or import names the image by
# ID, and the tag events that follow name the reference.
_BY_NAME = {"tag", "pull"}
_ANY = {"load", "import"}
_MAX_BACKOFF = 30.0


def is_relevant(action: str, name: str, selectors: tuple[str, ...], by_label: bool) -> bool:
    """A load or import always counts (it names an ID); a tag or pull counts when its
    name is selected — by a reference or pattern, or possibly by a label (the event does
    not say which labels the image has, so any tag counts then)."""
    if action in _ANY:
        return True
    if action not in _BY_NAME:
        return False
    return by_label or any(reference.match(s, name) for s in selectors)


class EventWatcher:
    def __init__(
        self,
        docker_host: str | None,
        images: list[str],
        debounce: float,
        on_change: Callable[[], None],
        labels: list[str] | None = None,
    ) -> None:
        self._docker_host = docker_host
        self._selectors = tuple(images)
        self._by_label = bool(labels)
        self._debounce = debounce
        self._on_change = on_change
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._events: ImageEvents | None = None
        self._timer: threading.Timer | None = None
        self._thread = threading.Thread(target=self._follow, name="image-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._halt.set()
        with self._lock:
            if self._events is not None:
                self._events.close()
            if self._timer is not None:
                self._timer.cancel()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        logger = log.get().bind(component="events")
        backoff = 1.0
        while not self._halt.is_set():
            engine: Engine | None = None
            try:
                engine = Engine(self._docker_host)
                events = ImageEvents(engine)
                with self._lock:
                    if self._halt.is_set():
                        events.close()
                        return
                    self._events = events
                logger.info("following image events", engine=engine.name)
                backoff = 1.0
                for action, name in events:
                    if is_relevant(action, name, self._selectors, self._by_label):
                        logger.info("image changed", action=action, name=name)
                        self._bump()
                raise EngineError("event stream ended")
            except EngineError as err:
                if self._halt.is_set():
                    return
                logger.warning(
                    "event stream lost; the schedule still runs", error=str(err), retry_in=backoff
                )
            finally:
                if engine is not None:
                    engine.close()
            self._halt.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _bump(self) -> None:
        """(Re)start the debounce timer: the cycle is asked for once the events go quiet."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._debounce, self._on_change)
            self._timer.daemon = True
            self._timer.start()
