"""Python log records turned into `{:log, level, message, metadata}` frame terms.

`LogFrameHandler` is a `logging.Handler` that queues, for every record at or above its level,
the three terms of a `:log` frame; the server drains the queue into its next batch of output
frames. It never writes anywhere itself, so it is safe to install on the root logger.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from sidecar.terms import Atom

LEVEL_NAMES = ("debug", "info", "warning", "error")

A_DEBUG = Atom("debug")
A_INFO = Atom("info")
A_WARNING = Atom("warning")
A_ERROR = Atom("error")

LogTerms = tuple[Atom, str, dict]


def python_level(name: str) -> int:
    """The `logging` level of one of `LEVEL_NAMES`."""
    return {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[name]


def elixir_level(levelno: int) -> Atom:
    """The Elixir Logger level atom for a Python level number."""
    if levelno >= logging.ERROR:
        return A_ERROR
    if levelno >= logging.WARNING:
        return A_WARNING
    if levelno >= logging.INFO:
        return A_INFO
    return A_DEBUG


def record_terms(record: logging.LogRecord) -> LogTerms:
    """`(level, message, metadata)` of a `:log` frame for `record`."""
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
    metadata: dict[Any, Any] = {
        Atom("logger"): record.name,
        Atom("function"): record.funcName or "",
        Atom("line"): record.lineno,
        Atom("os_pid"): os.getpid(),
    }
    return elixir_level(record.levelno), message, metadata


class LogFrameHandler(logging.Handler):
    """Queues `:log` frame terms for the server to send. Thread-safe; bounded."""

    def __init__(self, level: int = logging.WARNING, max_pending: int = 10_000) -> None:
        super().__init__(level)
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[LogTerms] = []
        self._pending_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            terms = record_terms(record)
        except Exception:  # a record that cannot be rendered must not break the caller
            self.handleError(record)
            return
        with self._pending_lock:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            self._pending.append(terms)

    def has_pending(self) -> bool:
        """Whether records wait to be sent."""
        return bool(self._pending)

    def drain(self) -> list[LogTerms]:
        """Every queued record's terms, oldest first; the queue is emptied."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        return pending
