"""Where an imgsync run's time went, told from outside: its log, the relay's samples, the
marker's arrival and the peers' image events."""

from __future__ import annotations

from typing import Any

from . import measure
from .measure import Finished
from .sampler import RelaySampler

OVERLAP_CONNECT = "export; peers connect + ask (overlapped)"
OVERLAP_UPLOAD = "export + upload (overlapped)"
LOADED_ON_ARRIVAL = "verify + tag (loaded on arrival, during the upload)"


def phase_split(
    done: Finished,
    sampler: RelaySampler,
    t0: float,
    t_end: float,
    peer_events: list[dict[str, Any]],
    received: float | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Split an imgsync run into consecutive phases at points seen from outside: its log,
    the relay samples, the marker's ctime in the peers' inboxes and the peers' image events
    (``load``, ``tag``). Each phase runs from the last point to its own, so none is
    negative; a point that is not seen (a log line the code no longer writes), or comes
    before the one already reached, merges its phase into the next. Where imgsync does two
    things at once (the upload starts while ``docker save`` still writes), the phase's name
    says so."""
    events = measure.log_events(done.stderr)

    def stamps(name: str) -> list[float]:
        return [float(e["ts"]) for e in events if e.get("event") == name and "ts" in e]

    phases: dict[str, float] = {}
    data: dict[str, Any] = {}
    cursor = t0

    def until(name: str, point: float | None) -> None:
        nonlocal cursor
        if point is not None and point > cursor:
            phases[name] = phases.get(name, 0.0) + point - cursor
            cursor = point

    finished = [e for e in events if e.get("event") == "cycle finished" and "ts" in e]
    cycle_end = float(finished[-1]["ts"]) if finished else None
    if cycle_end is not None and isinstance(finished[-1].get("seconds"), int | float):
        until("startup", cycle_end - float(finished[-1]["seconds"]))
    exporting, exported = stamps("exporting"), stamps("exported")
    export_start = min(exporting, default=None)
    export_end = max(exported, default=None)
    first_send = min(stamps("sending"), default=None)
    window = sampler.window()
    streamed = stamps("streaming while it is exported")
    overlapped = (
        export_end is not None
        and window is not None
        and (any(t < export_end for t in streamed) or window.start < export_end)
    )
    data["overlapped"] = overlapped
    if export_start is not None and export_end is not None:
        data["cpu_share_export"] = sampler.cpu_share(export_start, export_end)
    until("startup", export_start)
    if overlapped:
        assert window is not None and export_end is not None
        until(OVERLAP_CONNECT, first_send)
        until(OVERLAP_UPLOAD, min(export_end, window.end))
        until("upload (after the export)", window.end)
        until("export (after the upload)", export_end)
    else:
        until("export", export_end)
        until("connect + ask", first_send)
        until("upload", window.end if window is not None else None)
    if window is not None:
        data["window_rate"] = window.rate
        data["window_seconds"] = window.seconds
        data["cpu_share_upload"] = sampler.cpu_share(window.start, window.end)
        until("end of receive", received)

    def last(action: str) -> float | None:
        found = [int(e["timeNano"]) / 1e9 for e in peer_events if event_action(e) == action]
        return max(found, default=None)

    last_load, last_tag = last("load"), last("tag")
    applied = max((t for t in (last_load, last_tag) if t is not None), default=None)
    on_arrival = last_load is not None and received is not None and last_load <= received
    until(LOADED_ON_ARRIVAL if on_arrival else "apply", applied)
    until("report + state DB" if window is not None else "connect + ask", cycle_end)
    until("exit" if cycle_end is not None else "rest", t_end)
    return phases, data


def event_action(event: dict[str, Any]) -> str:
    """A docker event's action (``load``, ``tag``…), from the API's new or old field."""
    return str(event.get("Action") or event.get("status") or "")


# -- helpers --------------------------------------------------------------------------------
