"""Pure decisions over data: what to export, and what each peer needs. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imgsync.model import Inventory, Marker

MARGIN_FIXED = 16 * 1024 * 1024  # bytes kept free on top of what a file needs, plus 10%


class Step(StrEnum):
    SKIP = "skip"  # the peer already runs this version
    APPLY = "apply"  # the bundle is already in the peer's inbox: only apply it
    SEND = "send"  # upload the bundle and its marker, then apply
    NO_ROOM = "no-room"  # it should be sent, but the peer's inbox has no room for it


@dataclass(frozen=True)
class PlanItem:
    image: str
    marker: Marker
    step: Step
    reason: str


def with_margin(size: int) -> int:
    """The free bytes a file of ``size`` bytes needs: its size plus 10% plus 16 MiB."""
    return size + size // 10 + MARGIN_FIXED


def needs_export(current_version: str, exported: Marker | None, bundle_intact: bool) -> bool:
    """Export when nothing was exported yet, the image moved on, or the bundle is gone."""
    return exported is None or exported.version != current_version or not bundle_intact


def no_room(where: str, path: str, reference: str, need: int, free: int) -> str | None:
    """The reason ``reference`` cannot be written into ``path``, or ``None`` when it fits."""
    if need <= free:
        return None
    return f"not enough space in {where} {path} for {reference}: need {need} bytes, {free} free"


def plan_peer(
    markers: dict[str, Marker], inventory: Inventory, inbox: str = "(inbox)"
) -> list[PlanItem]:
    """For one peer: per exported image, skip, apply what is already there, or send.

    When the peer reported its inbox's free bytes, the bundles to send are counted against
    them in order (each with a margin); one that does not fit becomes :attr:`Step.NO_ROOM`
    and takes no room from the ones after it.
    """
    items = []
    reserved = 0
    for image, marker in markers.items():
        state = inventory.images.get(image)
        running = state.running if state else None
        if running == marker.version:
            items.append(PlanItem(image, marker, Step.SKIP, "peer runs this version"))
        elif state is not None and state.inbox == marker.version:
            items.append(PlanItem(image, marker, Step.APPLY, "bundle already in the inbox"))
        else:
            why = f"peer runs {running[:19]}" if running else "peer does not have it"
            if inventory.inbox_free is not None:
                need, free = with_margin(marker.size), inventory.inbox_free - reserved
                full = no_room("inbox", inbox, image, need, free)
                if full is not None:
                    if reserved:
                        full += f" (after {reserved} bytes for other images in this cycle)"
                    items.append(PlanItem(image, marker, Step.NO_ROOM, full))
                    continue
                reserved += need
            items.append(PlanItem(image, marker, Step.SEND, why))
    return items
