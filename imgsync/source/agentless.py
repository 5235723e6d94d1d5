"""One agentless peer's part of a cycle (``mode = "agentless"``): the peer runs only sshd
and Docker, no imgsync, so the source does the peer's part itself over SSH.

Every step is one command run as an argv (quoted word by word, no shell string), using
only the peer's ``docker_command`` and coreutils:

1. ``docker image inspect --format {{json .}} -- REF`` per image; the peer runs the
   marker's version → ``unchanged``, nothing is sent. On the classic image store the
   image ID is the version. On the containerd store it is a manifest digest, another one
   on every engine, and the peer keeps no record of what it loaded (stateless): there
   "the same" means the same layers (diff IDs, the marker's) and the same runtime config
   (``Cmd``, ``Env``, ``Labels``, …, architecture, OS: the config in the bundle in the
   export dir, read without scanning the layers). See :func:`imgsync.engines.identity.matches`.
2. ``mkdir -p INBOX``, then the bundle streamed as the stdin of
   ``dd of=INBOX/.part-NAME bs=1M conv=fsync status=none``.
3. ``stat`` and ``sha256sum`` of ``.part-NAME`` on the peer, compared with the marker's
   size and sha256 *before* anything is loaded: a mismatch removes the file and fails the
   image, the running image untouched. The marker comes from the source's own checked
   export, so matching it means the bundle is that export, byte for byte. Then
   ``mv -f .part-NAME NAME`` (an atomic rename in the inbox).
4. ``docker load -q -i INBOX/NAME``, then ``inspect`` again: the reference must now be the
   marker's version, by the same rule as in step 1; if not, the image it named before is
   tagged back and the image fails.

What differs from a peer with the agent:

- **Full bundles only**: there is no layer inventory to ask, so no thin bundles.
- **Sent raw**: ``dd`` cannot inflate zstd, so ``compression`` is ignored (``max_rate`` holds).
- **No resume and no inbox copies**: an upload cut off is sent again from the start (``dd``
  truncates ``.part-NAME``), and the bundle is removed once loaded or refused.
- The SSH user must be allowed to run ``docker_command`` (e.g. ``sudo docker`` or
  ``docker -H unix:///…``), so the key cannot be locked to ``imgsync serve``.

A command that fails for one image fails that image; a failing link fails the peer, and
:func:`imgsync.source.peer.sync_peer` retries it. So does a ``docker_command`` that cannot even
inspect: nothing can be done on that peer.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from imgsync import log, protocol
from imgsync.adapters.fsutil import PARTIAL_PREFIX
from imgsync.adapters.transport import CommandResult, SshSession
from imgsync.bundle.payload import Payload
from imgsync.bundle.verify import bundle_runtime
from imgsync.config import PeerSettings
from imgsync.engines import identity
from imgsync.engines.base import ImageInfo
from imgsync.errors import EngineError, RemoteCommandError, StorageError, VerificationError
from imgsync.model import (
    Action,
    ApplyOutcome,
    HeldLayers,
    Inventory,
    Marker,
    PeerImage,
    RuntimeConfig,
    store_of,
)
from imgsync.source.link import IMAGE_ERRORS, Advance
from imgsync.source.live import LivePayload

_SHA256SUM = re.compile(r"\\?([0-9a-f]{64})\s")  # GNU prefixes "\" when it escapes the name


class Shell(Protocol):
    """What this module needs of :class:`SshSession` (a fake in the unit tests)."""

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult: ...

    def send(
        self,
        what: str,
        chunks: Iterator[bytes],
        argv: Sequence[str],
        timeout: float,
        max_rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, CommandResult]: ...


class AgentlessLink:
    """The :class:`~imgsync.source.link.PeerLink` of an agentless peer: each step a command."""

    streams = False  # ``dd`` takes a whole file; its size and sha256 are checked after

    def __init__(
        self, shell: Shell, peer: PeerSettings, export_dir: Path, ssh: SshSession | None = None
    ) -> None:
        self._remote, self.peer, self._export_dir, self._ssh = (
            _Remote(shell, peer),
            peer,
            export_dir,
            ssh,
        )
        self.engine_version: str | None = None
        self.store: str | None = None
        self._running: dict[str, ImageInfo | None] = {}
        self._runtimes: dict[str, Callable[[], RuntimeConfig]] = {}
        self._refused: dict[str, str] = {}  # image: why its bundle cannot be judged
        self._inbox_ready = False

    @classmethod
    def connect(cls, peer: PeerSettings, export_dir: Path, stop: threading.Event) -> AgentlessLink:
        ssh = SshSession(peer, stop)
        ssh.connect()
        link = cls(ssh, peer, export_dir, ssh)
        link.engine_version, link.store = docker_info(ssh, peer)
        return link

    def inventory(self, images: Sequence[str]) -> Inventory:
        self._running = {image: self._remote.inspect(image) for image in images}
        return Inventory(
            {
                image: PeerImage(info.id if info else None, None)
                for image, info in self._running.items()
            }
        )

    def recognise(self, markers: Mapping[str, Marker], inventory: Inventory) -> Inventory:
        """The marker's version where the peer runs the same image (:func:`_same`)."""
        images = dict(inventory.images)
        for image, exported in markers.items():
            runtime = self._runtimes[image] = functools.cache(  # read only if layers match
                functools.partial(
                    bundle_runtime, self._export_dir / exported.bundle, exported.version
                )
            )
            info = self._running.get(image)
            try:
                if info is not None and _same(info, exported, runtime):
                    images[image] = PeerImage(exported.version, None)
            except VerificationError as err:
                self._refused[image] = str(err)
        return replace(inventory, images=images)

    def held_layers(self, chains: Sequence[str]) -> HeldLayers:
        return HeldLayers("agentless", set())  # no layer inventory: full bundles only

    def send_bundle(
        self, bundle: Payload | LivePayload, sent: Marker, offset: int, advance: Advance | None
    ) -> int:
        """Upload (from the start: ``dd`` truncates), check size and sha256 there, rename."""
        if sent.reference in self._refused:
            raise VerificationError(self._refused[sent.reference])
        if isinstance(bundle, LivePayload):  # the orchestration waits: this link never streams
            raise StorageError(f"{bundle.name} is still being exported")
        remote = self._remote
        if not self._inbox_ready:
            remote.check(["mkdir", "-p", "--", self.peer.inbox], StorageError, "creating the inbox")
            self._inbox_ready = True
        part, final = self._paths(sent)
        try:
            sent_bytes = remote.upload(bundle, part, advance)
            remote.verify(sent, part)
            remote.check(["mv", "-f", "--", part, final], StorageError, f"renaming {part}")
        except IMAGE_ERRORS:
            remote.remove(part, final)
            raise
        return sent_bytes

    def send_marker(self, sent: Marker) -> int:
        return 0  # the source keeps the marker: it loads and checks here itself

    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        return [self._load(exported) for exported in markers]

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()

    def _load(self, exported: Marker) -> ApplyOutcome:
        """Load and check one bundle; it is removed on the peer whatever the outcome."""
        image, started = exported.reference, time.monotonic()
        info = self._running.get(image)
        before = info.id if info is not None else None
        final = self._paths(exported)[1]
        try:
            self._remote.load(exported, final, before, self._runtimes[image])
        except IMAGE_ERRORS as err:
            log.get().error("agentless apply failed", image=image, error=str(err))
            return ApplyOutcome(image, None, Action.FAILED, time.monotonic() - started, str(err))
        finally:
            self._remote.remove(final)
        log.get().info("loaded", image=image, version=exported.version)
        return ApplyOutcome(image, exported.version, Action.LOADED, time.monotonic() - started)

    def _paths(self, exported: Marker) -> tuple[str, str]:
        inbox = self.peer.inbox
        return f"{inbox}/{PARTIAL_PREFIX}{exported.bundle}", f"{inbox}/{exported.bundle}"


