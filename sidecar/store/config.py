"""The store's configuration: TTLs, cleanup interval, struct module atoms, test-call switch,
the variable form of the read calls."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from sidecar.settings import DEFAULT_CLEANUP_INTERVAL_MS, DEFAULT_GLOBAL_PROGRAM_TTL, DEFAULT_TTL, Milliseconds, Seconds
from sidecar.terms import Atom

DEFAULT_SESSION_STRUCT = Atom("Elixir.Snakepit.Bridge.Session")
DEFAULT_VARIABLE_STRUCT = Atom("Elixir.Snakepit.Bridge.Variables.Variable")


def _module_atom(value: Any) -> Atom:
    """An Elixir module atom; a str is taken as the module's name ("Foo.Bar" or "Elixir.Foo.Bar")."""
    if isinstance(value, Atom):
        return value
    if isinstance(value, str) and value:
        if value.startswith("Elixir.") or value[:1].islower():
            return Atom(value)  # already a full atom name (or an Erlang module)
        return Atom("Elixir." + value)
    raise ValueError("must be a module atom")


class StoreConfig(BaseModel):
    """Settings of one SessionStore. Immutable once built."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, strict=True)

    default_ttl: Seconds = DEFAULT_TTL
    global_program_ttl: Seconds = DEFAULT_GLOBAL_PROGRAM_TTL
    cleanup_interval_ms: Milliseconds = DEFAULT_CLEANUP_INTERVAL_MS
    session_struct: Atom = DEFAULT_SESSION_STRUCT
    variable_struct: Atom = DEFAULT_VARIABLE_STRUCT
    enable_test_calls: bool = False
    compact_variables: bool = False
    """Answer the variable-read calls with compact tuples (`structs.compact_variable`)."""

    @field_validator("session_struct", "variable_struct", mode="before")
    @classmethod
    def _as_module_atom(cls, value: Any) -> Atom:
        return _module_atom(value)
