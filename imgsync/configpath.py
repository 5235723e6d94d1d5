"""Where the config file is: ``--config``, then ``$IMGSYNC_CONFIG``, then the default.

Kept apart from :mod:`imgsync.config` (pydantic, APScheduler) so that finding the file
costs no imports: ``imgsync --version`` and a peer's session start at once.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = Path("/etc/imgsync/imgsync.toml")
ENV_VAR = "IMGSYNC_CONFIG"


def resolve_path(cli_path: str | None) -> Path:
    """``--config``, then ``$IMGSYNC_CONFIG``, then ``/etc/imgsync/imgsync.toml``."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH
