"""Small helpers of the benchmark's cases: the docker CLI to use, scp's command line, inbox
snapshots, sizes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker
import docker.errors

from lab import Lab, Peer

from . import measure, sshwire
from .measure import BenchError
from .names import (
    MiB,
)


def pick_docker_cli(lab: Lab) -> tuple[list[str], dict[str, str] | None]:
    """The docker CLI for the classic pipeline, and the env it needs to talk to the lab's
    engine (DOCKER_API_VERSION pinned to the engine's when the CLI does not negotiate)."""
    engine_api = str(lab.source.client().version().get("ApiVersion", ""))
    tried = []
    for path in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker")):
        if not path or not Path(path).exists():
            continue
        for env in (None, {"DOCKER_API_VERSION": engine_api}):
            full_env = None if env is None else {**os.environ, **env}
            done = subprocess.run(
                [path, "-H", lab.source.url, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                env=full_env,
                check=False,
                timeout=30,
            )
            if done.returncode == 0:
                return [path], full_env
            tried.append(f"{path} (env {env}): {done.stderr.strip()[:200]}")
    raise BenchError("no docker CLI talks to the lab's engine:\n  " + "\n  ".join(tried))


def spread_text(values: list[float]) -> str:
    spread = measure.Spread.of(values)
    return "-" if spread is None else spread.text(2, "s")


def saved_size(client: docker.DockerClient, ref: str) -> int:
    """The size of ``docker save REF``, streamed and counted (nothing written)."""
    return sum(len(chunk) for chunk in client.images.get(ref).save(chunk_size=MiB))


def scp_argv(lab: Lab, peer: Peer, source: Path, dest: Path, cipher: str) -> list[str]:
    """scp with the options of ``lab.ssh_argv`` (strict host key, the lab's key only) and
    ``cipher``."""
    ssh = lab.ssh_argv(peer)
    options = [ssh[i + 1] for i, word in enumerate(ssh[:-1]) if word == "-o"]
    argv = ["scp", "-q", "-F", "/dev/null", "-i", str(lab.client_key), "-P", str(peer.port)]
    argv += sshwire.openssh_options(cipher)
    for option in options:
        argv += ["-o", option]
    return [*argv, str(source), f"root@{peer.address}:{dest}"]


def scp_dest(peer: Peer) -> Path:
    return peer.inbox.parent / "scp-copy.tar"


def top_layer_bytes(tarball: Path) -> int:
    """Size of the top layer's tar in a ``docker save`` tarball (what v2 adds to v1)."""
    with tarfile.open(tarball, mode="r:") as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise BenchError(f"{tarball} has no manifest.json")
        top = json.loads(member.read())[0]["Layers"][-1]
        return int(tar.getmember(top).size)


def inbox_snapshot(peer: Peer) -> dict[str, bytes | None]:
    """The inbox's file names, with the content of the small ones (records, markers)."""
    found: dict[str, bytes | None] = {}
    for path in peer.inbox.iterdir():
        if path.is_file() and path.stat().st_size <= MiB:
            found[path.name] = path.read_bytes()
        else:
            found[path.name] = None
    return found


def inbox_restore(peer: Peer, snapshot: dict[str, bytes | None]) -> None:
    """The inbox as in ``snapshot``: new files removed, small files' content put back."""
    for path in peer.inbox.iterdir():
        if path.name not in snapshot:
            remove(path)
    for name, content in snapshot.items():
        path = peer.inbox / name
        if content is not None and (not path.exists() or path.read_bytes() != content):
            path.write_bytes(content)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def mb(count: float) -> float:
    return count / 1e6


def inbox_marker_ctime(peers: list[Peer], since: float) -> float | None:
    """When the last marker landed in the peers' inboxes (its rename), if after ``since``:
    the end of the last receive."""
    stamps = []
    for peer in peers:
        for path in peer.inbox.glob("*.marker.json"):
            with contextlib.suppress(OSError):
                stamps.append(path.stat().st_ctime)
    latest = max(stamps, default=None)
    return latest if latest is not None and latest >= since else None


def foreign_dockerds(lab: Lab) -> int:
    """dockerd processes that are not this lab's (other labs running on the machine)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dockerd") and str(lab.root).encode() not in b" ".join(argv):
            count += 1
    return count


def say(message: str) -> None:
    """One line of the benchmark's progress on stdout."""
    print(f"[bench] {message}", flush=True)
