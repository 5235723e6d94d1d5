"""Test lab for imgsync: real dockerd and sshd processes on loopback, started and torn down by us.

Start with ``python -m lab selftest`` or ``python -m lab demo``; tests get a started
:class:`Lab` from the ``lab`` fixture in tests/conftest.py.
"""

from ._proc import LabError, unavailable_reason
from .cluster import Lab, Peer
from .docker_node import DockerNode
from .images import build_image, layer_ids, retag
from .relay import ByteCountingRelay
from .sshd import SshServer

__all__ = [
    "ByteCountingRelay",
    "DockerNode",
    "Lab",
    "LabError",
    "Peer",
    "SshServer",
    "build_image",
    "layer_ids",
    "retag",
    "unavailable_reason",
]
