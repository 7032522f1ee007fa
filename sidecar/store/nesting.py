"""How deep the client terms a call stores may nest, so that every reply carrying them encodes.

`codec.MAX_TERM_DEPTH` bounds a whole frame, both ways. A request's arguments sit inside two
containers (`{:call, id, f, [arg]}`), so the decoder admits arguments up to MAX - 2 levels deep.
But a stored term can come back deeper than it came in: session metadata sent as an argument
is read back inside `{:reply, id, {:ok, %Session{metadata: m}}}`, three containers down, and a
variable's value inside `{:reply, id, {:ok, %Session{variables: %{id => %Variable{value: v}}}}}`,
five down. A write whose term could not be read back is refused before the store runs, with
`{:error, {:term_too_deep, function, path, max_depth}}` (docs/protocol.md), so it changes
nothing.

The levels (containers around the stored term in the deepest reply that carries it):

    level  where                                              stored there by
    2      {:reply, id, {:ok, T}}                             (any argument, as decoded: no check)
    3      %Session{metadata: T, programs: T, last_worker_id: T}   create_session options,
                                                              store_worker_session
    3      {:reply, id, {:error, {:unknown_type, T}}}         register_variable's type
    4      %Session{programs: %{T => T}}                      store_program, update_program
    5      %Session{variables: %{id => %Variable{f: T}}}, and
           get_variables' %{found: %{name => %Variable{f: T}}}
                                                              register_variable (value,
                                                              constraints, metadata),
                                                              update_variable(s), import_variables
    6      %Variable{metadata: %{"description" => T}}         register_variable's description
    6      %Variable{optimization_status: %{optimizer_id: T}} start_optimization

Not checked because the decoder's bound is already the right one (the term comes back no
deeper than it was sent): `store_global_program`'s data (`{:ok, data}`), `put_session_if`'s
session (its parts come back at the same level in `get_session`, `get_variables` and
`update_variables`' per-variable errors, shallower elsewhere), `get_variable_value`'s default.

A flat argument (a number, binary, atom) costs one type test; only containers are walked
(`codec.term_depth`, iterative, stopping once the allowed depth is passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from sidecar import codec
from sidecar.terms import Atom

MAX = codec.MAX_TERM_DEPTH
SCALAR_TYPES = codec.SCALAR_TYPES

SESSION_FIELD = 3
ERROR_DETAIL = 3
SESSION_PROGRAM = 4
VARIABLE_FIELD = 5
VARIABLE_METADATA_VALUE = 6
OPTIMIZATION_STATUS_VALUE = 6

A_TERM_TOO_DEEP = Atom("term_too_deep")


def allowed_depth(level: int) -> int:
    """The deepest a term may nest to sit `level` containers down in a frame."""
    return MAX - level


def too_deep(term: Any, level: int) -> bool:
    """Whether `term`, put `level` containers down in a reply, would pass MAX_TERM_DEPTH."""
    if type(term) in SCALAR_TYPES:
        return False
    allowed = MAX - level
    return codec.term_depth(term, allowed) > allowed


@dataclass(frozen=True)
class At:
    """The whole argument is stored, and read back `level` containers down."""

    level: int

    def reason(self, function: Atom, position: int, arg: Any) -> Optional[tuple]:
        if too_deep(arg, self.level):
            return (A_TERM_TOO_DEEP, function, [position], allowed_depth(self.level))
        return None


@dataclass(frozen=True)
class OptionsAt:
    """An options map (keyword lists are maps by now): each listed key's value is stored at its
    level; other keys are not stored."""

    levels: tuple[tuple[Atom, int], ...]

    def reason(self, function: Atom, position: int, arg: Any) -> Optional[tuple]:
        if type(arg) is not dict:
            return None
        for key, level in self.levels:
            value = arg.get(key)
            if value is not None and too_deep(value, level):
                return (A_TERM_TOO_DEEP, function, [position, key], allowed_depth(level))
        return None


@dataclass(frozen=True)
class ValuesAt:
    """A map whose keys are identifiers (checked already) and whose values are stored at
    `level` (update_variables)."""

    level: int

    def reason(self, function: Atom, position: int, arg: Any) -> Optional[tuple]:
        if type(arg) is not dict:
            return None
        for key, value in arg.items():
            if too_deep(value, self.level):
                return (A_TERM_TOO_DEEP, function, [position, key], allowed_depth(self.level))
        return None


@dataclass(frozen=True)
class MapsAt:
    """A list of maps whose values are stored at `level` (import_variables: every value of
    every map is checked, also of keys the import ignores). The path names the map's 0-based
    index, as `{:invalid_variable, index, message}` does."""

    level: int

    def reason(self, function: Atom, position: int, arg: Any) -> Optional[tuple]:
        if type(arg) is not list:
            return None
        for index, item in enumerate(arg):
            if type(item) is dict and any(too_deep(value, self.level) for value in item.values()):
                return (A_TERM_TOO_DEEP, function, [position, index], allowed_depth(self.level))
        return None


Stored = At | OptionsAt | ValuesAt | MapsAt
