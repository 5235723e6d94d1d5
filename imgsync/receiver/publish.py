"""``[receiver] publish``: a peer pushing each verified version into a registry on its own
site, so the site's other nodes pull it there (a containerd ``hosts.toml`` mirror, Spegel).

**The tag scheme.** An image goes to the publish address under its repository path without
its registry host, with its own tag: with ``publish = "registry.site:5000"``,
``acme/web:1`` (``docker.io/acme/web:1``) is published as ``registry.site:5000/acme/web:1``
and ``x:1`` as ``registry.site:5000/library/x:1`` — the names a containerd mirror for
docker.io asks for. An image of another registry keeps that registry's host as its first
path component (``ghcr.io/acme/x:1`` → ``registry.site:5000/ghcr.io/acme/x:1``), so images
of two registries never share a name; a host that cannot be a path component (with a port,
or upper case) is not published (an error naming it). ``host:port/prefix`` puts everything
under the prefix (``registry.site:5000/mirror/acme/web:1``).

**When.** After a marker's version is loaded (or restored, or found already running under
its reference), and at the start of each session for the images the source asks about
(:func:`pending`, so a cycle with nothing to send still retries a failed push): a
name recorded as holding the version (:mod:`imgsync.receiver.published`) is left alone.
Otherwise the registry is asked first (another peer of the site may have pushed it); only
where it does not hold the version is the image pushed, then read back: the version is
published only when the registry's manifest names it as its config digest.

**Failures.** A publish that fails never undoes or fails the load, and never has the bundle
sent again: the outcome says ``publish_error`` (and the log, with the image and the
registry), and the next apply or session tries again. A registry that does not answer is
asked once per run: the images after it fail with the same error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imgsync import log, reference
from imgsync.adapters import registry
from imgsync.adapters.lock import cycle_lock
from imgsync.config import ReceiverConfig
from imgsync.configtypes import PATH_COMPONENT
from imgsync.engines.base import ReceivingEngine
from imgsync.errors import ImgsyncError, LockedError, MarkerError, RegistryError, StorageError
from imgsync.receiver import loaded, published
from imgsync.receiver.inbox import APPLY_LOCK, engine_for, open_inbox

DOCKER_HUB = ("docker.io", "index.docker.io")


class PublishError(ImgsyncError):
    """An image that cannot be published under the tag scheme."""


def target(address: str, image: str) -> str:
    """The name ``image`` is published under at ``address`` (see the module docstring)."""
    host, _, path = reference.qualified(image).partition("/")
    if host not in DOCKER_HUB:
        if not PATH_COMPONENT.fullmatch(host):
            raise PublishError(
                f"{image} is not published: its registry host {host} cannot be a repository "
                "path component at the site registry (a port, or upper case)"
            )
        path = f"{host}/{path}"
    try:
        return reference.normalize(f"{address}/{path}")
    except reference.InvalidReference as err:
        raise PublishError(f"{image} is not published: {err}") from None


class Publisher:
    """Publishes for one apply or session: one engine, one inbox, one registry address."""

    def __init__(
        self,
        engine: ReceivingEngine,
        inbox: Path,
        address: str,
        lookup: Callable[[str], set[str]] = registry.config_digests,
    ) -> None:
        self.engine, self.inbox, self.address, self._lookup = engine, inbox, address, lookup
        self._down: RegistryError | None = None  # the registry did not answer: not again
        self._recorded: dict[str, str] | None = None  # the record, read once (under the lock)

    def publish(self, image: str, version: str) -> tuple[str | None, str | None]:
        """Publish ``image`` when the engine runs ``version`` under it; return the name it
        is published under (None: not published) and why it failed (None: it did not)."""
        try:
            return self._publish(image, version), None
        except ImgsyncError as err:
            log.get().error("publish failed", image=image, registry=self.address,
                            version=version, error=str(err))  # fmt: skip
            return None, str(err)

    def _publish(self, image: str, version: str) -> str | None:
        name = target(self.address, image)
        if self._recorded is None:
            self._recorded = published.read(self.inbox)
        if self._recorded.get(name) == version:
            return name
        image_id = self.engine.image_id(image)
        if loaded.version_of(loaded.read(self.inbox), image_id) != version or image_id is None:
            return None  # it runs something else now: nothing of this version to publish
        if version in self._held(name):
            log.get().info("already in the registry", image=image, published=name)
        else:
            log.get().info("publishing", image=image, published=name, version=version)
            self.engine.push(image_id, name)
            found = self._held(name)
            if version not in found:
                raise RegistryError(
                    f"pushed {name}, but the registry's manifest names config "
                    f"{', '.join(sorted(found)) or 'nothing'}, not {version}"
                )
            log.get().info("published", image=image, published=name, version=version)
        published.record(self.inbox, name, version)
        self._recorded[name] = version
        return name

    def _held(self, name: str) -> set[str]:
        if self._down is not None:
            raise self._down
        try:
            return self._lookup(name)
        except RegistryError as err:
            if err.unreachable:
                self._down = err
            raise


def pending(receiver: ReceiverConfig, images: list[str]) -> None:
    """At a session's start: publish what the engine runs of ``images`` (by their markers
    in the inbox) and is not recorded as published — a push that failed before, or a
    ``publish`` newly set. Skipped while an apply holds the inbox (it publishes itself)."""
    if receiver.publish is None or not images:
        return
    inbox = open_inbox(receiver)
    try:
        with cycle_lock(inbox.path / APPLY_LOCK, wait=False), engine_for(receiver) as engine:
            publisher = Publisher(engine, inbox.path, receiver.publish)
            for image in images:
                try:
                    current = inbox.read_marker(image)
                except (MarkerError, StorageError):
                    continue  # apply says what is wrong with it
                if current is not None:
                    publisher.publish(current.reference, current.version)
    except LockedError:
        return
    except ImgsyncError as err:  # the engine, the inbox: the inventory says more
        log.get().warning("publish not retried", registry=receiver.publish, error=str(err))
