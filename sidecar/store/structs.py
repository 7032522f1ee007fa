"""Records as Elixir terms (struct maps with `__struct__`, export maps), and terms parsed back.

This is the boundary between storage records and what Elixir sees, times included: records
hold storage time, Elixir sees its own monotonic seconds, so every function takes the
clock's `to_beam` (rendering) or `from_beam` (parsing); both default to no translation.
Rendered terms share the record's immutable maps: treat every rendered term as read-only.
Caching the encoded forms is `sidecar.store.replies`' job.

A variable also has a compact form, the one the variable-read calls answer with when the
harness asked for it (`:compact_variables` in `:hello`, docs/protocol.md): the struct's values in
a tuple led by the struct module, the default optimization status as `nil`. The harness turns it
back into the struct; decoding it costs the BEAM about a quarter of decoding the struct (the
struct's 16 key atoms are what cost).

Parsing is the boundary for terms coming back from Elixir: `parse_session` (put_session_if,
validated like the original's `Session.validate`) and `parse_imported_variable`
(import_variables, validated with pydantic before anything is imported).
"""

from __future__ import annotations

import operator
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from sidecar.elixir.format import to_string_term
from sidecar.elixir.inspect import inspect
from sidecar.storage.base import (
    EMPTY_LIST,
    EMPTY_MAP,
    NOT_OPTIMIZING,
    SessionContents,
    SessionRecord,
    VariableRecord,
    is_default_status,
)
from sidecar.storage.base import VARIABLE_FIELDS as FIELD_NAMES
from sidecar.store import types
from sidecar.terms import Atom, hashable_key

A_STRUCT = Atom("__struct__")
A_ID = Atom("id")
A_NAME = Atom("name")
A_TYPE = Atom("type")
A_VALUE = Atom("value")
A_CONSTRAINTS = Atom("constraints")
A_METADATA = Atom("metadata")
A_VERSION = Atom("version")
A_CREATED_AT = Atom("created_at")
A_LAST_UPDATED_AT = Atom("last_updated_at")
A_OPTIMIZATION_STATUS = Atom("optimization_status")
A_ACCESS_RULES = Atom("access_rules")
A_LAST_ACCESSED = Atom("last_accessed")
A_LAST_WORKER_ID = Atom("last_worker_id")
A_TTL = Atom("ttl")
A_PROGRAMS = Atom("programs")
A_VARIABLES = Atom("variables")
A_VARIABLE_INDEX = Atom("variable_index")
A_STATS = Atom("stats")
A_VARIABLE_COUNT = Atom("variable_count")
A_PROGRAM_COUNT = Atom("program_count")
A_TOTAL_VARIABLE_UPDATES = Atom("total_variable_updates")
A_STARTED_AT = Atom("started_at")


if TYPE_CHECKING:
    from typing_extensions import TypeIs


def _same(term: Any) -> Any:
    return term


TimeMap = Callable[[Any], Any]
"""A clock's `to_beam` or `from_beam` (an integer time translated, anything else unchanged)."""


def is_integer(term: Any) -> TypeIs[int]:
    """An Elixir integer (Python bools are ints, Elixir booleans are not)."""
    return isinstance(term, int) and not isinstance(term, bool)


def is_binary(term: Any) -> bool:
    return isinstance(term, (str, bytes))


def name_key(name: Any) -> Optional[Any]:
    """The string form names are compared by (`to_string/1`); None for a non-identifier.

    A non-UTF-8 binary keeps its bytes (it cannot become a str without corrupting it)."""
    if isinstance(name, str):
        return name
    if isinstance(name, Atom):
        return name.name
    if isinstance(name, bytes):
        return name
    if name is None or isinstance(name, bool):
        return to_string_term(name)
    return None


def intern_name(name: Any) -> Any:
    """Share repeated name strings between sessions (10,000 sessions often use the same names)."""
    return sys.intern(name) if type(name) is str else name


# rendering --------------------------------------------------------------------------------


def _status(status: Any, to_beam: TimeMap) -> Any:
    """An optimization status with its `started_at` on the BEAM's clock."""
    if status is NOT_OPTIMIZING or type(status) is not dict or type(status.get(A_STARTED_AT)) is not int:
        return status
    return {**status, A_STARTED_AT: to_beam(status[A_STARTED_AT])}


VARIABLE_FIELDS = tuple(Atom(name) for name in FIELD_NAMES)
"""The variable struct's field atoms, in the order of the compact tuple (after the module)."""

