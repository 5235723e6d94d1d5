"""What a process imports before it does anything: start-up is paid by every command and
by every peer's session, each cycle (the benchmark times it; these say what it leaves out)."""

from __future__ import annotations

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    program = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_logging_is_configured_without_importing_rich() -> None:
    loaded = modules_after("from imgsync import log\nlog.configure()\nlog.get().info('x')")
    assert "structlog" in loaded
    assert not {m for m in loaded if m == "rich" or m.startswith("rich.")}


def test_rich_is_still_importable_for_progress_bars_after_logging() -> None:
    loaded = modules_after("from imgsync import log\nimport rich.progress")
    assert "rich.progress" in loaded
