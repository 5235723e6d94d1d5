"""Through the command line, as a user would run it: a hostile value in the config or on
the command line ends in exit 2 with a message naming the key — no traceback, and nothing
executed (a canary file that every injection tries to create never appears)."""

from __future__ import annotations

import itertools
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imgsync import cli

from .strategies import cheap_hostile_text, nested, toml_dumps

# Slower than the pure properties (a whole CLI run per example): a tenth of the profile.
cli_settings = settings(max_examples=max(10, settings().max_examples // 10))

TEMPLATES = [
    "app:1;touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "app:1 && touch {canary}",
    "app:1|touch {canary}",
    "app:1\ntouch {canary}",
    "app:$(touch {canary})",
    "-oProxyCommand=touch {canary}",
    "edge-1;touch {canary}",
    "x'$(touch {canary})'",
    "app:1\r\ntouch {canary} #",
    "app:1;id",  # no space, no '/': refused for the ';' alone
    "edge-1;id",
    "edge-1&&id",
]
ARGV_SAFE = cheap_hostile_text.map(lambda s: s.replace("\x00", ""))
hostile = st.tuples(st.sampled_from(TEMPLATES), cheap_hostile_text, cheap_hostile_text)
hostile_argv = st.tuples(st.sampled_from(TEMPLATES), ARGV_SAFE, ARGV_SAFE)
_serial = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def source_config(workdir: Path, **changes: Any) -> dict[str, Any]:
    """A source config that could only ever fail fast: no Docker engine, no reachable peer."""
    peer = {
        "name": "edge-1",
        "host": "127.0.0.1",
        "port": 9,
        "inbox": str(workdir / "inbox"),
        "connect_timeout": 1,
        **changes.pop("peer", {}),
    }
    source = {
        "docker_host": f"unix://{workdir}/no-docker.sock",
        "images": ["acme/web:1"],
        "export_dir": str(workdir / "export"),
        **changes.pop("source", {}),
    }
    return {
        "source": source,
        "ssh": {
            "identity_file": str(workdir / "id_ed25519"),
            "known_hosts": str(workdir / "known_hosts"),
        },
        "peers": [peer],
        "receiver": {"inbox": str(workdir / "inbox"), "docker_host": source["docker_host"]},
        "state": {"path": str(workdir / "state.db")},
    }


def canary_in(workdir: Path) -> Path:
    return workdir / f"pwned-{next(_serial)}"


def fill(parts: tuple[str, str, str], canary: Path) -> str:
    template, before, after = parts
    return before + template.format(canary=canary) + after


@contextmanager
def _logging_restored() -> Iterator[None]:
    """main() configures the root logger and structlog for the CLI; put them back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


def run(args: list[str]) -> tuple[int, str]:
    """Run ``imgsync ARGS`` as the console script does; return (exit code, stdout+stderr).
    An exception out of main() is what a user would see: a traceback and exit 1."""
    with _logging_restored(), CliRunner().isolation() as (_out, _err, both):
        try:
            code = cli.main(args)
        except Exception:
            print(traceback.format_exc(), file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        output = both.getvalue().decode("utf-8", "backslashreplace")
    return code, output


def write(workdir: Path, document: dict[str, Any]) -> Path:
    path = workdir / f"imgsync-{next(_serial)}.toml"
    path.write_text(toml_dumps(document), encoding="utf-8")
    return path


@cli_settings
@given(hostile)
@example(("app:1;touch {canary}", "", ""))
@example(("$(touch {canary})", "", ""))
def test_sync_with_a_hostile_image_reference_exits_2_naming_the_key(
    workdir: Path, parts: tuple[str, str, str]
) -> None:
    """`imgsync sync` with a hostile source.images entry exits 2, names source.images[0],
    prints no traceback and runs nothing."""
    canary = canary_in(workdir)
    config = write(workdir, source_config(workdir, source={"images": [fill(parts, canary)]}))
    code, output = run(["--config", str(config), "sync"])
    assert code == 2, output
    assert "source.images[0]" in output and "not a valid image reference" in output, output
    assert "Traceback" not in output
    assert not canary.exists()


@cli_settings
@given(hostile)
@example(("edge-1;touch {canary}", "", ""))
def test_sync_with_a_hostile_peer_name_exits_2_naming_the_key(
    workdir: Path, parts: tuple[str, str, str]
) -> None:
    """`imgsync sync` with a hostile peers[0].name exits 2, names peers[0] … .name, prints
    no traceback and runs nothing."""
    canary = canary_in(workdir)
    config = write(workdir, source_config(workdir, peer={"name": fill(parts, canary)}))
    code, output = run(["--config", str(config), "sync"])
    assert code == 2, output
    assert "peers[0]" in output and ".name:" in output and "not a valid peer name" in output
    assert "Traceback" not in output
    assert not canary.exists()


@cli_settings
@given(hostile_argv, st.sampled_from(["--image", "--peer"]))
@example(("app:1;touch {canary}", "", ""), "--image")
@example(("edge-1;touch {canary}", "", ""), "--peer")
def test_sync_with_a_hostile_image_or_peer_option_exits_2_naming_the_option(
    workdir: Path, parts: tuple[str, str, str], option: str
) -> None:
    """`imgsync sync --image X` / `--peer X` with a hostile X exits 2 naming the option,
    before anything runs."""
    canary = canary_in(workdir)
    config = write(workdir, source_config(workdir))
    code, output = run(["--config", str(config), "sync", option, fill(parts, canary)])
    assert code == 2, output
    assert option in output
    assert "Traceback" not in output
    assert not canary.exists()


@cli_settings
@given(hostile_argv)
@example(("app:1;touch {canary}", "", ""))
def test_apply_with_a_hostile_image_option_exits_2_naming_the_option(
    workdir: Path, parts: tuple[str, str, str]
) -> None:
    """`imgsync apply --image X` on a peer with a hostile X exits 2 naming --image."""
    canary = canary_in(workdir)
    config = write(workdir, source_config(workdir))
    code, output = run(["--config", str(config), "apply", "--image", fill(parts, canary)])
    assert code == 2, output
    assert "--image" in output
    assert "Traceback" not in output
    assert not canary.exists()


@cli_settings
@given(st.binary(max_size=512))
@example(b"\xff\xfe")
@example(b'[source]\nimages = ["app:1;id"]\n')
def test_sync_with_a_config_file_of_any_bytes_never_prints_a_traceback(
    workdir: Path, raw: bytes
) -> None:
    """Whatever bytes the config file holds, `imgsync sync` exits 2 with one config error
    (not UTF-8, not TOML, against the schema, or no [source]) and no traceback."""
    config = workdir / f"raw-{next(_serial)}.toml"
    config.write_bytes(raw)
    code, output = run(["--config", str(config), "sync"])
    assert code == 2, output
    assert "Traceback" not in output and output.startswith("imgsync: config "), output


@pytest.mark.parametrize("kind", ["deep", "long"])
def test_sync_with_a_pathological_config_exits_2_without_a_traceback(
    workdir: Path, kind: str
) -> None:
    """A config with a 5000-deep array or a 5000-digit integer is a config error: exit 2."""
    config = workdir / f"bad-{next(_serial)}.toml"
    value = nested(5000, "list").decode() if kind == "deep" else "1" * 5000
    config.write_text(f"[receiver]\nkeep = {value}\n", encoding="utf-8")
    code, output = run(["--config", str(config), "sync"])
    assert "Traceback" not in output, output[-300:]
    assert code == 2


def test_no_injection_ever_ran(workdir: Path) -> None:
    """After every property above, no canary exists anywhere (also the shared one that the
    generic injections name)."""
    assert not list(workdir.glob("pwned-*"))
    assert not Path("/tmp/imgsync-pwned").exists()
