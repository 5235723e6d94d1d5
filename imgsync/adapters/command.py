"""A local command an engine adapter runs (``ctr``): an argv list, never a shell string;
its stdin a file, the bytes of an iterator, or nothing; a deadline; at most
:data:`OUTPUT_KEPT` bytes of its stdout and stderr kept, so a command that says too much
costs bounded memory. Failures to start it and deadlines become
:class:`~imgsync.errors.EngineError` naming the command; the exit status is the caller's
to judge (:class:`Finished`)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from imgsync.errors import EngineError
from imgsync.text import printable_text

OUTPUT_KEPT = 4 * 1024 * 1024  # of stdout; stderr keeps its last 64 KiB
STDERR_KEPT = 64 * 1024


@dataclass(frozen=True)
class Finished:
    argv: tuple[str, ...]
    status: int
    stdout: bytes  # its first ``limit`` bytes
    stderr: str  # its tail, printable
    truncated: bool = False  # stdout said more than ``limit``

    @property
    def ok(self) -> bool:
        return self.status == 0

    def why(self) -> str:
        """The command's own last words, or its exit status."""
        said = self.stderr.strip().splitlines()
        return said[-1][-500:] if said else f"exit status {self.status}"


def run(
    argv: list[str],
    *,
    stdin: BinaryIO | Iterator[bytes] | None = None,
    timeout: float = 600,
    limit: int = OUTPUT_KEPT,
) -> Finished:
    """Run ``argv`` to its end (at most ``timeout`` seconds) and say how it ended, with at
    most ``limit`` bytes of what it wrote to stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        feed = _feed_of(stdin)
        try:
            proc = subprocess.Popen(  # noqa: S603 - an argv list: no shell parses it
                argv, stdin=_stdin(stdin, feed), stdout=out, stderr=err
            )
        except OSError as error:
            raise EngineError(f"cannot run {argv[0]}: {error.strerror}") from None
        writer = None
        if feed is not None and proc.stdin is not None:
            writer = threading.Thread(target=_feed, args=(proc.stdin, feed), daemon=True)
            writer.start()
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise EngineError(f"{' '.join(argv[:3])} took more than {timeout:g} s") from None
        if writer is not None:
            writer.join()
        said = _head(out, limit + 1)
        return Finished(tuple(argv), status, said[:limit], _tail(err), len(said) > limit)


def _feed(pipe: IO[bytes], chunks: Iterator[bytes]) -> None:
    """Write the chunks to the command's stdin; a command that stops reading ends it."""
    try:
        for chunk in chunks:
            pipe.write(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _feed_of(stdin: BinaryIO | Iterator[bytes] | None) -> Iterator[bytes] | None:
    """The chunks to write to the command's stdin; None where it reads a file itself."""
    if stdin is None:
        return None
    if not isinstance(stdin, Iterator):
        try:
            stdin.fileno()
            return None
        except (OSError, ValueError):  # io.UnsupportedOperation: not a real file
            reader = stdin
            return iter(lambda: reader.read(1024 * 1024), b"")
    return stdin


def _stdin(stdin: BinaryIO | Iterator[bytes] | None, feed: Iterator[bytes] | None) -> Any:
    if feed is not None:
        return subprocess.PIPE
    return stdin if stdin is not None else subprocess.DEVNULL


def _head(handle: IO[bytes], limit: int) -> bytes:
    handle.seek(0)
    return handle.read(limit)


def _tail(handle: IO[bytes]) -> str:
    size = handle.seek(0, 2)
    handle.seek(max(0, size - STDERR_KEPT))
    text = handle.read().decode("utf-8", "replace")
    return "\n".join(printable_text(line, 500) for line in text.splitlines()[-50:])
