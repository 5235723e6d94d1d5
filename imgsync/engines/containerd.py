"""The containerd adapter: a Kubernetes node's containerd (k3s, kubeadm), no Docker, through
``ctr`` — ``[receiver] ctr`` (``k3s ctr`` on k3s), ``address`` (the socket) and
``namespace`` (``k8s.io``, where the CRI plugin and so kubelet look).

- **IDs are versions.** An image's ID here is its config digest, read from the content
  store's labels (:mod:`imgsync.engines.ctrcatalog`): the same on every node, whatever
  manifest the import wrote.
- **Names are qualified.** containerd and kubelet name ``acme/web:1`` as
  ``docker.io/acme/web:1``; every reference is qualified on the way in
  (:func:`imgsync.reference.qualified`), and a load leaves the qualified name pointing at
  the bundle's image even when the bundle's own annotation names it otherwise.
- **Loads are client-side.** ``ctr images import`` with ``--local`` where ``ctr`` has it
  (1.7+; an import through the transfer service is not seen by the CRI), one platform (never
  ``--all-platforms``: a Docker 25+ index may name manifests the bundle does not carry).
- **Pinned.** With ``[receiver] pin`` (the default) each name imgsync sets is labelled
  ``io.cri-containerd.pinned=pinned``, which kubelet's image GC honours from containerd 1.7.
  An image collected all the same (1.6) is simply missing at the next cycle, and sent again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from imgsync import reference as refs
from imgsync.adapters import command
from imgsync.engines.base import CONTAINERD, EngineFacts, ImageInfo
from imgsync.engines.ctrcatalog import Catalog, parse_content, parse_images
from imgsync.errors import EngineError, ImageNotFound
from imgsync.model import VERSION_RE, runtime_config

PIN = "io.cri-containerd.pinned=pinned"
CRI_NAMESPACE = "k8s.io"
CONFIG_MAX = 1024 * 1024  # the most one image's config may be
LISTING_MAX = 64 * 1024 * 1024  # the most a listing may say (~200k blobs): a node's, bounded
_CHANGES = {("images", "import"), ("images", "tag"), ("images", "label"), ("images", "rm")}
_IMPORTED = re.compile(r"unpacking (\S+) \((sha256:[0-9a-f]{64})\)")


class ContainerdEngine:
    def __init__(self, address: str, namespace: str, ctr: list[str], pin: bool = True) -> None:
        self.name = f"containerd at {address} (namespace {namespace})"
        self.namespace = namespace
        self._ctr_argv = [*ctr, "--address", address, "--namespace", namespace]
        self._pin = pin
        self._local: bool | None = None  # does this ctr import with --local?
        self._catalog: Catalog | None = None  # read once until imgsync changes something

    def close(self) -> None:
        pass

    # -- reading ----------------------------------------------------------------------------
    def catalog(self) -> Catalog:
        """What the namespace holds: two ``ctr`` listings, read once per engine (an
        inventory asks for every image) and again after each change imgsync makes."""
        if self._catalog is None:
            names = parse_images(self._listing("images", "ls"))
            content = parse_content(self._listing("content", "ls"))
            self._catalog = Catalog(names, content)
        return self._catalog

    def _config_of(self, catalog: Catalog, reference: str) -> str | None:
        if VERSION_RE.fullmatch(reference):
            return reference if catalog.names_of(reference) else None
        for name in dict.fromkeys((refs.qualified(reference), reference)):
            config = catalog.config(name)
            if config is not None:
                return config
        return None

    def inspect(self, reference: str) -> ImageInfo:
        config = self._config_of(self.catalog(), reference)
        if config is None:
            raise ImageNotFound(f"image {reference} not found on {self.name}")
        data = _config_json(self._ctr("content", "get", config), config)
        rootfs = data.get("rootfs")
        listed = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        diff_ids = tuple(str(d) for d in (listed if isinstance(listed, list) else ()))
        runtime = runtime_config(data.get("config"), data.get("architecture"), data.get("os"))
        return ImageInfo(config, diff_ids, 0, runtime)

    def image_id(self, reference: str) -> str | None:
        return self._config_of(self.catalog(), reference)

    def image_ids(self) -> set[str]:
        return self.catalog().configs()

    def layer_blobs(self) -> dict[str, str]:
        return self.catalog().layer_blobs()

    def layer_chains(self) -> set[str]:
        return set(self.layer_blobs())

    def store(self) -> str:
        return CONTAINERD

    def ids_are_versions(self) -> bool:
        return True

    def push(self, image_id: str, target: str) -> None:
        raise EngineError(f"{self.name}: imgsync does not publish from containerd peers")

    def facts(self) -> EngineFacts:
        version = self._server_version()
        cri = _cri_state(self._ctr("plugins", "ls").decode("utf-8", "replace"))
        problems, notes = [], []
        if self.namespace == CRI_NAMESPACE and cri != "ok":
            problems.append(
                f"its CRI plugin is {cri or 'not loaded'}, so kubelet will not see what imgsync "
                "loads: enable the cri plugin in containerd's config (disabled_plugins)"
            )
        elif self.namespace != CRI_NAMESPACE and cri == "ok":
            problems.append(
                f"namespace {self.namespace} is not where kubelet looks: set [receiver] "
                f'namespace = "{CRI_NAMESPACE}" on the peer (or leave it out)'
            )
        if cri == "ok":
            notes.append(f"CRI on, namespace {self.namespace}")
        if self._pin:
            pinning = "not honoured before 1.7" if _older_than(version, (1, 7)) else "on"
            notes.append(f"pinning {pinning}")
        return EngineFacts(CONTAINERD, version, CONTAINERD, tuple(problems), tuple(notes))

    # -- changing ---------------------------------------------------------------------------
    def load(
        self, tarball: BinaryIO | Iterator[bytes], what: str, reference: str | None = None
    ) -> list[str]:
        args = ["images", "import", *(["--local"] if self._imports_locally() else []), "-"]
        said = self._ctr(*args, stdin=tarball, timeout=3600, what=f"import {what}")
        found = (m[1] for m in _IMPORTED.finditer(said.decode("utf-8", "replace")))
        imported = [name for name in found if name[:1].isalnum()]  # never a ctr flag
        if reference is not None:
            name = refs.qualified(reference)
            if name not in imported:
                if not imported:
                    raise EngineError(f"ctr import {what} on {self.name} imported no image")
                self._ctr("images", "tag", "--force", imported[0], name)
            if reference != name and reference in imported:  # an OCI annotation's own spelling
                self._ctr("images", "rm", reference)
            self._pin_name(name)
        return []

    def tag(self, image_id: str, reference: str) -> None:
        names = self.catalog().names_of(image_id)
        if not names:
            raise ImageNotFound(f"image {image_id} not found on {self.name}")
        name = refs.qualified(reference)
        self._ctr("images", "tag", "--force", names[0], name)
        self._pin_name(name)

    def remove_image(self, image_id: str) -> bool:
        """Remove the image with config ``image_id`` when only the CRI's own name
        (``sha256:…``) is left on it; False while any other name points at it."""
        names = self.catalog().names_of(image_id)
        if any(not VERSION_RE.fullmatch(name) for name in names):
            return False
        if names:
            self._ctr("images", "rm", *names)
        return True

    def _pin_name(self, name: str) -> None:
        if self._pin:
            self._ctr("images", "label", name, PIN)

    # -- ctr ----------------------------------------------------------------------------------
    def _imports_locally(self) -> bool:
        if self._local is None:
            help_text = self._ctr("images", "import", "--help").decode("utf-8", "replace")
            self._local = "--local" in help_text
        return self._local

    def _server_version(self) -> str:
        said = self._ctr("version").decode("utf-8", "replace")
        server = said.partition("Server:")[2]
        found = re.search(r"Version:\s*(\S+)", server)
        return found[1] if found else "unknown"

    def _listing(self, *args: str) -> str:
        """A whole ``ctr … ls``: one cut short would hide images, and imgsync would send
        them again every cycle, so a listing too long to read is an error."""
        done = self._ctr(*args, limit=LISTING_MAX)
        return done.decode("utf-8", "replace")

    def _ctr(
        self,
        *args: str,
        stdin: BinaryIO | Iterator[bytes] | None = None,
        timeout: float = 120,
        what: str | None = None,
        limit: int = command.OUTPUT_KEPT,
    ) -> bytes:
        doing = f"ctr {what or ' '.join(args[:2])} on {self.name}"
        try:
            done = command.run([*self._ctr_argv, *args], stdin=stdin, timeout=timeout, limit=limit)
        except EngineError as err:  # could not run it, or it hung
            raise EngineError(f"{doing}: {err}") from None
        if args[:2] in _CHANGES:
            self._catalog = None  # read the namespace again next time
        if not done.ok:
            raise EngineError(f"{doing}: {done.why()}")
        if done.truncated:
            raise EngineError(f"{doing}: said more than {limit} bytes; not read")
        return done.stdout


def _config_json(raw: bytes, digest: str) -> dict[str, Any]:
    try:
        data = json.loads(raw[:CONFIG_MAX]) if len(raw) <= CONFIG_MAX else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise EngineError(f"the config {digest} in containerd's content store is not JSON")
    return data


def _cri_state(plugins: str) -> str | None:
    """The CRI plugin's status in ``ctr plugins ls`` (``ok``, ``error``, …), or None."""
    for line in plugins.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "io.containerd.grpc.v1" and fields[1] == "cri":
            return fields[-1]
    return None


def _older_than(version: str, wanted: tuple[int, int]) -> bool:
    found = re.match(r"v?([0-9]+)\.([0-9]+)", version)
    return found is not None and (int(found[1]), int(found[2])) < wanted
