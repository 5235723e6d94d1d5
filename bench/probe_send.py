"""``python -m bench.probe_send CONFIG PEER FILE COMMAND...``: imgsync's own SSH transport
(``imgsync.adapters.transport.SshSession``, paramiko, as ``imgsync sync`` sets it up) streaming FILE
into the stdin of COMMAND on PEER; prints ``{"seconds": …, "sent": …}``.

``python -m bench.probe_send --session CONFIG PEER FILE``: the path a sync's bundles take —
the peer link (``imgsync.source.agent_link.AgentLink``: one SSH connection, the peer's
``apply --session``) receiving FILE into the peer's inbox as ``probe.marker.json`` (a name
the peer neither scans nor loads: the transport and the write alone).

Run as its own process by the benchmark, so the relay threads of the benchmark do not share
a GIL with paramiko. Uses imgsync's internals, which move: a signature it does not know
(or a module it does not find) makes it exit 3 ("n/a" in the table) rather than measure
something else. The benchmark times the whole process, start-up and connection included,
as it times scp.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from pathlib import Path

try:
    from imgsync import config as cfg
    from imgsync.adapters.transport import SshSession
    from imgsync.bundle import payload
except ImportError as err:  # imgsync's internals moved: say so, measure nothing else
    print(f"imgsync's transport is not where the probe looks: {err}", file=sys.stderr)
    sys.exit(3)


def session(argv: list[str]) -> int:
    config_path, peer_name, file_name = argv
    try:
        import threading

        from imgsync.source.agent_link import AgentLink

        config = cfg.load(Path(config_path))
        table = next(p for p in config.peers if p.name == peer_name)
        peer = cfg.peer_settings(config, table)
        bundle = payload.FilePayload("probe.marker.json", Path(file_name))
    except (AttributeError, TypeError, ImportError) as err:
        print(f"imgsync's internals moved: {err}", file=sys.stderr)
        return 3
    t0 = time.monotonic()
    link = AgentLink.connect(peer, threading.Event())
    try:
        sent = link.send_bundle(bundle, None, 0, None)  # type: ignore[arg-type]
    finally:
        link.close()
    print(json.dumps({"seconds": time.monotonic() - t0, "sent": sent}))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--session"]:
        return session(argv[1:])
    config_path, peer_name, file_name, *command = argv
    try:
        config = cfg.load(Path(config_path))
        table = next(p for p in config.peers if p.name == peer_name)
        peer = cfg.peer_settings(config, table)
        bundle = payload.FilePayload(Path(file_name).name, Path(file_name))
        params = list(inspect.signature(SshSession.send).parameters)
    except (AttributeError, TypeError) as err:
        print(f"imgsync's internals moved: {err}", file=sys.stderr)
        return 3
    with SshSession(peer) as ssh:
        t0 = time.monotonic()
        if params[1:4] == ["what", "chunks", "argv"]:
            sent, result = ssh.send(bundle.name, bundle.chunks(0), command, 600)
        elif params[1:4] == ["payload", "argv", "offset"]:
            sent, result = ssh.send(bundle, command, 0, 600)  # type: ignore[arg-type]
        else:
            print(f"unknown SshSession.send{inspect.signature(SshSession.send)}", file=sys.stderr)
            return 3
        seconds = time.monotonic() - t0
    if result.exit_status != 0:
        print(result.stderr.decode("utf-8", "replace"), file=sys.stderr)
        return 1
    print(json.dumps({"seconds": seconds, "sent": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
