"""structlog, configured once by ``main``.

JSON lines when the stream is not a terminal (journald, pipes), readable console output
when it is. The stdlib loggers of paramiko and APScheduler go through the same chain, at
WARNING unless asked for more. Context (``run_id``, ``peer``, ``image``) is bound with
``structlog.contextvars`` (:func:`bind`, :func:`unbind`) by the code that owns it; no other
module imports structlog, so it is always imported the one way below.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO


def _import_structlog() -> ModuleType:
    """structlog, imported with rich hidden: when rich is installed (imgsync draws its
    progress bars with it), ``import structlog`` imports most of rich too, for pretty
    tracebacks that imgsync never prints. That was 0.1 s of every process's start — the
    source's and each peer session's. rich stays importable for whoever needs it after."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return importlib.import_module("structlog")
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich -> ImportError
    try:
        return importlib.import_module("structlog")
    finally:
        del sys.modules["rich"]


if TYPE_CHECKING:
    import structlog
else:
    structlog = _import_structlog()

_THIRD_PARTY = ("paramiko", "apscheduler", "docker", "urllib3")


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if stream.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def get(name: str = "imgsync") -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind(**context: Any) -> None:
    """Bind ``context`` (``run_id``, ``peer``, ``image``) to every line logged from here in
    this thread or task, and in the threads started with a copy of its context."""
    structlog.contextvars.bind_contextvars(**context)


def unbind(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)
