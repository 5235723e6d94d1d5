"""The Docker Engine adapter (docker-py). Every engine call imgsync makes is here.

``docker.errors`` and ``requests`` exceptions stop at this module: callers see
:class:`EngineError` or :class:`ImageNotFound`, worded with the engine and the image.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import docker
import docker.errors
import requests.exceptions

from imgsync.engines.base import DOCKER, EngineFacts, ImageInfo
from imgsync.errors import EngineError, ImageNotFound
from imgsync.model import chain_ids, runtime_config, store_of

SAVE_CHUNK = 1024 * 1024
_API_TIMEOUT = 600
_LOADED_ID = "Loaded image ID: "  # what docker load says of an image it loaded untagged


__all__ = ["Engine", "ImageEvents", "ImageInfo"]


class Engine:
    """One Docker engine, named by its ``docker_host`` (``None``: ``DOCKER_HOST`` or the
    local socket)."""

    UNREACHABLE = "cannot reach Docker at"  # how the errors begin when it does not answer

    def __init__(self, docker_host: str | None) -> None:
        self.name = docker_host or "the local Docker engine"
        self._store: str | None = None
        try:
            if docker_host:
                self._client = docker.DockerClient(base_url=docker_host, timeout=_API_TIMEOUT)
            else:
                self._client = docker.DockerClient.from_env(timeout=_API_TIMEOUT)
        except docker.errors.DockerException as err:
            raise EngineError(f"{self.UNREACHABLE} {self.name}: {err}") from None

    def close(self) -> None:
        self._client.close()

    def inspect(self, reference: str) -> ImageInfo:
        data = self._call(f"inspect {reference}", self._client.api.inspect_image, reference)
        return ImageInfo(
            id=str(data["Id"]),
            diff_ids=tuple(data.get("RootFS", {}).get("Layers") or ()),
            size=int(data.get("Size") or 0),
            runtime=runtime_config(data.get("Config"), data.get("Architecture"), data.get("Os")),
        )

    def image_id(self, reference: str) -> str | None:
        """The ID of the image under ``reference``, or ``None`` when there is none."""
        try:
            return self.inspect(reference).id
        except ImageNotFound:
            return None

    def save(self, reference: str) -> Iterator[bytes]:
        """Stream ``docker save REFERENCE`` (saved by name, so the tarball carries the tag)."""
        stream = self._call(
            f"save {reference}", self._client.api.get_image, reference, chunk_size=SAVE_CHUNK
        )
        try:
            yield from stream
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise EngineError(f"docker save {reference} on {self.name} failed: {err}") from None

    def load(
        self, tarball: BinaryIO | Iterator[bytes], what: str, reference: str | None = None
    ) -> list[str]:
        """``docker load`` a tarball (a file, or its bytes as they come); return the IDs of
        the images it loaded untagged; raise :class:`EngineError` with the engine's
        message. (``reference`` needs nothing: the tarball carries its tag.)"""
        stream = self._call(f"load {what}", self._client.api.load_image, tarball, quiet=True)
        loaded = []
        try:
            for item in stream:
                item = _raise_stream_error(item, f"docker load {what} on {self.name}")
                said = str(item.get("stream") or "") if isinstance(item, dict) else ""
                if said.startswith(_LOADED_ID):
                    loaded.append(said.removeprefix(_LOADED_ID).strip())
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise EngineError(f"docker load {what} on {self.name} failed: {err}") from None
        return loaded

    def tag(self, image_id: str, reference: str) -> None:
        repository, _, tag = reference.rpartition(":")
        self._call(f"tag {reference}", self._client.api.tag, image_id, repository, tag, force=True)

    def remove_image(self, image_id: str) -> bool:
        """Remove an image by ID, never forced. True: it is gone. False: Docker keeps it
        because a container uses it, or a tag still points at it (removing it by ID would
        silently drop that tag, so it is not asked to)."""
        try:
            data = self._call(f"inspect {image_id}", self._client.api.inspect_image, image_id)
        except ImageNotFound:
            return True
        if data.get("RepoTags"):
            return False
        try:
            self._client.api.remove_image(image_id, force=False, noprune=False)
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as err:
            if err.status_code == 409:  # conflict: in use by a container, or referenced
                return False
            raise EngineError(
                f"docker rmi {image_id[:19]} on {self.name} failed: {_explain(err)}"
            ) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise EngineError(f"{self.UNREACHABLE} {self.name} (rmi): {err}") from None
        return True

    def tags(self, labels: list[str] | None = None) -> list[str]:
        """Every ``repo:tag`` the engine holds (with all of ``labels``, when given)."""
        filters = {"label": labels} if labels else None
        found = self._call("list images", self._client.api.images, filters=filters)
        return sorted(
            str(tag) for item in found for tag in item.get("RepoTags") or () if "<none>" not in tag
        )

    def pull(self, reference: str) -> None:
        repository, _, tag = reference.rpartition(":")
        stream = self._call(
            f"pull {reference}", self._client.api.pull, repository, tag=tag, stream=True,
            decode=True,
        )  # fmt: skip
        self._drain(stream, f"docker pull {reference}")

    def _drain(self, stream: Any, what: str) -> None:
        """Read a pull's or push's progress to its end; its first error is ours."""
        try:
            for item in stream:
                _raise_stream_error(item, f"{what} on {self.name}")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise EngineError(f"{what} on {self.name} failed: {err}") from None

    def push(self, image_id: str, target: str) -> None:
        """``docker tag`` the image as ``target``, ``docker push`` it (credentials: the
        ``docker login`` of the user imgsync runs as), then take the name off again unless
        it is the image's only one (removing it would remove the image)."""
        repository, _, tag = target.rpartition(":")
        self._call(f"tag {target}", self._client.api.tag, image_id, repository, tag, force=True)
        try:
            stream = self._call(
                f"push {target}", self._client.api.push, repository, tag=tag, stream=True,
                decode=True,
            )  # fmt: skip
            self._drain(stream, f"docker push {target}")
        finally:
            self._untag(target)

    def _untag(self, name: str) -> None:
        with contextlib.suppress(EngineError):
            data = self._call(f"inspect {name}", self._client.api.inspect_image, name)
            if len(data.get("RepoTags") or ()) > 1:
                self._call(f"untag {name}", self._client.api.remove_image, name, noprune=True)

    def image_ids(self) -> set[str]:
        """The ID of every image the engine holds (tagged or not)."""
        found = self._call("list images", self._client.api.images, all=True)
        return {str(item["Id"]) for item in found}

    def layer_chains(self) -> set[str]:
        """Chain IDs of every layer the engine holds under some image: what a thin bundle
        may leave out. A layer's chain ID names it together with everything beneath it."""
        chains: set[str] = set()
        for summary in self._call("list images", self._client.api.images):
            try:
                diff_ids = self.inspect(str(summary["Id"])).diff_ids
            except ImageNotFound:
                continue  # removed while we looked
            chains.update(chain_ids(diff_ids))
        return chains

    def store(self) -> str:
        """``containerd`` for the containerd image store (snapshotters), else ``classic``:
        asked once per engine (a store changes only with a restart of the daemon), though
        apply needs it for every marker it loads."""
        if self._store is None:
            self._store = store_of(self._call("info", self._client.api.info).get("DriverStatus"))
        return self._store

    def version(self) -> dict[str, Any]:
        return dict(self._call("version", self._client.api.version))

    def layer_blobs(self) -> dict[str, str]:
        """Docker keeps no such map: the receiver records the blobs it loaded (loaded.py)."""
        return {}

    def ids_are_versions(self) -> bool:
        return self.store() == "classic"

    def facts(self) -> EngineFacts:
        return EngineFacts(DOCKER, str(self.version().get("Version") or "unknown"), self.store())

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {args[0]} not found on {self.name}") from None
        except docker.errors.NotFound as err:
            raise ImageNotFound(f"{what}: not found on {self.name} ({_explain(err)})") from None
        except docker.errors.APIError as err:
            raise EngineError(f"docker {what} on {self.name} failed: {_explain(err)}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise EngineError(f"{self.UNREACHABLE} {self.name} ({what}): {err}") from None


def _explain(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)


def _raise_stream_error(item: Any, what: str) -> Any:
    """The item (decoded); raise :class:`EngineError` when it reports an error."""
    if isinstance(item, bytes):
        item = json.loads(item)
    if isinstance(item, dict) and (item.get("error") or item.get("errorDetail")):
        detail = item.get("errorDetail") or {}
        raise EngineError(f"{what} failed: {item.get('error') or detail.get('message')}")
    return item


class ImageEvents:
    """The engine's image event stream (tag, load, pull, import, …), closable from another
    thread. Iterating yields ``(action, name)``; a dropped stream raises EngineError."""

    def __init__(self, engine: Engine, since: float | None = None) -> None:
        self._engine = engine
        stream = engine._call(
            "events",
            engine._client.api.events,
            decode=True,
            filters={"type": "image"},
            since=since,
        )
        self._stream: Any = stream

    def __iter__(self) -> Iterator[tuple[str, str]]:
        try:
            for event in self._stream:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                action = str(event.get("Action") or event.get("status") or "")
                yield action, str(attributes.get("name") or event.get("id") or "")
        except Exception as err:  # requests, urllib3, socket errors: all mean "dropped"
            raise EngineError(f"event stream of {self._engine.name} dropped: {err}") from None

    def close(self) -> None:
        # best effort: the stream may already be gone
        with contextlib.suppress(OSError, AttributeError, requests.exceptions.RequestException):
            self._stream.close()
