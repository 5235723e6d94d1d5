"""The service as it really runs: a real systemd (a Debian 12 root booted under
``systemd-nspawn --boot``, lab/service_host.py), imgsync installed there as the README says,
the shipped unit, sysusers and tmpfiles snippets, the ``imgsync`` user and its sandbox. The
daemon starts (READY), syncs to a lab peer, takes a new config on ``systemctl reload``, stops
within 10 s on ``systemctl stop``, and ``journalctl -u imgsync`` holds its JSON lines.

The container shares the lab machine's network (the peer's sshd on 127.0.0.x) and is given the
lab source's Docker socket as ``/run/docker.sock``, owned by a ``docker`` group of the same
GID, as a host with Docker installed has it."""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, tomlw
from lab.service_host import ServiceHost, service_unavailable

from .helpers import build

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
CONFIG = "/etc/imgsync/imgsync.toml"


@dataclass
class Site:
    lab: Lab
    host: ServiceHost


def wait_for(check: Callable[[], bool], timeout: float, what: str, host: ServiceHost) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    journal = host.run("journalctl", "-u", "imgsync", "--no-pager", "-n", "40", check=False)
    raise AssertionError(f"not within {timeout}s: {what}\n{journal.stdout}")


def checkout_copy(where: Path) -> Path:
    """What `pip install /path/to/imgsync` needs, and the units and snippets to install."""
    where.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, where / name)
    for name in ("imgsync", "systemd"):
        shutil.copytree(REPO / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    return where


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = service_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"service host missing on CI: {reason}", pytrace=False)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("service")
    with Lab(work / "lab", peers=1) as lab:
        source = checkout_copy(work / "src")
        host = ServiceHost(
            work, {source: "/usr/src/imgsync", lab.source.socket: "/run/docker.sock"}
        )
        try:
            host.boot()
            install(host, lab)
            yield Site(lab, host)
        finally:
            host.stop()


def install(host: ServiceHost, lab: Lab) -> None:
    """docs/systemd.md's steps on a source, as root inside the booted host."""
    docker_gid = lab.source.socket.stat().st_gid  # the docker package makes this group
    host.run("groupadd", "--system", "--gid", str(docker_gid), "docker")
    # this checkout, over the imgsync the root was built with (offline, from its wheelhouse)
    wheels = ["--no-index", "--find-links", "/opt/imgsync-wheels", "--no-deps"]
    reinstall = ["install", "-q", *wheels, "--force-reinstall", "/usr/src/imgsync"]
    host.run("/opt/imgsync/bin/pip", *reinstall, timeout=180)
    units = "/usr/src/imgsync/systemd"
    host.run("install", "-m", "0644", f"{units}/imgsync.sysusers.conf",
             "/usr/lib/sysusers.d/imgsync.conf")  # fmt: skip
    host.run("install", "-m", "0644", f"{units}/imgsync.tmpfiles.conf",
             "/usr/lib/tmpfiles.d/imgsync.conf")  # fmt: skip
    host.run("systemd-sysusers", "imgsync.conf")
    host.run("systemd-tmpfiles", "--create", "imgsync.conf")
    host.run("install", "-d", "-m", "0755", "/etc/imgsync")
    host.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imgsync@service",
             "-f", "/etc/imgsync/id_ed25519")  # fmt: skip
    host.run("chown", "imgsync:imgsync", "/etc/imgsync/id_ed25519")
    peer = lab.peers[0]
    scan = host.run("ssh-keyscan", "-t", "ed25519", "-p", str(peer.port), peer.address)
    host.write("/etc/imgsync/known_hosts", scan.stdout)
    public = host.run("cat", "/etc/imgsync/id_ed25519.pub").stdout
    with lab.authorized_keys.open("a") as keys:  # the peer authorizes the source's key
        keys.write(public)
    for name in ("imgsync.service", "imgsync-sync.service", "imgsync-sync.timer"):
        host.run("install", "-m", "0644", f"{units}/{name}", "/etc/systemd/system/")
    host.run("systemctl", "daemon-reload")


def write_config(site: Site, images: list[str]) -> None:
    """The lab's source config, moved to the service's places (/etc/imgsync, /var/lib/imgsync,
    the Docker socket's default address)."""
    config: dict[str, Any] = tomllib.loads(site.lab.write_configs(images).read_text())
    del config["source"]["docker_host"]
    config["source"]["export_dir"] = "/var/lib/imgsync/export"
    config["ssh"]["identity_file"] = "/etc/imgsync/id_ed25519"
    config["ssh"]["known_hosts"] = "/etc/imgsync/known_hosts"
    config["state"]["path"] = "/var/lib/imgsync/state.db"
    site.host.write(CONFIG, tomlw.dumps(config))


