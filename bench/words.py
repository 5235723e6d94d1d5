"""The benchmark page's words: case titles and what each phase of an imgsync run covers."""

from __future__ import annotations

from .phases import LOADED_ON_ARRIVAL, OVERLAP_CONNECT, OVERLAP_UPLOAD

CASE_TITLES = {
    "a": "(a) first sync, 1 peer, random layers",
    "b": "(b) update: v2 = v1 + one new top layer, 1 peer",
    "c": "(c) nothing changed, 10 small images x 4 peers",
    "d": "(d) first sync, 4 peers",
    "e": "(e) first sync, 1 peer, compressible layers",
    "mem": "(mem) 2 GB image, 4 peers",
    "tput": "transport probes",
}
WHY = {
    "startup": (
        "start-up of the imgsync CLI on the source and its cycle up to `exporting` (Python "
        "imports, config, state DB, the images selected and inspected; the peers' sessions "
        "start connecting meanwhile)"
    ),
    "export": (
        "the export: from imgsync's `exporting` to its `exported` log line (`docker save` "
        "read, hashed, checked, written) — nothing is sent during it"
    ),
    OVERLAP_CONNECT: (
        "from `exporting` to the first `sending` log line: `docker save` runs while the "
        "peers' sessions connect and ask their inventories, both at once"
    ),
    OVERLAP_UPLOAD: (
        "from the first `sending` to `exported` or to 99% of the bytes through the relays, "
        "whichever comes first: the bundle streamed to the peer while `docker save` still "
        "writes it (`streaming while it is exported`), the peer loading it as it arrives"
    ),
    "upload (after the export)": (
        "from `exported` to 99% of the bytes through the relays: the rest of an upload that "
        "started during the export"
    ),
    "export (after the upload)": (
        "from 99% of the bytes through the relays to `exported`: the end of an export whose "
        "data had already gone (its check, its marker)"
    ),
    "connect + ask": (
        "from the end of the export (or the cycle start) to imgsync's first `sending` log "
        "line: the SSH connection and whatever the peer is asked before the upload, as far "
        "as it was not done during the export"
    ),
    "upload": (
        "from the first `sending` log line (or `exported`, if later) to 99% of the bytes "
        "through the relays: the bundle through imgsync's SSH transport into the peer"
    ),
    "end of receive": (
        "from the last byte on the wire to the marker in the peer's inbox: the receiver "
        "finishing the bundle (fsync) and the marker"
    ),
    "apply": (
        "from the marker in the inbox (or the last byte) to the peers' last `load` or `tag` "
        "event: verification and `docker load` on the peer; a load that began as the bundle "
        "arrived ran partly during the upload, and this is what was left of it"
    ),
    LOADED_ON_ARRIVAL: (
        "the peer's `docker load` was over before the marker landed: it ran while the bundle "
        "arrived, overlapped with the upload; from the marker to the peers' last `tag` "
        "event is the verification and the tag"
    ),
    "report + state DB": "after the last load: the apply report read back, the state DB",
    "exit": "from the end of the cycle to the end of the process",
    "rest": "after the last step seen: the apply report, the state DB, exit",
}
UPLOAD_PHASES = ("upload", OVERLAP_UPLOAD, "upload (after the export)")


# -- helpers --------------------------------------------------------------------------------
def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base
