"""The store's settings, each defined once: its default and its bounds, shared by the command
line (`options.SidecarOptions`), the hello (`options.HelloOptions`) and the store
(`config.StoreConfig`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

DEFAULT_TTL = 3600
"""Seconds a session lives after its last access, unless created with its own `:ttl`."""

DEFAULT_GLOBAL_PROGRAM_TTL = 3600
"""Seconds a global program is kept after it was stored."""

DEFAULT_CLEANUP_INTERVAL_MS = 60_000
"""Milliseconds between periodic cleanups."""

MIB = 1024 * 1024

DEFAULT_MAX_FRAME_BYTES = 64 * MIB
"""The largest frame body accepted (a larger one is skipped and answered with an error)."""

DEFAULT_SPIN_US = 50
"""Microseconds the I/O loop polls stdin after a lone call's answer before it blocks."""

Seconds = Annotated[int, Field(ge=0)]
"""A TTL: whole seconds, 0 or more."""

Milliseconds = Annotated[int, Field(ge=1)]
"""An interval: whole milliseconds, 1 or more."""