def docker_info(ssh: Shell, peer: PeerSettings) -> tuple[str | None, str | None]:
    """The peer's Docker version and image store, from ``docker info`` through its
    ``docker_command``; ``(None, None)`` when it does not say (the steps that follow
    report why)."""
    template = '{"version":{{json .ServerVersion}},"status":{{json .DriverStatus}}}'
    answer = ssh.run([*peer.docker_argv, "info", "--format", template], peer.io_timeout)
    if answer.exit_status != 0 or len(answer.stdout) > identity.INSPECT_MAX:
        return None, None
    try:
        data = json.loads(answer.stdout)
    except (ValueError, RecursionError):
        return None, None
    version = protocol.printable(data.get("version")) if isinstance(data, dict) else None
    if version is None:
        return None, None
    return version, store_of(data.get("status"))


def _same(info: ImageInfo, exported: Marker, runtime: Callable[[], RuntimeConfig]) -> bool:
    return identity.matches(info.id, info.diff_ids, info.runtime, exported, runtime)


class _Remote:
    """The commands run on one agentless peer."""

    def __init__(self, ssh: Shell, peer: PeerSettings) -> None:
        self.ssh, self.peer = ssh, peer
        self.docker = list(peer.docker_argv)

    def _run(self, argv: Sequence[str]) -> CommandResult:
        return self.ssh.run(argv, timeout=self.peer.apply_timeout)

    def check(self, argv: Sequence[str], error: type[Exception], doing: str) -> CommandResult:
        answer = self._run(argv)
        if answer.exit_status != 0:
            status, why = answer.exit_status, answer.last_error_line()
            raise error(f"{doing} failed ({argv[0]} exited {status}): {why}")
        return answer

    def inspect(self, reference: str) -> ImageInfo | None:
        """What the peer's Docker shows under ``reference`` (``None``: no such image). A
        docker command that cannot answer, or answers nonsense, fails the peer: no step can
        work there."""
        inspect = ["image", "inspect", "--format", "{{json .}}", "--", reference]
        answer = self._run([*self.docker, *inspect])
        said = answer.stderr.lower()
        if answer.exit_status in (1, 125) and (b"no such image" in said or b"not known" in said):
            return None  # Docker: "No such image"; Podman (125): "image not known"
        if answer.exit_status != 0:
            what = f"exited {answer.exit_status}: {answer.last_error_line()}"
        elif len(answer.stdout) > identity.INSPECT_MAX:
            what = f"answered more than {identity.INSPECT_MAX} bytes"
        else:
            try:
                return identity.from_inspect(json.loads(answer.stdout))
            except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
                what = f"answered {answer.stdout[:80]!r} ({str(err)[:120]})"
        raise RemoteCommandError(
            f"peer {self.peer.name}: docker command {shlex.join(self.docker)!r} cannot inspect "
            f"{reference}: it {what}"
        )

    def upload(self, bundle: Payload, part: str, advance: Advance | None) -> int:
        argv = ["dd", f"of={part}", "bs=1M", "conv=fsync", "status=none"]
        timeout, rate = self.peer.apply_timeout, self.peer.max_rate_bytes
        sent, answer = self.ssh.send(bundle.name, bundle.chunks(), argv, timeout, rate, advance)
        if answer.exit_status != 0:
            raise StorageError(
                f"writing {part} failed (dd exited {answer.exit_status}): "
                f"{answer.last_error_line()}"
            )
        return sent

    def verify(self, exported: Marker, part: str) -> None:
        """Size and sha256 of the uploaded file, on the peer, against the marker."""
        name = exported.bundle
        text = self.check(["stat", "-c", "%s", "--", part], StorageError, f"stat {part}").stdout
        size = text.decode("utf-8", "replace").strip()
        if size != str(exported.size):
            raise VerificationError(
                f"bundle {name} arrived with {size} bytes, its marker says {exported.size}; "
                f"removed, {exported.reference} left as it was"
            )
        answer = self.check(["sha256sum", "--", part], StorageError, f"sha256sum {part}")
        match = _SHA256SUM.match(answer.stdout.decode("utf-8", "replace"))
        if match is None:
            raise StorageError(f"sha256sum {part} gave no digest: {answer.stdout[:100]!r}")
        if match[1] != exported.sha256:
            raise VerificationError(
                f"bundle {name} arrived with sha256 {match[1][:16]}…, its marker says "
                f"{exported.sha256[:16]}… (corrupted or tampered); removed, "
                f"{exported.reference} left as it was"
            )

    def load(
        self, exported: Marker, final: str, before: str | None, runtime: Callable[[], RuntimeConfig]
    ) -> None:
        """``docker load`` the bundle; the reference must then be the marker's version (as
        :func:`_same` says), or the image it named before is tagged back."""
        reference = exported.reference
        answer = self._run([*self.docker, "load", "--quiet", "--input", final])
        shown = self.inspect(reference)
        why = "other layers or runtime config"
        try:
            if shown is not None and _same(shown, exported, runtime):
                return  # even if the CLI complained: the engine runs what was asked for
        except VerificationError as err:  # the source's bundle: nothing to compare with
            why = str(err)
        after = shown.id if shown is not None else None
        if before is not None and after != before:
            back = f"tagging {before[:19]} back as {reference}"
            self.check([*self.docker, "tag", "--", before, reference], EngineError, back)
        kept = "the previous image was kept" if before else "nothing ran under it before"
        if answer.exit_status != 0:
            raise EngineError(
                f"docker load of {exported.bundle} failed (exit {answer.exit_status}): "
                f"{answer.last_error_line()}; {kept}"
            )
        raise VerificationError(
            f"after loading {exported.bundle}, {reference} is {after}, which is not "
            f"{exported.version} ({why}); {kept}"
        )

    def remove(self, *paths: str) -> None:
        """Best effort: a file left behind is overwritten by the next upload of its name."""
        answer = self._run(["rm", "-f", "--", *paths])
        if answer.exit_status != 0:
            log.get().warning(
                "bundle not removed", paths=list(paths), error=answer.last_error_line()
            )
