"""Pure decisions over data: what to export, and what each peer needs. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imgsync.model import Inventory, Marker


class Step(StrEnum):
    SKIP = "skip"  # the peer already runs this version
    APPLY = "apply"  # the bundle is already in the peer's inbox: only apply it
    SEND = "send"  # upload the bundle and its marker, then apply


@dataclass(frozen=True)
class PlanItem:
    image: str
    marker: Marker
    step: Step
    reason: str


def needs_export(current_version: str, exported: Marker | None, bundle_intact: bool) -> bool:
    """Export when nothing was exported yet, the image moved on, or the bundle is gone."""
    return exported is None or exported.version != current_version or not bundle_intact


def plan_peer(markers: dict[str, Marker], inventory: Inventory) -> list[PlanItem]:
    """For one peer: per exported image, skip, apply what is already there, or send."""
    items = []
    for image, marker in markers.items():
        state = inventory.images.get(image)
        running = state.running if state else None
        if running == marker.version:
            items.append(PlanItem(image, marker, Step.SKIP, "peer runs this version"))
        elif state is not None and state.inbox == marker.version:
            items.append(PlanItem(image, marker, Step.APPLY, "bundle already in the inbox"))
        else:
            why = f"peer runs {running[:19]}" if running else "peer does not have it"
            items.append(PlanItem(image, marker, Step.SEND, why))
    return items
