"""The peer's record of what it published (``[receiver] publish``): registry name → the
version checked to be there under it.

A name is recorded only once the registry was read back and its manifest's config digest
was the version; from then on that version is not pushed, nor even asked about, again (a
cycle with nothing new costs the registry nothing). A new version under the same name, or a
new ``publish`` address (so new names), is published again. Someone deleting the image from
the registry is not noticed: remove this record to publish everything again.

The record lives in the inbox as ``.imgsync-published.json`` beside the load record
(:mod:`imgsync.receiver.loaded`): a format number, at most :data:`MAX_ENTRIES` names,
written to a temp file and renamed, mode 0600. An unreadable record is ignored: each image
is then looked up in the registry once more (and pushed only where it is not there).
"""

from __future__ import annotations

import json
from pathlib import Path

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.errors import StorageError
from imgsync.model import VERSION_RE
from imgsync.receiver import loaded

NAME = ".imgsync-published.json"
FORMAT = 1
MAX_ENTRIES = 4096
MAX_BYTES = 2 * 1024 * 1024


def read(inbox: Path) -> dict[str, str]:
    """Registry name (``host:port/path:tag``) → version, as recorded (empty: none)."""
    path = inbox / NAME
    try:
        data = loaded.read_record(path, "published", FORMAT, MAX_BYTES)
    except StorageError as err:  # not a regular file
        log.get().warning("record of published images not readable", path=str(path),
                          error=str(err))  # fmt: skip
        return {}
    names = data.get("published")
    if data and not isinstance(names, dict):
        log.get().warning("record of published images ignored (not format 1)", path=str(path))
    if not isinstance(names, dict):
        return {}
    return {
        name: version
        for name, version in names.items()
        if isinstance(name, str) and isinstance(version, str) and VERSION_RE.fullmatch(version)
    }


def record(inbox: Path, name: str, version: str) -> None:
    """Write down that the registry holds ``version`` as ``name``."""
    names = read(inbox)
    names.pop(name, None)
    names[name] = version  # the newest last: the oldest go first past MAX_ENTRIES
    if len(names) > MAX_ENTRIES:
        names = dict(list(names.items())[-MAX_ENTRIES:])
    data = json.dumps({"format": FORMAT, "published": names}, indent=1)
    try:
        fsutil.write_atomic(inbox / NAME, data.encode() + b"\n", mode=0o600)
    except OSError as err:
        raise StorageError(f"cannot write {inbox / NAME}: {err.strerror}") from None
