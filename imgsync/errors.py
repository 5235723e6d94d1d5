"""The imgsync exception tree.

Everything imgsync raises on purpose derives from :class:`ImgsyncError`. Library
exceptions (``docker.errors``, ``requests``, ``paramiko``, ``OSError`` from files we
own) are translated at the adapter boundary (``engine``, ``transport``, ``state``,
``fsutil``), so nothing above the adapters imports or catches them.

::

    ImgsyncError                 base; ``str(err)`` is one line for a human
    ├── ConfigError              the config file is missing, not TOML, or breaks the schema
    ├── InvalidReference         not a tagged Docker image reference (also a ValueError,
    │                            so the config schema reports it with its key path)
    ├── LockedError              another cycle holds this host's lock (``--no-wait``)
    ├── Refused                  ``serve`` refused a request (imgsync/actions/serve.py)
    ├── StateError               the state DB is unreadable or has an unknown format
    ├── EngineError              the Docker engine refused or failed a request
    │   ├── ImageNotFound        a reference is not present in that engine
    │   └── RegistryError        a site registry (``[receiver] publish``) did not answer,
    │                            or said something else than a manifest
    ├── TransportError           SSH/SFTP to a peer failed
    │   ├── ConnectError         unreachable, refused, or timed out
    │   ├── HostKeyError         unknown or changed host key (names the fingerprint)
    │   ├── AuthError            key rejected, or the key file is unusable/unsafe
    │   └── RemoteCommandError   a command on the peer exited non-zero or said nonsense
    │       └── ProtocolError    a peer's answer or session frame is not what the protocol
    │                            says (imgsync/protocol.py, imgsync/frames.py)
    ├── MarkerError              a marker is unreadable, too big, or of an unknown format
    ├── VerificationError        a bundle does not match its marker, or a load did not
    │   │                        produce the marker's version
    │   └── MissingLayers        a thin bundle relies on layers the engine does not hold
    └── StorageError             a local file or folder could not be read or written

``main()`` catches :class:`ImgsyncError`, prints ``str(err)`` on one line and returns
``err.exit_code``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a peer x image failed; details in the results
    CONFIG = 2  # config or usage error: nothing ran
    LOCKED = 3  # another cycle runs and --no-wait was given
    REFUSED = 4  # serve: the request is not one imgsync's sync makes
    INTERRUPTED = 130


class ImgsyncError(Exception):
    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(ImgsyncError):
    exit_code = ExitCode.CONFIG

    def __init__(self, source: str, problems: list[str] | None = None) -> None:
        self.source = source
        self.problems = problems or []
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.problems:
            return self.source
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{self.source}: {len(self.problems)} errors\n{lines}"


class LockedError(ImgsyncError):
    exit_code = ExitCode.LOCKED


class StateError(ImgsyncError):
    pass


class EngineError(ImgsyncError):
    pass


class ImageNotFound(EngineError):
    pass


class RegistryError(EngineError):
    """A site registry imgsync publishes to cannot be read, or says nonsense."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable  # it did not answer at all: no use asking again soon


class TransportError(ImgsyncError):
    pass


class ConnectError(TransportError):
    pass


class HostKeyError(TransportError):
    pass


class AuthError(TransportError):
    pass


class RemoteCommandError(TransportError):
    pass


class InvalidReference(ImgsyncError, ValueError):
    exit_code = ExitCode.CONFIG


class Refused(ImgsyncError):
    exit_code = ExitCode.REFUSED


class ProtocolError(RemoteCommandError):
    """A peer's answer that is not what the protocol says."""


class MarkerError(ImgsyncError):
    pass


class VerificationError(ImgsyncError):
    pass


class MissingLayers(VerificationError):
    """A thin bundle leaves out layers this engine does not hold: send the full one."""


class StorageError(ImgsyncError):
    pass
