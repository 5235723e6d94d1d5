"""``status --fleet`` on headquarters: each agent peer is asked, in one session, what its own
peers run when it is a relay (its state DB, as its ``imgsync status`` says); their rows are
named ``relay/leaf``. A peer that is no relay adds nothing; one that cannot be asked adds one
row that says why, and is not current — headquarters cannot vouch for its site.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from imgsync import config as cfg
from imgsync.errors import ImgsyncError
from imgsync.model import StatusRow


def relay_rows(config: cfg.Config) -> list[StatusRow]:
    """Every relay's rows, in the order of ``[[peers]]``, asked in parallel."""
    peers = [cfg.peer_settings(config, p) for p in config.peers]
    workers = config.source.max_parallel_peers if config.source else 4
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(_ask, peers))
    return [row for rows in answers for row in rows]


def _ask(peer: cfg.PeerSettings) -> list[StatusRow]:
    if peer.mode == "agentless":  # only sshd and an engine there: no relay
        return []
    from imgsync.source.agent_link import AgentLink

    try:
        link = AgentLink.connect(peer, threading.Event())
    except ImgsyncError as err:
        return [_unknown(peer.name, err)]
    try:
        return link.relay_status() or []
    except ImgsyncError as err:
        return [_unknown(peer.name, err)]
    finally:
        link.close()


def _unknown(relay: str, err: ImgsyncError) -> StatusRow:
    return StatusRow(f"{relay}/*", "*", None, None, False, error=f"its site not read: {err}")