_struct_values = operator.attrgetter(*FIELD_NAMES)
_CREATED_AT, _LAST_UPDATED_AT, _STATUS = (
    FIELD_NAMES.index(name) for name in ("created_at", "last_updated_at", "optimization_status")
)


def _presented(variable: VariableRecord, to_beam: TimeMap) -> list:
    """The struct's values in `VARIABLE_FIELDS` order, its times on the BEAM's clock."""
    values = list(_struct_values(variable))
    values[_CREATED_AT] = to_beam(values[_CREATED_AT])
    values[_LAST_UPDATED_AT] = to_beam(values[_LAST_UPDATED_AT])
    values[_STATUS] = _status(values[_STATUS], to_beam)
    return values


def compact_variable(variable: VariableRecord, variable_struct: Atom, to_beam: TimeMap = _same) -> tuple:
    """`{module, id, name, type, value, constraints, metadata, version, created_at,
    last_updated_at, optimization_status, access_rules}`: the struct's fields in their
    declaration order, led by its module; an optimization status equal to the default one is
    `nil` (a status is always a map, so `nil` is unambiguous)."""
    values = _presented(variable, to_beam)
    status = variable.optimization_status
    if status is NOT_OPTIMIZING or is_default_status(status):
        values[_STATUS] = None
    return (variable_struct, *values)


def expand_compact_variable(term: Any) -> Optional[dict]:
    """The struct a compact variable tuple stands for (as the harness's
    `Protocol.expand_variables/2` builds it); None when `term` does not have the compact shape
    (a 12-tuple led by an Elixir module atom)."""
    if type(term) is not tuple or len(term) != 1 + len(VARIABLE_FIELDS):
        return None
    module = term[0]
    if type(module) is not Atom or not module.name.startswith("Elixir."):
        return None
    struct = {A_STRUCT: module, **dict(zip(VARIABLE_FIELDS, term[1:]))}
    if struct[A_OPTIMIZATION_STATUS] is None:
        struct[A_OPTIMIZATION_STATUS] = NOT_OPTIMIZING
    return struct


def render_variable(variable: VariableRecord, variable_struct: Atom, to_beam: TimeMap = _same) -> dict:
    """The variable's struct term (a fresh map sharing the record's immutable maps)."""
    return {A_STRUCT: variable_struct, **dict(zip(VARIABLE_FIELDS, _presented(variable, to_beam)))}


def render_session(
    contents: SessionContents,
    session_struct: Atom,
    variable_struct: Atom,
    to_beam: TimeMap = _same,
    variable_term: Optional[Callable[[VariableRecord], Any]] = None,
) -> dict:
    """The session's struct term. `variable_term` renders each variable (default:
    `render_variable`; the reply layer passes its cache)."""
    header = contents.header
    if variable_term is None:

        def variable_term(variable: VariableRecord) -> Any:
            return render_variable(variable, variable_struct, to_beam)

    programs: dict = {}
    for program_id, data in contents.programs:
        key = hashable_key(program_id)
        programs[key if key not in programs else _distinct_key(key)] = data
    return {
        A_STRUCT: session_struct,
        A_ID: header.id,
        A_CREATED_AT: to_beam(header.created_at),
        A_LAST_ACCESSED: to_beam(header.last_accessed),
        A_LAST_WORKER_ID: header.last_worker_id,
        A_TTL: header.ttl,
        A_PROGRAMS: programs,
        A_VARIABLES: {var.id: variable_term(var) for var in contents.variables},
        A_VARIABLE_INDEX: dict(contents.index),
        A_METADATA: header.metadata,
        A_STATS: {
            A_VARIABLE_COUNT: header.variable_count,
            A_PROGRAM_COUNT: header.program_count,
            A_TOTAL_VARIABLE_UPDATES: header.total_variable_updates,
        },
    }


def _distinct_key(key: Any) -> Any:
    """A program id Python takes for an earlier one (1 and 1.0) kept apart in the map."""
    from sidecar.terms import StrictKey

    return StrictKey(key)


def export_variable(variable: VariableRecord, to_beam: TimeMap = _same) -> dict:
    """`Variable.to_export_map/1`: atom keys, the name as a string."""
    key = name_key(variable.name)
    return {
        A_ID: variable.id,
        A_NAME: key if key is not None else variable.name,
        A_TYPE: variable.type,
        A_VALUE: variable.value,
        A_CONSTRAINTS: variable.constraints,
        A_METADATA: variable.metadata,
        A_VERSION: variable.version,
        A_CREATED_AT: to_beam(variable.created_at),
        A_LAST_UPDATED_AT: to_beam(variable.last_updated_at),
    }


