"""The agentless peer's steps against a fake shell: files and a Docker engine in dicts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from imgsync.adapters.transport import CommandResult
from imgsync.config import Config, PeerSettings, peer_settings
from imgsync.errors import RemoteCommandError
from imgsync.model import Action, Marker, Result
from imgsync.source import agentless
from imgsync.source.delivery import serve
from imgsync.source.ledger import Ledger

from . import tarballs

OLD, ODD = ("sha256:" + c * 64 for c in "ac")
REF = "docker.io/library/app:1"
INBOX = "/var/in box"  # a space: every path must stay one word
DOCKER = ["docker", "-H", "unix:///run/d.sock"]
# The image the source exported: one layer, a runtime config; NEW is its config digest.
SETTINGS = {"config": {"Cmd": ["/app"], "Env": ["A=1"]}, "architecture": "amd64", "os": "linux"}
IMAGE = tarballs.Image("app:1", [tarballs.layer_tar({"app": b"v2"})], settings=SETTINGS)
NEW, LAYERS = IMAGE.config_digest, list(IMAGE.diff_ids)
# How a containerd-store engine shows that image: its own manifest digest as the ID, the
# same layers and config (with the empty fields docker image inspect adds).
MANIFEST, MANIFEST2 = ("sha256:" + c * 64 for c in "de")
SAME = {
    "layers": LAYERS,
    "config": {**SETTINGS["config"], "Hostname": "", "Labels": None, "Volumes": None},
}


class FakeShell:
    """Answers the commands agentless runs; ``loads`` maps bundle bytes to the image ID a
    ``docker load`` of them puts under :data:`REF`; ``shown`` maps an image ID to the
    ``layers`` and ``config`` ``docker image inspect`` shows for it (the version: the
    exported image's; anything else: no layers, no config)."""

    def __init__(
        self,
        images: dict[str, str],
        loads: dict[bytes, str],
        shown: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.images, self.loads = images, loads
        self.shown = {NEW: SAME, **(shown or {})}
        self.files: dict[str, bytes] = {}
        self.commands: list[list[str]] = []
        self.docker_missing = False
        self.inspect_answer: bytes | None = None  # instead of the JSON, when set

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
            case ["image", "inspect", "--format", "{{json .}}", "--", ref]:
                if ref not in self.images:
                    return CommandResult(1, b"\n", b"Error: No such image: " + ref.encode())
                if self.inspect_answer is not None:
                    return CommandResult(0, self.inspect_answer, b"")
                return ok(json.dumps(self.inspect(self.images[ref])) + "\n")
            case ["load", "--quiet", "--input", path]:
                self.images[REF] = self.loads[self.files[path]]
                return ok(f"Loaded image: {REF}\n")
            case ["tag", "--", image_id, ref]:
                self.images[ref] = image_id
                return ok()
        raise AssertionError(f"unexpected docker command {args}")

    def inspect(self, image_id: str) -> dict[str, Any]:
        shown = self.shown.get(image_id, {})
        return {
            "Id": image_id,
            "RepoTags": [REF],
            "RootFS": {"Type": "layers", "Layers": shown.get("layers", [])},
            "Config": shown.get("config"),
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 1234,
        }

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


def exported(tmp_path: Path, sha: str | None = None) -> tuple[Marker, bytes]:
    """The bundle of :data:`IMAGE` in the export dir ``tmp_path``, its marker and bytes."""
    data = tarballs.legacy(tmp_path / "app.tar", [IMAGE]).read_bytes()
    digest = sha or hashlib.sha256(data).hexdigest()
    return Marker(REF, NEW, tuple(LAYERS), "app.tar", len(data), digest, "now"), data


def sync(shell: FakeShell, marker: Marker, tmp_path: Path) -> Result:
    """One session through the agentless link, as :func:`imgsync.source.peer.sync_peer` runs it."""
    ledger = Ledger(peer().name)
    link = agentless.AgentlessLink(shell, peer(), tmp_path)
    todo = {REF: marker}
    inventory = link.recognise(todo, link.inventory([REF]))
    serve(link, peer(), todo, inventory, tmp_path, ledger)
    [result] = ledger.results([REF])
    return result


def docker_verbs(shell: FakeShell) -> list[list[str]]:
    return [c[len(DOCKER) : len(DOCKER) + 2] for c in shell.commands if c[:1] == DOCKER[:1]]


def test_a_peer_that_runs_the_version_gets_nothing(tmp_path: Path) -> None:
    shell = FakeShell({REF: NEW}, {})
    result = sync(shell, exported(tmp_path)[0], tmp_path)
    assert result.action is Action.UNCHANGED and result.bytes_sent == 0
    assert [c[len(DOCKER) : len(DOCKER) + 2] for c in shell.commands] == [["image", "inspect"]]


def test_a_verified_bundle_is_loaded_and_not_kept(tmp_path: Path) -> None:
    marker, data = exported(tmp_path)
    shell = FakeShell({REF: OLD}, {data: NEW})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.LOADED, result.error
    assert result.bytes_sent == len(data) and result.transfer == "full"
    assert shell.images[REF] == NEW
    assert shell.files == {}
    assert ["dd", f"of={INBOX}/.part-app.tar", "bs=1M", "conv=fsync", "status=none"] in (
        shell.commands
    )


def test_a_bundle_that_does_not_match_its_marker_is_removed_before_any_load(
    tmp_path: Path,
) -> None:
    marker, data = exported(tmp_path, sha="0" * 64)
    shell = FakeShell({REF: OLD}, {data: NEW})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.FAILED
    assert result.error is not None and "sha256" in result.error and "edge" in result.error
    assert shell.images[REF] == OLD
    assert shell.files == {}
    assert not any("load" in command for command in shell.commands)


def test_a_load_that_yields_another_image_is_undone(tmp_path: Path) -> None:
    marker, data = exported(tmp_path)
    shell = FakeShell({REF: OLD}, {data: ODD})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.FAILED
    assert result.error is not None and "previous image was kept" in result.error
    assert shell.images[REF] == OLD
    assert shell.files == {}


def test_a_docker_command_that_does_not_work_fails_the_peer(tmp_path: Path) -> None:
    shell = FakeShell({}, {})
    shell.docker_missing = True
    with pytest.raises(RemoteCommandError, match=r"peer edge: docker command .*unix:///run/d"):
        sync(shell, exported(tmp_path)[0], tmp_path)


# The containerd image store: the ID is a manifest digest, never the version.


def test_a_containerd_peer_with_the_layers_and_runtime_config_gets_nothing(
    tmp_path: Path,
) -> None:
    shell = FakeShell({REF: MANIFEST}, {}, {MANIFEST: SAME})
    result = sync(shell, exported(tmp_path)[0], tmp_path)
    assert result.action is Action.UNCHANGED, result.error
    assert result.bytes_sent == 0 and result.error is None
    assert docker_verbs(shell) == [["image", "inspect"]]
    assert len(shell.commands) == 1  # no mkdir, no dd, no load


def test_a_load_into_a_containerd_peer_is_checked_by_layers_and_runtime_config(
    tmp_path: Path,
) -> None:
    marker, data = exported(tmp_path)
    shell = FakeShell({REF: OLD}, {data: MANIFEST}, {MANIFEST: SAME})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.LOADED, result.error
    assert result.bytes_sent == len(data)
    assert shell.images[REF] == MANIFEST
    assert ["tag"] not in [verb[:1] for verb in docker_verbs(shell)]  # nothing tagged back
    assert shell.files == {}

    again = sync(shell, marker, tmp_path)  # and the next cycle leaves it alone
    assert again.action is Action.UNCHANGED and again.bytes_sent == 0


@pytest.mark.parametrize(
    "change",
    [{"Cmd": ["/other"]}, {"Labels": {"build": "2"}}, {"Env": ["A=2"]}],
    ids=["cmd", "labels", "env"],
)
def test_a_containerd_peer_with_another_runtime_config_gets_the_bundle(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    marker, data = exported(tmp_path)
    other = {"layers": LAYERS, "config": {**SAME["config"], **change}}
    shell = FakeShell({REF: MANIFEST}, {data: MANIFEST2}, {MANIFEST: other, MANIFEST2: SAME})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.LOADED, result.error
    assert result.bytes_sent == len(data)
    assert ["load", "--quiet"] in docker_verbs(shell)
    assert shell.images[REF] == MANIFEST2


def test_a_containerd_peer_with_other_layers_gets_the_bundle(tmp_path: Path) -> None:
    marker, data = exported(tmp_path)
    other = {"layers": ["sha256:" + "f" * 64], "config": SAME["config"]}
    shell = FakeShell({REF: MANIFEST}, {data: MANIFEST2}, {MANIFEST: other, MANIFEST2: SAME})
    assert sync(shell, marker, tmp_path).action is Action.LOADED


def test_a_load_that_yields_another_runtime_config_is_undone(tmp_path: Path) -> None:
    marker, data = exported(tmp_path)
    wrong = {"layers": LAYERS, "config": {**SAME["config"], "Cmd": ["/other"]}}
    shell = FakeShell({REF: MANIFEST}, {data: MANIFEST2}, {MANIFEST: wrong, MANIFEST2: wrong})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.FAILED
    assert result.error is not None and "previous image was kept" in result.error, result.error
    assert "runtime config" in result.error
    assert shell.images[REF] == MANIFEST  # tagged back
    assert shell.files == {}


def test_an_unreadable_bundle_in_the_export_dir_fails_the_image_and_sends_nothing(
    tmp_path: Path,
) -> None:
    marker, _ = exported(tmp_path)
    (tmp_path / "app.tar").write_bytes(b"not a tarball")
    shell = FakeShell({REF: MANIFEST}, {}, {MANIFEST: SAME})
    result = sync(shell, marker, tmp_path)
    assert result.action is Action.FAILED and result.bytes_sent == 0
    assert result.error is not None and "peer edge" in result.error
    assert "app.tar" in result.error, result.error
    assert len(shell.commands) == 1


def test_a_classic_peer_never_has_the_bundle_opened(tmp_path: Path) -> None:
    marker, _ = exported(tmp_path)
    (tmp_path / "app.tar").write_bytes(b"not a tarball")  # would fail if it were read
    shell = FakeShell({REF: NEW}, {})
    assert sync(shell, marker, tmp_path).action is Action.UNCHANGED


@pytest.mark.parametrize(
    "answer",
    [
        b"<no value>\n",
        b"[]\n",
        b'{"Id": "sha256:short"}\n',
        b'{"Id": "%s", "RootFS": {"Layers": ["not a digest"]}}\n' % NEW.encode(),
        b'{"Id": "%s", "RootFS": "layers"}\n' % NEW.encode(),
        b"[" * 100_000,
        b'{"Id": "%s", "Config": {"Labels": {"x": "%s"}}}' % (NEW.encode(), b"y" * 2**20),
    ],
    ids=["text", "list", "bad-id", "bad-layers", "bad-rootfs", "deep", "huge"],
)
def test_an_inspect_answer_that_is_no_image_fails_the_peer_naming_it(
    tmp_path: Path, answer: bytes
) -> None:
    shell = FakeShell({REF: MANIFEST}, {})
    shell.inspect_answer = answer
    with pytest.raises(RemoteCommandError, match=rf"peer edge: .* cannot inspect {REF}: it "):
        sync(shell, exported(tmp_path)[0], tmp_path)
