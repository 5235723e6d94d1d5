"""``python -m bench.probe_send CONFIG PEER FILE COMMAND...``: imgsync's own SSH transport
(``imgsync.transport.SshSession``, paramiko, as ``imgsync sync`` sets it up) streaming FILE
into the stdin of COMMAND on PEER; prints ``{"seconds": …, "sent": …}``.

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
    from imgsync import payload
    from imgsync.transport import SshSession
except ImportError as err:  # imgsync's internals moved: say so, measure nothing else
    print(f"imgsync's transport is not where the probe looks: {err}", file=sys.stderr)
    sys.exit(3)


def main(argv: list[str]) -> int:
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
