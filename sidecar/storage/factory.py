"""Choosing a backend by one option: `--storage memory | copying | sqlite:PATH | redis://...`.

`StorageSpec.parse` validates the option's text (a ValueError with a clear message when it is
not one of those forms); `open_storage` opens the backend it names (a `StorageOpenError` when
it cannot: a path that does not open, a file in use, an unknown schema version ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sidecar.storage.base import Storage

KINDS = ("memory", "copying", "sqlite", "redis")


@dataclass(frozen=True)
class StorageSpec:
    """A parsed `--storage` value: the kind, and the path or URL it names."""

    kind: str = "memory"
    target: Optional[str] = None
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, **options: Any) -> "StorageSpec":
        """`memory`, `copying`, `sqlite:PATH` or `redis://...` / `rediss://...` (or `unix://`)."""
        if text in ("memory", "copying"):
            return cls(text, None, dict(options))
        if text.startswith("sqlite:"):
            path = text[len("sqlite:") :]
            if not path:
                raise ValueError("sqlite storage needs a path: sqlite:PATH")
            return cls("sqlite", path, dict(options))
        if text.startswith(("redis://", "rediss://", "unix://")):
            return cls("redis", text, dict(options))
        raise ValueError(f"unknown storage {text!r}: expected memory, sqlite:PATH or redis://HOST:PORT/DB")

    def describe(self) -> str:
        """The spec as the option spells it (a Redis URL without its password)."""
        if self.kind == "sqlite":
            return f"sqlite:{self.target}"
        if self.kind == "redis" and self.target:
            from urllib.parse import urlsplit

            parts = urlsplit(self.target)
            if parts.password:
                netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
                return parts._replace(netloc=netloc).geturl()
            return self.target
        return self.kind


def open_storage(spec: StorageSpec) -> Storage:
    """Open the backend `spec` names."""
    if spec.kind == "memory":
        from sidecar.storage.memory import MemoryStorage

        return MemoryStorage()
    if spec.kind == "copying":
        from sidecar.storage.copying import CopyingStorage

        return CopyingStorage()
    if spec.kind == "sqlite":
        from sidecar.storage.sqlite import SqliteStorage

        assert spec.target is not None
        return SqliteStorage(spec.target, **spec.options)
    if spec.kind == "redis":
        from sidecar.storage.redis import RedisStorage

        assert spec.target is not None
        return RedisStorage(spec.target, **spec.options)
    raise ValueError(f"unknown storage kind {spec.kind!r}")
