"""Hypothesis profiles for the property suite: ``ci`` (500 examples, derandomized, so a CI
failure reproduces on any machine) when ``$CI`` is set, else ``dev`` (100 examples).
``$HYPOTHESIS_PROFILE`` picks one by name. No example database, and Hypothesis' caches go
to the temp dir (or ``$HYPOTHESIS_STORAGE_DIRECTORY``): nothing is written into the repo.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "imgsync-hypothesis")

settings.register_profile(
    "ci",
    max_examples=500,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
