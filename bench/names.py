"""The benchmark's names: images, links, which case runs where, the tools' row labels,
its options, and one measured :class:`Run`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from . import shaping
from .shaping import Link

MiB = 1024 * 1024
SEED = 4242
REPO, TAG = "bench/app", "latest"
REF = f"{REPO}:{TAG}"  # the reference every big-image case syncs; it moves v1 <-> v2
KEEP_V1, KEEP_V2 = "bench/keep:v1", "bench/keep:v2"  # hold both versions on the source
TEXT_REF = "bench/text:1"  # case (e): the compressible image
SMALL = [f"bench/small{i}:1" for i in range(10)]
MEM_REF = "bench/mem:1"
PATCH_MB = 10
PREFERRED_CIPHER = "aes128-gcm@openssh.com"  # imgsync's first choice (paramiko)

LOOPBACK = Link("loopback", None)
SHAPED = Link("100 Mbit/s", shaping.SHAPED_RATE)
RTT = Link("100 Mbit/s + 20 ms RTT", shaping.SHAPED_RATE, 0.010)
LINKS = {"loopback": LOOPBACK, "100mbit": SHAPED, "rtt": RTT}  # --links names
BY_NAME = {link.name: link for link in LINKS.values()}
# which cases run on which link (each goal's link; nothing twice that a goal does not need)
PLAN: dict[str, tuple[str, ...]] = {
    LOOPBACK.name: ("a", "b", "c", "d"),
    SHAPED.name: ("b",),
    RTT.name: ("a", "e", "c", "d"),
}
CASES = ("a", "b", "c", "d", "e")
# imgsync's [ssh] compression as an operator would set it per link (--compression per-link):
# zstd where the link is the bottleneck, none on loopback (there it would only cost CPU)
PER_LINK_COMPRESSION = {LOOPBACK.name: "none", SHAPED.name: "zstd", RTT.name: "zstd"}
COMPRESSION_MODES = ("per-link", "none", "zstd")


def compression_for(mode: str, link: Link) -> str:
    """The ``[ssh] compression`` written for ``link`` under ``--compression mode``."""
    return PER_LINK_COMPRESSION[link.name] if mode == "per-link" else mode


def compression_setting(mode: str, links: tuple[Link, ...]) -> str:
    """The setting in words, for the page: what the configs had on the ``links`` run."""
    if mode != "per-link":
        return f'`compression = "{mode}"` on every link (--compression {mode})'
    by_value: dict[str, list[str]] = {}
    for link in links:
        by_value.setdefault(PER_LINK_COMPRESSION[link.name], []).append(link.name)
    return (
        "per link, as an operator would set it (--compression per-link, the default): "
        + "; ".join(f'`compression = "{v}"` on {", ".join(names)}' for v, names in by_value.items())
    )


CLASSIC = "classic: docker save | ssh docker load"
CLASSIC_4 = "classic: 4 pipelines in parallel"
CLASSIC_ALL = "classic: re-send all (4 peers in parallel)"
SCP = "OpenSSH scp of the tarball (SFTP)"
SAVE = "docker save -o FILE (source only)"
LOAD = "docker load -i FILE (peer only, no network)"
IMGSYNC_FIRST = "imgsync sync (docker save included)"
IMGSYNC_V2 = "imgsync sync (docker save of v2 included)"
IMGSYNC_NOOP = "imgsync sync, nothing changed"


@dataclass
class Options:
    size_mb: int = 500
    links: tuple[Link, ...] = (LOOPBACK, SHAPED, RTT)
    cases: tuple[str, ...] = CASES
    runs: int = 3
    startup_runs: int = 5
    memory_case: bool = True
    memory_mb: int = 2048
    compression: str = "per-link"  # imgsync's [ssh] compression: per-link, none or zstd


@dataclass
class Run:
    """One measured run; the runs of one (case, link, tool) make a row of the table."""

    case: str
    link: str
    tool: str
    seconds: float
    wire: int | None  # relay bytes up + down over the peers involved; None: no wire
    rss: dict[str, int] = field(default_factory=dict)  # process -> peak RSS, KiB
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # imgsync: where the time went
    data: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # a classic run this case's ratios are relative to
    rep: int = 0  # which round of the case
    ciphers: list[str] = field(default_factory=list)  # upload cipher(s) seen on the wire

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
