"""A relay's export taken from what its own receiver took in, instead of a new ``docker save``.

A relay is a peer of headquarters and a source for its site (``[receiver]``, ``[source]``
and ``[[peers]]`` in one config). When headquarters sent it a whole bundle and its engine
now runs that very version, the bundle in its inbox *is* the export its leaves need — the
same bytes, the same marker, so the leaves compare with headquarters' version. It is linked
into the export dir (copied where a link cannot cross file systems), its sha256 checked
against the marker on the way, and then announced by the marker, written last. A thin bundle
(it lacks layers the relay already had), a marker of another version, or a bundle that does
not hash to its marker is left alone: the relay exports as any source does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.adapters.fsutil import temp_name
from imgsync.bundle.bundledir import BundleDir
from imgsync.errors import ImgsyncError
from imgsync.model import Marker

_CHUNK = 1 << 20


def adopt(bundles: BundleDir, inbox: Path, reference: str, version: str) -> Marker | None:
    """Make the inbox's whole bundle of ``reference`` at ``version`` the export of it;
    return its marker, or ``None`` when there is none to take (the caller saves)."""
    received = BundleDir(inbox)
    try:
        marker = received.read_marker(reference)
    except ImgsyncError as err:
        log.get().info("received bundle not reused", image=reference, reason=str(err))
        return None
    if marker is None or marker.version != version or marker.omitted:
        return None  # none, another version, or thin: it lacks layers the relay had
    source = received.bundle_path(marker)
    try:
        if fsutil.lstat_regular(source).st_size != marker.size:
            return None  # not (or no longer) the whole bundle its marker describes
    except (ImgsyncError, OSError):
        return None
    temp = bundles.path / temp_name(marker.bundle)
    try:
        _link_or_copy(source, temp)
        if _sha256(temp) != marker.sha256:
            log.get().warning("received bundle does not match its marker", image=reference)
            fsutil.remove(temp)
            return None
        os.replace(temp, bundles.bundle_path(marker))
        fsutil.fsync_dir(bundles.path)
    except (OSError, ImgsyncError) as err:
        fsutil.remove(temp)
        log.get().info("received bundle not reused", image=reference, reason=str(err))
        return None
    bundles.write_marker(marker)
    log.get().info("received bundle reused as the export", image=reference, bundle=marker.bundle)
    return marker


def _link_or_copy(source: Path, temp: Path) -> None:
    try:
        os.link(source, temp, follow_symlinks=False)
    except OSError:  # another file system (or links refused): a copy, fsynced
        with fsutil.open_regular(source) as reader, fsutil.atomic_writer(temp, temp=None) as out:
            shutil.copyfileobj(reader, out, _CHUNK)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with fsutil.open_regular(path) as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
