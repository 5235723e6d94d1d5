"""``[receiver] engine`` and its keys: which adapter a peer opens, and the errors a wrong
combination gets (each naming its key); the local command runner those adapters use."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from imgsync import config as cfg
from imgsync.adapters import command
from imgsync.engines.containerd import ContainerdEngine
from imgsync.engines.select import CONTAINERD_SOCKET, open_engine
from imgsync.errors import ConfigError, EngineError

from .test_config import problems, write


def receiver(tmp_path: Path, text: str) -> cfg.ReceiverConfig:
    loaded = cfg.load(write(tmp_path, "[receiver]\n" + text)).receiver
    assert loaded is not None
    return loaded


def test_a_containerd_peer_defaults_to_kubernetes_namespace_socket_and_pinning(
    tmp_path: Path,
) -> None:
    engine = open_engine(receiver(tmp_path, 'engine = "containerd"\n'))
    assert isinstance(engine, ContainerdEngine)
    assert engine.namespace == "k8s.io"
    assert CONTAINERD_SOCKET in engine.name


def test_k3s_ctr_is_split_into_words_never_given_to_a_shell(tmp_path: Path) -> None:
    engine = open_engine(receiver(tmp_path, 'engine = "containerd"\nctr = "k3s ctr"\n'))
    assert isinstance(engine, ContainerdEngine)
    assert engine._ctr_argv[:2] == ["k3s", "ctr"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('engine = "containerd"\ndocker_host = "unix:///x.sock"\n', "docker_host"),
        ('namespace = "k8s.io"\n', "namespace"),
        ('address = "/run/x.sock"\n', "address"),
        ('engine = "podman"\nctr = "ctr"\n', "ctr"),
        ('engine = "podman"\npin = false\n', "pin"),
    ],
)
def test_a_key_of_another_engine_is_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    found = problems(tmp_path, "[receiver]\n" + text)
    assert any("receiver" in p and key in p and "cannot be used with engine" in p for p in found)


@pytest.mark.parametrize("namespace", ["", "k8s io", "../x", "a;b", "x" * 80])
def test_a_namespace_that_containerd_would_refuse_is_refused_here(
    tmp_path: Path, namespace: str
) -> None:
    text = f'[receiver]\nengine = "containerd"\nnamespace = "{namespace}"\n'
    assert any("receiver.namespace" in p for p in problems(tmp_path, text))


def test_an_unknown_engine_is_refused_with_the_choices(tmp_path: Path) -> None:
    found = problems(tmp_path, '[receiver]\nengine = "cri-o"\n')
    assert any("receiver.engine" in p and "containerd" in p for p in found), found


def test_a_command_that_says_too_much_costs_bounded_memory() -> None:
    code = "import sys; sys.stdout.write('x' * (9 * 1024 * 1024)); sys.stderr.write('e' * 200000)"
    done = command.run([sys.executable, "-c", code])
    assert done.ok and done.truncated
    assert len(done.stdout) == command.OUTPUT_KEPT
    assert len(done.stderr) <= command.STDERR_KEPT
    assert not command.run([sys.executable, "-c", "print('short')"]).truncated


def test_a_command_reads_a_file_or_an_iterators_bytes_as_its_stdin(tmp_path: Path) -> None:
    echo = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"]
    assert command.run(echo, stdin=io.BytesIO(b"from a file")).stdout == b"from a file"
    assert command.run(echo, stdin=iter([b"in ", b"chunks"])).stdout == b"in chunks"


def test_a_command_that_outlives_its_deadline_is_killed_and_named() -> None:
    with pytest.raises(EngineError, match="took more than"):
        command.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_a_missing_command_is_an_engine_error_naming_it() -> None:
    with pytest.raises(EngineError, match="cannot run /nonexistent/ctr"):
        command.run(["/nonexistent/ctr", "version"])


def test_a_failing_command_says_its_own_last_words() -> None:
    done = command.run([sys.executable, "-c", "import sys; sys.exit('no such socket')"])
    assert not done.ok and done.why() == "no such socket"


def test_a_config_error_is_still_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        cfg.load(write(tmp_path, '[receiver]\nengine = "containerd"\nnamespace = 3\n'))