def unit(host: ServiceHost, *names: str, name: str = "imgsync.service") -> dict[str, str]:
    shown = host.run("systemctl", "show", name, *(f"--property={n}" for n in names))
    return dict(line.split("=", 1) for line in shown.stdout.splitlines())


def peer_runs(site: Site, ref: str) -> Callable[[], bool]:
    want = site.lab.source.client().images.get(ref).id

    def check() -> bool:
        images = site.lab.peers[0].docker.client().images.list(name=ref)
        return any(image.id == want for image in images)

    return check


def journal_json(host: ServiceHost) -> list[dict[str, Any]]:
    text = host.run("journalctl", "-u", "imgsync", "-o", "cat", "--no-pager").stdout
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_daemon_runs_as_its_user_under_systemd_syncs_reloads_and_stops(site: Site) -> None:
    host, lab = site.host, site.lab
    first, second = "service/web:1", "service/worker:1"
    build(lab, first, seed=14001)
    write_config(site, [first])

    # Type=notify: `systemctl start` returns once the daemon said READY=1
    host.run("systemctl", "enable", "--now", "imgsync.service", timeout=120)
    started = unit(host, "ActiveState", "SubState", "MainPID", "NRestarts")
    assert (started["ActiveState"], started["SubState"]) == ("active", "running"), started
    user = host.run("ps", "-o", "user=", "-p", started["MainPID"]).stdout.strip()
    assert user == "imgsync"
    wait_for(peer_runs(site, first), 120, f"the peer runs {first}", host)

    # reload: the new config is taken by the same process (its first cycle sends the new image)
    build(lab, second, seed=14002)
    write_config(site, [first, second])
    host.run("systemctl", "reload", "imgsync.service")
    wait_for(peer_runs(site, second), 120, f"the peer runs {second} after the reload", host)
    reloaded = unit(host, "ActiveState", "MainPID", "NRestarts")
    assert reloaded["MainPID"] == started["MainPID"] and reloaded["NRestarts"] == "0", reloaded

    # the journal holds the daemon's JSON lines, each cycle's with its run_id
    lines = journal_json(host)
    cycles = [line for line in lines if line["event"] == "cycle finished"]
    assert len(cycles) >= 2 and all(line.get("run_id") for line in cycles), lines[-10:]

    # its state is its own: the state dir, DB and exports belong to imgsync, closed to others
    owners = host.run("stat", "-c", "%U %a %n", "/var/lib/imgsync", "/var/lib/imgsync/state.db",
                      "/var/lib/imgsync/export").stdout.split("\n")  # fmt: skip
    assert all(row.startswith("imgsync ") for row in owners if row), owners
    assert owners[0].split()[1] == "750", owners

    # stop: SIGTERM ends the daemon cleanly, well within TimeoutStopSec
    begun = time.monotonic()
    host.run("systemctl", "stop", "imgsync.service", timeout=60)
    took = time.monotonic() - begun
    stopped = unit(host, "ActiveState", "Result", "ExecMainStatus")
    assert took < 10, f"systemctl stop took {took:.1f}s"
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}


def test_the_timer_units_one_cycle_runs_as_its_user_and_succeeds(site: Site) -> None:
    host, lab = site.host, site.lab
    ref = "service/timer:1"
    build(lab, ref, seed=14003)
    write_config(site, [ref])
    host.run("systemctl", "enable", "--now", "imgsync-sync.timer")
    assert unit(host, "ActiveState", name="imgsync-sync.timer")["ActiveState"] == "active"
    # what each tick starts: one cycle (Type=oneshot: start returns when it has ended)
    host.run("systemctl", "start", "imgsync-sync.service", timeout=120)
    ran = unit(host, "Result", "ExecMainStatus", "User", name="imgsync-sync.service")
    assert ran == {"Result": "success", "ExecMainStatus": "0", "User": "imgsync"}, ran
    assert peer_runs(site, ref)()
    lines = host.run("journalctl", "-u", "imgsync-sync", "-o", "cat", "--no-pager").stdout
    # sync prints its results (one line per peer x image) to the journal
    assert any(line.split()[:2] == ["p1", ref] and "loaded" in line for line in lines.splitlines())