# parsing sessions (put_session_if) --------------------------------------------------------


class InvalidSession(Exception):
    """A session term that fails validation; `reason` is the contract's reason atom."""

    def __init__(self, reason: Atom) -> None:
        super().__init__(reason.name)
        self.reason = reason


def _shared_if_empty(term: dict) -> dict:
    return EMPTY_MAP if not term else term


def _parsed_status(status: dict, from_beam: TimeMap) -> dict:
    """A status from Elixir: the shared default when it is exactly that (memory), else with its
    `started_at` in storage time."""
    if is_default_status(status):
        return NOT_OPTIMIZING
    if type(status.get(A_STARTED_AT)) is int:
        return {**status, A_STARTED_AT: from_beam(status[A_STARTED_AT])}
    return status


def parse_variable_struct(vid: Any, term: Any, variable_struct: Atom, from_beam: TimeMap = _same) -> VariableRecord:
    """A variable struct (a value of a session's `variables`) back into a record."""
    invalid = InvalidSession(Atom("invalid_variables"))
    if not isinstance(term, dict) or term.get(A_STRUCT) is not variable_struct:
        raise invalid
    var_id = term.get(A_ID)
    # the map key and the struct's id must agree: the store keys variables by their id
    if not isinstance(var_id, str) or not var_id or var_id != vid:
        raise invalid
    for required in (A_NAME, A_TYPE, A_VALUE):
        if required not in term:
            raise invalid
    name = term[A_NAME]
    if name_key(name) is None:
        raise invalid
    constraints = term.get(A_CONSTRAINTS, EMPTY_MAP)
    metadata = term.get(A_METADATA, EMPTY_MAP)
    status = term.get(A_OPTIMIZATION_STATUS, NOT_OPTIMIZING)
    access_rules = term.get(A_ACCESS_RULES, EMPTY_LIST)
    version = term.get(A_VERSION, 0)
    if not (
        isinstance(constraints, dict)
        and isinstance(metadata, dict)
        and isinstance(status, dict)
        and isinstance(access_rules, list)
        and is_integer(version)
    ):
        raise invalid
    return VariableRecord(
        var_id,
        intern_name(name),
        term[A_TYPE],
        term[A_VALUE],
        _shared_if_empty(constraints),
        _shared_if_empty(metadata),
        version,
        from_beam(term.get(A_CREATED_AT)),
        from_beam(term.get(A_LAST_UPDATED_AT)),
        _parsed_status(status, from_beam),
        access_rules if access_rules else EMPTY_LIST,
    )


def _parse_stats(stats: Any) -> tuple[int, int, int]:
    keys = (A_VARIABLE_COUNT, A_PROGRAM_COUNT, A_TOTAL_VARIABLE_UPDATES)
    if not isinstance(stats, dict) or not all(is_integer(stats.get(key)) for key in keys):
        raise InvalidSession(Atom("invalid_stats"))
    return stats[A_VARIABLE_COUNT], stats[A_PROGRAM_COUNT], stats[A_TOTAL_VARIABLE_UPDATES]


