"""A private OpenSSH server for one simulated peer, on a loopback address and port."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from ._proc import LabError, ManagedProcess

SSHD = "/usr/sbin/sshd"  # sshd must be started by absolute path (it re-executes itself)


def _keygen(path: Path, comment: str) -> None:
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)


def _account_locked(user: str) -> bool:
    """True if ``user``'s password field starts with '!' (sshd refuses such users unless PAM)."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return fields[1].startswith("!")
    except OSError:
        pass
    return False


class SshServer:
    """``sshd -D`` with its own host key and config; key auth only, for ``root``."""

    def __init__(
        self, name: str, address: str, port: int, root: Path, authorized_keys: Path
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.root = root
        self.authorized_keys = authorized_keys
        self.host_key = root / "ssh_host_ed25519_key"
        self.config_path = root / "sshd_config"
        self.pid_file = root / "sshd.pid"
        self._proc = ManagedProcess(
            f"sshd[{name}]", [SSHD, "-D", "-e", "-f", str(self.config_path)], root / "sshd.log"
        )

    def __repr__(self) -> str:
        return f"SshServer({self.name!r}, {self.address}:{self.port}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.address}:{self.port}",
            "AddressFamily inet",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys.resolve()}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            # sshd refuses '!'-locked accounts without PAM; PAM's account stack allows them.
            f"UsePAM {'yes' if _account_locked('root') else 'no'}",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "MaxStartups 200",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "PermitUserEnvironment no",
            "",
        ]
        self.config_path.write_text("\n".join(lines))

    def spawn(self) -> None:
        """Write config, make a host key if there is none, start sshd (does not wait)."""
        if self._proc.alive():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        os.chmod("/run/sshd", 0o755)
        if not self.host_key.exists():
            _keygen(self.host_key, f"lab-{self.name}-host")
        self._write_config()
        self._proc.spawn()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the port accepts TCP and sends an SSH banner."""
        self._proc.wait_until(
            self._banner, f"serving SSH on {self.address}:{self.port}", timeout=timeout
        )

    def start(self, timeout: float = 30.0) -> None:
        try:
            self.spawn()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._proc.stop(timeout=10)

    def _banner(self) -> bool:
        with socket.create_connection((self.address, self.port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")

    def public_key(self) -> str:
        """The host public key, ``ssh-ed25519 AAAA…`` (without the comment)."""
        text = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()
        return f"{text[0]} {text[1]}"

    def host_key_line(self, host: str | None = None, port: int | None = None) -> str:
        """A known_hosts line for this server as reached at host:port (default: sshd's own)."""
        host = host or self.address
        port = port or self.port
        name = host if port == 22 else f"[{host}]:{port}"
        return f"{name} {self.public_key()}"

    def fingerprint(self) -> str:
        """``SHA256:…`` as ``ssh-keygen -lf`` prints it."""
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.host_key)], check=True, capture_output=True, text=True
        ).stdout.split()
        if len(out) < 2 or not out[1].startswith("SHA256:"):
            raise LabError(f"unexpected ssh-keygen -lf output: {out}")
        return out[1]

    def rotate_host_key(self) -> str:
        """Stop, generate a NEW host key, start again; returns the new fingerprint."""
        self.stop()
        _keygen(self.host_key, f"lab-{self.name}-host")
        self.start()
        return self.fingerprint()
