"""imgsync: keep Docker images in sync from a source host to peers over SSH."""

__version__ = "0.2.0"
