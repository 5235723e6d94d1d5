"""The agentless peer's steps against a fake shell: files and a Docker engine in dicts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from imgsync import agentless
from imgsync.config import Config, PeerSettings, peer_settings
from imgsync.errors import RemoteCommandError
from imgsync.model import Action, Marker, Result
from imgsync.transport import CommandResult

OLD, NEW, ODD = ("sha256:" + c * 64 for c in "abc")
REF = "docker.io/library/app:1"
INBOX = "/var/in box"  # a space: every path must stay one word
DOCKER = ["docker", "-H", "unix:///run/d.sock"]


class FakeShell:
    """Answers the commands agentless runs; ``loads`` maps bundle bytes to the image ID a
    ``docker load`` of them puts under :data:`REF`."""

    def __init__(self, images: dict[str, str], loads: dict[bytes, str]) -> None:
        self.images, self.loads = images, loads
        self.files: dict[str, bytes] = {}
        self.commands: list[list[str]] = []
        self.docker_missing = False

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        argv = list(argv)
        self.commands.append(argv)
        if argv[: len(DOCKER)] == DOCKER:
            if self.docker_missing:
                return CommandResult(127, b"", b"bash: docker: command not found\n")
            return self._docker(argv[len(DOCKER) :])
        match argv:
            case ["mkdir", "-p", "--", _]:
                return ok()
            case ["stat", "-c", "%s", "--", path]:
                return ok(f"{len(self.files[path])}\n")
            case ["sha256sum", "--", path]:
                return ok(f"{hashlib.sha256(self.files[path]).hexdigest()}  {path}\n")
            case ["mv", "-f", "--", source, target]:
                self.files[target] = self.files.pop(source)
                return ok()
            case ["rm", "-f", "--", *paths]:
                for path in paths:
                    self.files.pop(path, None)
                return ok()
        raise AssertionError(f"unexpected command {argv}")

    def _docker(self, args: list[str]) -> CommandResult:
        match args:
            case ["image", "inspect", "--format", "{{.Id}}", "--", ref]:
                if ref not in self.images:
                    return CommandResult(1, b"\n", b"Error: No such image: " + ref.encode())
                return ok(self.images[ref] + "\n")
            case ["load", "--quiet", "--input", path]:
                self.images[REF] = self.loads[self.files[path]]
                return ok(f"Loaded image: {REF}\n")
            case ["tag", "--", image_id, ref]:
                self.images[ref] = image_id
                return ok()
        raise AssertionError(f"unexpected docker command {args}")

    def send(
        self,
        what: str,
        chunks: Iterator[bytes],
        argv: Sequence[str],
        timeout: float,
        max_rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, CommandResult]:
        self.commands.append(list(argv))
        assert argv[0] == "dd" and argv[1].startswith("of=")
        data = b"".join(chunks)
        self.files[argv[1].removeprefix("of=")] = data
        return len(data), ok()


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout.encode(), b"")


def peer() -> PeerSettings:
    config = Config.model_validate(
        {
            "peers": [
                {
                    "name": "edge",
                    "host": "192.0.2.1",
                    "inbox": INBOX,
                    "mode": "agentless",
                    "docker_command": "docker -H unix:///run/d.sock",
                }
            ]
        }
    )
    return peer_settings(config, config.peers[0])


def exported(tmp_path: Path, data: bytes, version: str = NEW, sha: str | None = None) -> Marker:
    (tmp_path / "app.tar").write_bytes(data)
    digest = sha or hashlib.sha256(data).hexdigest()
    return Marker(REF, version, (), "app.tar", len(data), digest, "now")


def sync(shell: FakeShell, marker: Marker, tmp_path: Path) -> Result:
    results: dict[str, Result] = {}
    agentless.run(shell, peer(), {REF: marker}, tmp_path, results)
    return results[REF]


def test_a_peer_that_runs_the_version_gets_nothing(tmp_path: Path) -> None:
    shell = FakeShell({REF: NEW}, {})
    result = sync(shell, exported(tmp_path, b"bundle"), tmp_path)
    assert result.action is Action.UNCHANGED and result.bytes_sent == 0
    assert [c[len(DOCKER) : len(DOCKER) + 2] for c in shell.commands] == [["image", "inspect"]]


def test_a_verified_bundle_is_loaded_and_not_kept(tmp_path: Path) -> None:
    shell = FakeShell({REF: OLD}, {b"bundle": NEW})
    result = sync(shell, exported(tmp_path, b"bundle"), tmp_path)
    assert result.action is Action.LOADED, result.error
    assert result.bytes_sent == len(b"bundle") and result.transfer == "full"
    assert shell.images[REF] == NEW
    assert shell.files == {}
    assert ["dd", f"of={INBOX}/.part-app.tar", "bs=1M", "conv=fsync", "status=none"] in (
        shell.commands
    )


def test_a_bundle_that_does_not_match_its_marker_is_removed_before_any_load(
    tmp_path: Path,
) -> None:
    shell = FakeShell({REF: OLD}, {b"bundle": NEW})
    result = sync(shell, exported(tmp_path, b"bundle", sha="0" * 64), tmp_path)
    assert result.action is Action.FAILED
    assert result.error is not None and "sha256" in result.error and "edge" in result.error
    assert shell.images[REF] == OLD
    assert shell.files == {}
    assert not any("load" in command for command in shell.commands)


def test_a_load_that_yields_another_image_is_undone(tmp_path: Path) -> None:
    shell = FakeShell({REF: OLD}, {b"bundle": ODD})
    result = sync(shell, exported(tmp_path, b"bundle"), tmp_path)
    assert result.action is Action.FAILED
    assert result.error is not None and "previous image was kept" in result.error
    assert shell.images[REF] == OLD
    assert shell.files == {}


def test_a_docker_command_that_does_not_work_fails_the_peer(tmp_path: Path) -> None:
    shell = FakeShell({}, {})
    shell.docker_missing = True
    with pytest.raises(RemoteCommandError, match=r"peer edge: docker command .*unix:///run/d"):
        sync(shell, exported(tmp_path, b"bundle"), tmp_path)
