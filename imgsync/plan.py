"""Pure decisions over data: what to export, and what each peer needs. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imgsync.model import Inventory, Marker, chain_ids

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


def thin_layers(items: list[PlanItem], held: set[str]) -> dict[str, tuple[int, ...]]:
    """Per image to send: the positions of layers the peer need not get, because it holds
    them (``held``: chain IDs) or gets them earlier in this cycle (a base shared by two
    images travels once; the peer applies in this order). Empty: send the full bundle."""
    have = set(held)
    omitted = {}
    for item in items:
        if item.step is not Step.SEND:
            continue
        chains = chain_ids(item.marker.layers)
        omitted[item.image] = tuple(i for i, chain in enumerate(chains) if chain in have)
        have.update(chains)
    return omitted


def needs_blobs(store: str | None) -> bool:
    """Does a peer with this image store reuse a layer only from the very blob (so a thin
    bundle must be in the OCI layout, and the source must know its blobs)?"""
    return store in ("containerd", "podman")


def thin_positions(
    store: str,
    positions: tuple[int, ...],
    chains: list[str],
    peer_blobs: dict[str, str],
    bundle_blobs: list[str] | None,
) -> tuple[int, ...]:
    """Which of ``positions`` (layers the peer holds, by chain ID) a bundle may really leave
    out for an engine with this image ``store``.

    The classic store skips any layer whose chain ID it holds, whatever the layout: all of
    them. The containerd store needs the blob itself: a legacy bundle (``bundle_blobs`` is
    None) that leaves out its ``<id>/layer.tar`` fails to load ("layer not found"), and an
    OCI one that leaves out a blob the peer holds only as another blob (same layer, other
    compression) loads but leaves an image ``docker save`` cannot write (Docker 26.1). So
    there, only layers whose blob the peer recorded (``peer_blobs``: chain ID → digest) as
    this bundle's. Podman likewise (it reuses a layer from the blob it holds it by; a legacy
    bundle missing one fails). Any other store: none."""
    if store == "classic":
        return positions
    if not needs_blobs(store) or bundle_blobs is None:
        return ()
    return tuple(i for i in positions if peer_blobs.get(chains[i]) == bundle_blobs[i])


def needs_export(image_id: str, exported: Marker | None, bundle_intact: bool) -> bool:
    """Export when nothing was exported yet, the image moved on (the engine's ID for it is
    not the one exported), or the bundle is gone."""
    return exported is None or exported.source_id != image_id or not bundle_intact


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
