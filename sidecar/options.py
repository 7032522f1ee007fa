"""What may be set from outside, validated with pydantic: the command line (`SidecarOptions`)
and the options map of `{:hello, 1, opts}` (`HelloOptions`, which overrides the store settings the
command line set). Defaults and bounds come from `sidecar.settings`; the store's own validated
settings are `sidecar.store.config.StoreConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sidecar.settings import (
    DEFAULT_CLEANUP_INTERVAL_MS,
    DEFAULT_GLOBAL_PROGRAM_TTL,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_SPIN_US,
    DEFAULT_TTL,
    Milliseconds,
    Seconds,
)
from sidecar.terms import Atom

if TYPE_CHECKING:
    from sidecar.storage.factory import StorageSpec

LogLevelName = Literal["debug", "info", "warning", "error"]
A_INVALID_OPTION = Atom("invalid_option")


class SidecarOptions(BaseModel):
    """Everything the command line sets. `:hello` options override the store settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_ttl: Seconds = Field(DEFAULT_TTL, description="session TTL in seconds")
    global_program_ttl: Seconds = Field(DEFAULT_GLOBAL_PROGRAM_TTL, description="global program TTL in seconds")
    cleanup_interval: Milliseconds = Field(DEFAULT_CLEANUP_INTERVAL_MS, description="ms between periodic cleanups")
    max_frame_bytes: int = Field(DEFAULT_MAX_FRAME_BYTES, ge=64, le=2**32 - 1, description="largest accepted frame body")
    log_level: LogLevelName = "info"
    log_frame_level: LogLevelName = "warning"
    enable_test_calls: bool = False
    spin_us: int = Field(
        DEFAULT_SPIN_US, ge=0, le=1_000_000, description="µs to poll stdin after a lone call's answer before blocking"
    )
    storage: str = Field("memory", description="memory, sqlite:PATH or redis://HOST:PORT/DB")
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    redis_prefix: str = Field("snakepit:", min_length=1, description="prefix of every Redis key of this store")
    redis_timeout_ms: int = Field(1000, ge=10, le=60_000, description="Redis connect and read timeout")
    redis_cache_mb: int = Field(64, ge=0, le=1_000_000, description="memory for copies of Redis sessions")

    @field_validator("redis_prefix")
    @classmethod
    def _redis_prefix(cls, value: str) -> str:
        from sidecar.storage.redis_layout import check_prefix

        return check_prefix(value)  # a ValueError names what is wrong

    @field_validator("storage")
    @classmethod
    def _storage_spec(cls, value: str) -> str:
        from sidecar.storage.factory import StorageSpec

        StorageSpec.parse(value)  # a ValueError names what is wrong
        return value

    def storage_spec(self) -> "StorageSpec":
        """The backend `storage` names, with its options."""
        from sidecar.storage.factory import StorageSpec

        spec = StorageSpec.parse(self.storage)
        if spec.kind == "sqlite":
            return StorageSpec.parse(self.storage, synchronous=self.sqlite_synchronous)
        if spec.kind == "redis":
            return StorageSpec.parse(
                self.storage, prefix=self.redis_prefix, timeout_ms=self.redis_timeout_ms, cache_mb=self.redis_cache_mb
            )
        return spec


class HelloOptions(BaseModel):
    """The options map of `{:hello, 1, opts}` (docs/protocol.md); nil counts as not given."""

    model_config = ConfigDict(strict=True, frozen=True, arbitrary_types_allowed=True)

    session_struct: Atom | None = None
    variable_struct: Atom | None = None
    default_ttl: Seconds | None = None
    global_program_ttl: Seconds | None = None
    cleanup_interval: Milliseconds | None = None
    monotonic_time: int | None = None
    monotonic_time_ms: int | None = None
    time_offset_ms: int | None = None
    telemetry: bool | None = None
    compact_variables: bool | None = None
    read_cache: bool | None = None

    @field_validator("session_struct", "variable_struct", mode="before")
    @classmethod
    def _module_atom(cls, value: Any) -> Any:
        if value is None or isinstance(value, Atom):
            return value
        raise ValueError("must be a module atom")

    @classmethod
    def from_term(cls, options: dict) -> "HelloOptions":
        """Known keys (atoms, or their binary names) of the hello map; others are ignored."""
        known = cls.model_fields
        given = {}
        for key, value in options.items():
            name = key.name if isinstance(key, Atom) else key if isinstance(key, str) else None
            if name in known and value is not None:
                given[name] = value
        return cls.model_validate(given)


def option_error_term(error: ValidationError, options: dict) -> tuple[Any, str]:
    """`{:invalid_option, key, value}` and a message for the first bad hello option."""
    problem = error.errors()[0]
    name = str(problem["loc"][0]) if problem["loc"] else "options"
    value = problem.get("input")
    for key, given in options.items():
        if (isinstance(key, Atom) and key.name == name) or key == name:
            value = given
            break
    return (A_INVALID_OPTION, Atom(name), value), f"hello option {name}: {problem['msg']}"
