"""The words of ``imgsync check`` (pure): its items, what a failure means and the line that
fixes it, and the printed checklist. ``check`` runs the probes and hands their outcomes
(messages, exit statuses) here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from imgsync.adapters import hostkeys
from imgsync.config import PeerSettings
from imgsync.errors import ExitCode
from imgsync.text import printable_text

OK, FAIL, SKIPPED = "ok", "FAIL", "skipped"
ITEMS = ("sshd", "host key", "key auth", "imgsync", "docker", "inbox")
AGENTLESS_ITEMS = ("sshd", "host key", "key auth", "docker")
DEFAULT_SERVE = ("imgsync", "--config", "/etc/imgsync/imgsync.toml", "serve")
IMGSYNC_FIX = "install imgsync on the peer, or check apply_command"
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]+")
_KEY_TYPE = re.compile(r"\((?:ssh-)?(ed25519|ecdsa|rsa)[-\w]* SHA256:")
_DOCKER_DOWN = ("cannot connect", "no such file", "connection refused", "daemon running")


@dataclass(frozen=True)
class Item:
    name: str
    status: str  # OK, FAIL or SKIPPED
    detail: str = ""
    fix: str | None = None


@dataclass(frozen=True)
class PeerCheck:
    peer: str
    where: str  # user@host:port
    items: tuple[Item, ...]

    @property
    def ok(self) -> bool:
        return all(item.status == OK for item in self.items)

    def first_failure(self) -> str:
        failed = [i.name for i in self.items if i.status == FAIL]
        return (failed or [i.name for i in self.items if i.status != OK] or ["-"])[0]


def sshd_fix(peer: PeerSettings) -> str:
    return f"is sshd running on {peer.host}:{peer.port}? is a firewall in the way?"


def inbox_fix(peer: PeerSettings) -> str:
    return f"on the peer: install -d -o {peer.user} -m 0750 {shlex.quote(peer.inbox)}"


def host_key_item(peer: PeerSettings, problem: str) -> Item:
    """A host key the transport refused: unknown, changed, or no known_hosts to check."""
    prints = _FINGERPRINT.findall(problem)
    name = hostkeys.known_hosts_name(peer.host, peer.port)
    known_hosts = shlex.quote(peer.known_hosts)
    kind = _KEY_TYPE.search(problem)
    keytype = kind[1] if kind else "ed25519"
    keyscan = f"ssh-keyscan -t {keytype} -p {peer.port} {peer.host} >> {known_hosts}"
    keygen = f"`ssh-keygen -lf /etc/ssh/ssh_host_{keytype}_key.pub` on the peer"
    where = f"{peer.host}:{peer.port}"
    if "CHANGED" in problem and len(prints) >= 2:
        detail = f"CHANGED: {where} offers {prints[0]}, {peer.known_hosts} has {prints[1]}"
        fix = (
            f"verify with {keygen} (it must print {prints[0]}), then replace the line for "
            f"{name} in {peer.known_hosts}: ssh-keygen -R {shlex.quote(name)} -f {known_hosts} "
            f"&& {keyscan}"
        )
    elif prints:
        detail = f"unknown: {where} offers {prints[0]}, not in {peer.known_hosts}"
        fix = f"verify {prints[0]} with {keygen}, then run: {keyscan}"
    else:
        detail, fix = problem, f"verify the peer's key with {keygen}, then run: {keyscan}"
    return Item("host key", FAIL, detail, fix=fix)


def identity_item(peer: PeerSettings, problem: str) -> Item:
    """The identity file cannot be used (before any connection)."""
    path = shlex.quote(peer.identity_file)
    if "group or others" in problem:
        fix = f"chmod 600 {path}"
    elif "does not exist" in problem:
        fix = f"ssh-keygen -t ed25519 -N '' -C imgsync@source -f {path}, then authorize its key"
    elif "encrypted" in problem or "passphrase" in problem:
        fix = "set ssh.passphrase_credential and give it with systemd's LoadCredential="
    else:
        fix = f"{peer.identity_file} must be a private key the user running imgsync can read"
    return Item("key auth", FAIL, problem, fix=fix)


def auth_item(peer: PeerSettings, problem: str, public_key: str) -> Item:
    """The peer did not accept the key: the authorized_keys line that lets it in."""
    detail = problem
    if "not accepted" in problem:
        detail = f"{peer.identity_file} was not accepted for user {peer.user}"
    fix = f"on the peer, add to ~{peer.user}/.ssh/authorized_keys (mode 0600): "
    return Item("key auth", FAIL, detail, fix=fix + authorized_keys_line(peer, public_key))


def authorized_keys_line(peer: PeerSettings, public_key: str) -> str:
    """The peer's ``authorized_keys`` line for the source's key: locked to ``imgsync serve``
    (with the config the peer's ``apply_command`` names); plain for an agentless peer."""
    if peer.mode == "agentless":
        return public_key
    argv = peer.apply_argv
    serve = (*argv[:-1], "serve") if len(argv) > 1 and argv[-1] == "apply" else DEFAULT_SERVE
    command = shlex.join(serve).replace('"', '\\"')  # sshd unquotes only \"
    return f'command="{command}",restrict {public_key}'


def failed_inventory(
    peer: PeerSettings, argv: list[str], status: int, why: str, problem: str
) -> Iterator[Item]:
    """A bare inventory that gave none: imgsync missing or refusing, or stopped by its
    Docker or its inbox (imgsync's own errors start with ``imgsync:``)."""
    ran = f"{shlex.join(argv)} exited {status}: {why}"
    if status == 0:
        yield Item("imgsync", FAIL, f"{shlex.join(argv)} answered no inventory: {problem}",
                   fix=IMGSYNC_FIX)  # fmt: skip
        return
    if status == ExitCode.CONFIG:
        fix = "fix the peer's imgsync config (see the detail), or check apply_command"
        yield Item("imgsync", FAIL, ran, fix=fix)
        return
    if status == ExitCode.REFUSED:
        fix = "update imgsync on the peer: its serve refuses `apply --inventory --json`"
        yield Item("imgsync", FAIL, ran, fix=fix)
        return
    if not why.startswith("imgsync: "):
        yield Item("imgsync", FAIL, ran, fix=IMGSYNC_FIX)
        return
    yield Item("imgsync", OK, "imgsync answers (its version is unknown: the inventory failed)")
    text = why.removeprefix("imgsync: ")
    kind = _engine_named(text)
    if kind == "docker":
        yield Item("docker", FAIL, text, fix=docker_fix(peer.user, text, "[receiver] docker_host"))
        return
    if kind is not None:
        yield Item(kind, FAIL, text, fix=engine_fix(kind, peer.user, text))
        return
    yield Item("engine", SKIPPED, "not checked: the inventory stopped at the inbox")
    yield Item("inbox", FAIL, text, fix=inbox_fix(peer))


def _engine_named(problem: str) -> str | None:
    """Which engine a peer's error is about: the adapters name theirs (``containerd at
    SOCKET``, ``Podman at SOCKET``); Docker's are worded by Docker."""
    low = problem.lower()
    for kind in ("containerd at", "podman at", "docker"):
        if kind in low:
            return kind.split()[0]
    return None


def engine_fix(kind: str, user: str, problem: str) -> str:
    """What to do on the peer when imgsync there cannot use its containerd or Podman."""
    low = problem.lower()
    if kind == "containerd":
        if "cannot run" in low:
            return 'install ctr on the peer, or set [receiver] ctr (k3s: ctr = "k3s ctr")'
        if "permission denied" in low:
            return f"containerd's socket is root's: run imgsync on the peer as root, not {user}"
        return (
            "is containerd running on the peer (systemctl status containerd; k3s: "
            "systemctl status k3s)? [receiver] address must be its socket: kubeadm "
            "/run/containerd/containerd.sock, k3s /run/k3s/containerd/containerd.sock"
        )
    if "permission denied" in low:
        return (
            f"the rootful socket is root's: run imgsync as root, or point [receiver] address "
            f"at {user}'s own (unix:///run/user/UID/podman/podman.sock)"
        )
    return (
        "is Podman's API socket on? systemctl enable --now podman.socket (rootless: "
        "systemctl --user enable --now podman.socket); [receiver] address must name it"
    )


def docker_fix(user: str, problem: str, setting: str) -> str:
    """What to do on the peer when ``user`` cannot reach Docker there."""
    low = problem.lower()
    if "permission denied" in low:
        return (
            f"on the peer: usermod -aG docker {user}, then log in again (a new SSH session) "
            "or restart the service that runs imgsync there"
        )
    if any(sign in low for sign in _DOCKER_DOWN):
        return f"is the docker service running on the peer? systemctl status docker (and {setting})"
    return f"`docker version` must work for {user} on the peer (see the detail; and {setting})"


def clean(raw: bytes) -> str:
    """A peer's words, printable and not too long."""
    return printable_text(raw.decode("utf-8", "replace").strip(), 500)


def lines(checks: list[PeerCheck]) -> list[str]:
    """Per peer: a header, then each item (and its fix); last, a one-line verdict."""
    out = []
    for check in checks:
        out.append(f"{check.peer}  {check.where}")
        for item in check.items:
            out.append(f"  {item.status:<7}  {item.name:<8}  {item.detail}".rstrip())
            if item.fix:
                out.append(f"  {'':<7}  {'':<8}  FIX: {item.fix}")
        out.append("")
    failed = [c for c in checks if not c.ok]
    if not failed:
        out.append(f"ok: every item of {len(checks)} peer(s) is ok")
        return out
    names = ", ".join(f"{c.peer} ({c.first_failure()})" for c in failed)
    out.append(f"FAILED: {names}; {len(checks) - len(failed)} of {len(checks)} peer(s) ok")
    return out
