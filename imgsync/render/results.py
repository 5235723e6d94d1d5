"""What the CLI prints: one readable line per peer x image and a summary, or JSON."""

from __future__ import annotations

import json

from imgsync.model import Action, ApplyOutcome, DryRun, Report
from imgsync.text import printable_text

_UNITS = ("B", "kB", "MB", "GB", "TB")


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short(version: str | None) -> str:
    return version.removeprefix("sha256:")[:12] if version else "-"


def sync_json(report: Report) -> str:
    """``sync --json``: ok, every peer's engine (Docker version, image store) as its
    inventory said (null: the peer was not reached, or did not say), every result row."""
    peers: dict[str, dict[str, str | None]] = {}
    for r in report.results:
        known = peers.setdefault(r.peer, {"engine": None, "store": None})
        known["engine"] = known["engine"] or r.engine
        known["store"] = known["store"] or r.store
    return json.dumps(
        {"ok": report.ok, "peers": peers, "results": [r.to_json_dict() for r in report.results]},
        indent=2,
    )


def sync_lines(report: Report) -> list[str]:
    peer_width = max((len(r.peer) for r in report.results), default=4)
    image_width = max((len(r.image) for r in report.results), default=5)
    lines = []
    for r in report.results:
        detail = (
            printable_text(r.error)
            if r.error
            else f"{human_bytes(r.bytes_sent)} in {r.seconds:.1f}s"
        )
        if r.publish_error:
            detail += f"; publish failed: {printable_text(r.publish_error)}"
        lines.append(
            f"{r.peer:<{peer_width}}  {r.image:<{image_width}}  {r.action.value:<9}  "
            f"{short(r.version):<12}  {detail}"
        )
    tally = {a: sum(r.action is a for r in report.results) for a in Action}
    # `restored` (a tag put back by hand) is rare: named only when it happened
    counts = ", ".join(f"{n} {a.value}" for a, n in tally.items() if n or a is not Action.RESTORED)
    peers = len({r.peer for r in report.results})
    sent = human_bytes(sum(r.bytes_sent for r in report.results))
    verdict = "ok" if report.ok else "FAILED"
    lines.append(
        f"{verdict}: {counts} across {peers} peer(s); {sent} sent in {report.seconds:.1f}s"
    )
    return lines


def apply_lines(outcomes: list[ApplyOutcome]) -> list[str]:
    if not outcomes:
        return ["nothing to apply: the inbox holds no markers"]
    width = max(len(o.image) for o in outcomes)
    return [
        f"{o.image:<{width}}  {o.action.value:<9}  {short(o.version):<12}  "
        f"{printable_text(o.error) if o.error else f'{o.seconds:.1f}s'}{_published(o)}"
        for o in outcomes
    ]


def _published(outcome: ApplyOutcome) -> str:
    """``[receiver] publish``: where the version is published, or why it is not."""
    if outcome.publish_error:
        return f"; publish failed: {printable_text(outcome.publish_error)}"
    return f"; published {printable_text(outcome.published)}" if outcome.published else ""


def dry_run_json(planned: DryRun) -> str:
    """``sync --dry-run --json``: ok, the exports first, every planned row."""
    return json.dumps(planned.to_json_dict(), indent=2)


def dry_run_lines(planned: DryRun) -> list[str]:
    lines = [f"would export: {', '.join(planned.exports) or 'nothing'}"]
    peer_width = max((len(r.peer) for r in planned.results), default=4)
    image_width = max((len(r.image) for r in planned.results), default=5)
    for r in planned.results:
        detail = printable_text(r.error) if r.error else ""
        detail = detail or (f"~{human_bytes(r.bytes)} ({r.transfer})" if r.transfer else "")
        lines.append(f"{r.peer:<{peer_width}}  {r.image:<{image_width}}  {r.action:<11}  "
                     f"{short(r.version):<12}  {detail}".rstrip())  # fmt: skip
    total = sum(r.bytes for r in planned.results)
    moving = sum(r.action == "would-send" for r in planned.results)
    lines.append(f"dry run: {moving} to send, ~{human_bytes(total)}; nothing was changed")
    return lines
