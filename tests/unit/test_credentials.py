"""The source's identity file: an encrypted one without a passphrase says how to give it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imgsync.adapters.credentials import load_identity
from imgsync.config import Config, peer_settings
from imgsync.errors import AuthError


@pytest.mark.parametrize("kind", [["-t", "ed25519"], ["-t", "rsa", "-b", "2048", "-m", "PEM"]])
def test_an_encrypted_key_without_a_passphrase_credential_says_how_to_give_one(
    tmp_path: Path, kind: list[str]
) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "secret", "-f", str(key)], check=True)
    config = Config.model_validate(
        {"peers": [{"name": "edge", "host": "192.0.2.1", "identity_file": str(key)}]}
    )
    with pytest.raises(AuthError, match=r"is encrypted; set ssh\.passphrase_credential"):
        load_identity(peer_settings(config, config.peers[0]))


def test_an_identity_file_of_another_user_is_refused_with_the_chown_to_run(
    tmp_path: Path,
) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    os.chown(key, os.geteuid() + 4242, -1)  # the tests run as root (the lab needs it)
    config = Config.model_validate(
        {"peers": [{"name": "edge", "host": "192.0.2.1", "identity_file": str(key)}]}
    )
    with pytest.raises(AuthError, match=f"belongs to uid {os.geteuid() + 4242}.*run: chown"):
        load_identity(peer_settings(config, config.peers[0]))
