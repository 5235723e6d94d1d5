"""Which engine a peer's ``[receiver]`` names, opened: the one place the receiver gets an
engine from (:class:`~imgsync.engines.base.ReceivingEngine`)."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator

from imgsync.config import ReceiverConfig
from imgsync.engines.base import CONTAINERD, PODMAN, ReceivingEngine

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"  # kubeadm; k3s: /run/k3s/containerd/…
PODMAN_SOCKET = "unix:///run/podman/podman.sock"  # podman.socket (rootful)


def open_engine(receiver: ReceiverConfig) -> ReceivingEngine:
    """The engine ``receiver`` names (raise EngineError when it cannot be reached)."""
    if receiver.engine == CONTAINERD:
        from imgsync.engines.containerd import ContainerdEngine

        address = receiver.address or CONTAINERD_SOCKET
        return ContainerdEngine(
            address, receiver.namespace, shlex.split(receiver.ctr), receiver.pin
        )
    if receiver.engine == PODMAN:
        from imgsync.engines.podman import PodmanEngine

        return PodmanEngine(receiver.address or PODMAN_SOCKET)
    from imgsync.engines.docker import Engine

    return Engine(receiver.docker_host)


@contextlib.contextmanager
def engine_for(receiver: ReceiverConfig) -> Iterator[ReceivingEngine]:
    engine = open_engine(receiver)
    try:
        yield engine
    finally:
        engine.close()
