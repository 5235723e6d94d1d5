"""Which images a cycle distributes, and which of them each peer gets.

The source names exact references, globs over its ``repo:tag`` names (``acme/*:prod``)
and label selectors; a peer may be limited to some of them by its own ``images`` and its
``groups``. Deciding is pure (:func:`for_peer`, :func:`match`); only :func:`resolve`
asks the engine which tags exist.
"""

from __future__ import annotations

from imgsync import log
from imgsync.config import SourceConfig
from imgsync.engines.docker import Engine
from imgsync.errors import ImgsyncError
from imgsync.reference import is_pattern, match

__all__ = ["for_peer", "pull", "resolve"]


def resolve(engine: Engine, source: SourceConfig) -> list[str]:
    """Exact references in config order, then the tags that patterns and labels select,
    sorted; each once."""
    chosen = [s for s in source.images if not is_pattern(s)]
    patterns = [s for s in source.images if is_pattern(s)]
    if patterns:
        chosen += sorted(t for t in engine.tags() if any(match(p, t) for p in patterns))
    if source.labels:
        chosen += sorted(engine.tags(labels=source.labels))
    return list(dict.fromkeys(chosen))


def for_peer(images: list[str], selectors: tuple[str, ...] | None) -> list[str]:
    if selectors is None:
        return list(images)
    return [image for image in images if any(match(s, image) for s in selectors)]


def pull(engine: Engine, source: SourceConfig) -> None:
    """``pull = true``: refresh each exact reference from its registry. A registry that
    cannot be reached leaves the local image in use (air-gapped peers still get it)."""
    for image in (s for s in source.images if not is_pattern(s)):
        try:
            engine.pull(image)
        except ImgsyncError as err:
            log.get().warning("pull failed; using the local image", image=image, error=str(err))