def parse_session(term: Any, session_struct: Atom, variable_struct: Atom, from_beam: TimeMap = _same) -> SessionContents:
    """A session struct from Elixir, validated in `Session.validate/1`'s order, as new records.

    Beyond the original's checks (it could not get these wrong in-process), `variables` must map
    ids to variable structs, `variable_index` must be a map and `stats` must hold the three
    integer counters; extra keys in `stats` are dropped."""
    if not isinstance(term, dict) or term.get(A_STRUCT) is not session_struct:
        raise InvalidSession(Atom("not_a_session"))
    get = term.get
    session_id = get(A_ID)
    if not is_binary(session_id) or not session_id:
        raise InvalidSession(Atom("invalid_id"))
    programs = get(A_PROGRAMS)
    if not isinstance(programs, dict):
        raise InvalidSession(Atom("invalid_programs"))
    metadata = get(A_METADATA)
    if not isinstance(metadata, dict):
        raise InvalidSession(Atom("invalid_metadata"))
    created_at = get(A_CREATED_AT)
    if not is_integer(created_at):
        raise InvalidSession(Atom("invalid_created_at"))
    last_accessed = get(A_LAST_ACCESSED)
    if not is_integer(last_accessed):
        raise InvalidSession(Atom("invalid_last_accessed"))
    last_worker_id = get(A_LAST_WORKER_ID)
    if not (last_worker_id is None or is_binary(last_worker_id)):
        raise InvalidSession(Atom("invalid_last_worker_id"))
    ttl = get(A_TTL)
    # the contract: a negative or non-integer ttl is invalid (0 is allowed, as in create_session)
    if not is_integer(ttl) or ttl < 0:
        raise InvalidSession(Atom("invalid_ttl"))
    if last_accessed < created_at:
        raise InvalidSession(Atom("invalid_timestamps"))
    variables_term = get(A_VARIABLES)
    if not isinstance(variables_term, dict):
        raise InvalidSession(Atom("invalid_variables"))
    variable_index = get(A_VARIABLE_INDEX)
    if not isinstance(variable_index, dict):
        raise InvalidSession(Atom("invalid_variable_index"))
    variable_count, program_count, total_updates = _parse_stats(get(A_STATS))
    variables = [parse_variable_struct(vid, var, variable_struct, from_beam) for vid, var in variables_term.items()]
    header = SessionRecord(
        session_id,
        from_beam(created_at),
        from_beam(last_accessed),
        ttl,
        last_worker_id=last_worker_id,
        metadata=metadata,
        variable_count=variable_count,
        program_count=program_count,
        total_variable_updates=total_updates,
    )
    index = {intern_name(key): vid for key, vid in variable_index.items()}
    return SessionContents(header, variables, index, list(programs.items()))


# parsing imported variables (import_variables) --------------------------------------------

IMPORT_FIELDS = FIELD_NAMES
"""An import map may hold any field of the struct (as `Variable.new/1` takes the map whole)."""


class ImportedVariable(BaseModel):
    """One map of import_variables, as export_variables produces them."""

    model_config = ConfigDict(arbitrary_types_allowed=True, strict=True, extra="ignore")

    id: str
    name: Any
    type: Any
    value: Any
    constraints: dict = {}
    metadata: dict = {}
    version: int = 0
    created_at: int
    last_updated_at: Optional[int] = None
    optimization_status: Optional[dict] = None
    access_rules: list = []

    @field_validator("id")
    @classmethod
    def _non_empty_id(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a non-empty binary")
        return value

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: Any) -> Any:
        key = name_key(value)
        if not isinstance(key, str) or not key:
            raise ValueError("must be a non-empty atom or binary")
        return value

    @field_validator("version")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be a non-negative integer")
        return value


class InvalidImport(Exception):
    """An import map that cannot become a variable; `message` is a binary for humans."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _import_fields(term: dict) -> dict:
    """The known fields of an import map. Atom keys as exported; string keys (a map that went
    through JSON) are accepted too, the atom key winning when both are present."""
    fields = {}
    for field in IMPORT_FIELDS:
        atom_key = Atom(field)
        if atom_key in term:
            fields[field] = term[atom_key]
        elif field in term:
            fields[field] = term[field]
    return fields


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"]) or "map"
    return f"{where}: {detail['msg']}"


def parse_imported_variable(term: Any, from_beam: TimeMap = _same) -> VariableRecord:
    """Validate one import map (shape with pydantic, then type, value and constraints with the
    type rules) and build its record, its times in storage time. Raises InvalidImport."""
    if not isinstance(term, dict):
        raise InvalidImport("must be a map")
    try:
        model = ImportedVariable.model_validate(_import_fields(term))
    except ValidationError as error:
        raise InvalidImport(_first_error(error)) from None
    try:
        type_atom = types.resolve_type(model.type)
        value = types.coerce(type_atom, model.value)
        types.check_constraints(type_atom, value, model.constraints)
    except types.UnknownType:
        raise InvalidImport(f"type: unknown type {inspect(model.type)}") from None
    except types.ValueRejected as rejected:
        raise InvalidImport(f"value: {rejected.message}") from None
    last_updated_at = model.created_at if model.last_updated_at is None else model.last_updated_at
    # as the original's Variable.new/1 (struct!/2 of the map): an optimization status in the map
    # is kept, so a variable exported (as its struct's map) while locked is still locked
    status = NOT_OPTIMIZING if model.optimization_status is None else _parsed_status(model.optimization_status, from_beam)
    return VariableRecord(
        model.id,
        intern_name(model.name),
        type_atom,
        value,
        _shared_if_empty(model.constraints),
        _shared_if_empty(model.metadata),
        model.version,
        from_beam(model.created_at),
        from_beam(last_updated_at),
        status,
        model.access_rules if model.access_rules else EMPTY_LIST,
    )
