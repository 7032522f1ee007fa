"""Sessions and variables as Elixir struct terms (maps with `__struct__`), and parsed back.

Rendering is per-variable work only, and cached: a variable's struct is encoded once and the
bytes are kept (as a `terms.Encoded`) in its record's `rendered` slot until the record changes
(records clear it on every mutation). Rendered terms share the record's immutable maps: treat
every rendered term as read-only.

A variable also has a compact form, the one the variable-read calls answer with when the
harness asked for it (`:compact_variables` in `:hello`, docs/protocol.md): the struct's values in
a tuple led by the struct module, the default optimization status as `nil`. The harness turns it
back into the struct; decoding it costs the BEAM about a quarter of decoding the struct (the
struct's 16 key atoms are what cost). It is cached the same way, in the `compact` slot.

Parsing is the boundary for terms coming back from Elixir: `parse_session` (put_session_if,
validated like the original's `Session.validate`) and `parse_imported_variable`
(import_variables, validated with pydantic before anything is imported).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from . import types
from .elixir_inspect import inspect
from .storage.base import EMPTY_LIST, EMPTY_MAP, NOT_OPTIMIZING, SessionRecord, VariableRecord
from .codec import encode_body
from .terms import Atom, Encoded, to_string

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


def is_integer(term: Any) -> bool:
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
        return to_string(name)
    return None


def intern_name(name: Any) -> Any:
    """Share repeated name strings between sessions (10,000 sessions often use the same names)."""
    return sys.intern(name) if type(name) is str else name


# rendering --------------------------------------------------------------------------------


def encoded_variable(variable: VariableRecord, variable_struct: Atom) -> Encoded:
    """The variable's struct term, encoded once and cached on the record until it changes.

    A read of an unchanged variable then costs a lookup instead of an encoding of the struct
    (about 6 us of the 13 us of Python a get_variable costs, docs/benchmarks.md).
    """
    cached = variable.rendered
    if cached is None:
        cached = variable.rendered = Encoded(encode_body(render_variable(variable, variable_struct)))
    return cached


def encoded_compact_variable(variable: VariableRecord, variable_struct: Atom) -> Encoded:
    """`compact_variable`'s tuple, encoded once and cached on the record until it changes."""
    cached = variable.compact
    if cached is None:
        cached = variable.compact = Encoded(encode_body(compact_variable(variable, variable_struct)))
    return cached


def compact_variable(variable: VariableRecord, variable_struct: Atom) -> tuple:
    """`{module, id, name, type, value, constraints, metadata, version, created_at,
    last_updated_at, optimization_status, access_rules}`: the struct's fields in their
    declaration order, led by its module; an optimization status equal to the default one is
    `nil` (a status is always a map, so `nil` is unambiguous)."""
    status = variable.optimization_status
    if status is NOT_OPTIMIZING or _is_default_status(status):
        status = None
    return (
        variable_struct,
        variable.id,
        variable.name,
        variable.type,
        variable.value,
        variable.constraints,
        variable.metadata,
        variable.version,
        variable.created_at,
        variable.last_updated_at,
        status,
        variable.access_rules,
    )


VARIABLE_FIELDS = (
    A_ID,
    A_NAME,
    A_TYPE,
    A_VALUE,
    A_CONSTRAINTS,
    A_METADATA,
    A_VERSION,
    A_CREATED_AT,
    A_LAST_UPDATED_AT,
    A_OPTIMIZATION_STATUS,
    A_ACCESS_RULES,
)
"""The variable struct's fields, in the order of the compact tuple (after the module)."""


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


def _is_default_status(status: Any) -> bool:
    """Exactly the default status: the same four atom keys, each value the same object (`==`
    would take `optimizing: 0` or `0.0` for `false`, and the harness would give back `false`)."""
    if type(status) is not dict or len(status) != len(NOT_OPTIMIZING):
        return False
    for key, value in NOT_OPTIMIZING.items():
        if status.get(key, _ABSENT) is not value:
            return False
    return True


_ABSENT = object()


def render_variable(variable: VariableRecord, variable_struct: Atom) -> dict:
    """The variable's struct term (a fresh map sharing the record's immutable maps)."""
    return {
        A_STRUCT: variable_struct,
        A_ID: variable.id,
        A_NAME: variable.name,
        A_TYPE: variable.type,
        A_VALUE: variable.value,
        A_CONSTRAINTS: variable.constraints,
        A_METADATA: variable.metadata,
        A_VERSION: variable.version,
        A_CREATED_AT: variable.created_at,
        A_LAST_UPDATED_AT: variable.last_updated_at,
        A_OPTIMIZATION_STATUS: variable.optimization_status,
        A_ACCESS_RULES: variable.access_rules,
    }


def render_session(session: SessionRecord, session_struct: Atom, variable_struct: Atom) -> dict:
    """The session's struct term. Maps the store keeps mutating are copied."""
    return {
        A_STRUCT: session_struct,
        A_ID: session.id,
        A_CREATED_AT: session.created_at,
        A_LAST_ACCESSED: session.last_accessed,
        A_LAST_WORKER_ID: session.last_worker_id,
        A_TTL: session.ttl,
        A_PROGRAMS: dict(session.programs),
        A_VARIABLES: {vid: encoded_variable(var, variable_struct) for vid, var in session.variables.items()},
        A_VARIABLE_INDEX: dict(session.variable_index),
        A_METADATA: session.metadata,
        A_STATS: {
            A_VARIABLE_COUNT: session.variable_count,
            A_PROGRAM_COUNT: session.program_count,
            A_TOTAL_VARIABLE_UPDATES: session.total_variable_updates,
        },
    }


def export_variable(variable: VariableRecord) -> dict:
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
        A_CREATED_AT: variable.created_at,
        A_LAST_UPDATED_AT: variable.last_updated_at,
    }


# parsing sessions (put_session_if) --------------------------------------------------------


class InvalidSession(Exception):
    """A session term that fails validation; `reason` is the contract's reason atom."""

    def __init__(self, reason: Atom) -> None:
        super().__init__(reason.name)
        self.reason = reason


def _shared_if_empty(term: dict) -> dict:
    return EMPTY_MAP if not term else term


def _shared_status(status: dict) -> dict:
    """Reuse the shared default optimization_status when it is exactly that (memory)."""
    return NOT_OPTIMIZING if _is_default_status(status) else status


def parse_variable_struct(vid: Any, term: Any, variable_struct: Atom) -> VariableRecord:
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
        term.get(A_CREATED_AT),
        term.get(A_LAST_UPDATED_AT),
        _shared_status(status),
        access_rules if access_rules else EMPTY_LIST,
    )


def _parse_stats(stats: Any) -> tuple[int, int, int]:
    keys = (A_VARIABLE_COUNT, A_PROGRAM_COUNT, A_TOTAL_VARIABLE_UPDATES)
    if not isinstance(stats, dict) or not all(is_integer(stats.get(key)) for key in keys):
        raise InvalidSession(Atom("invalid_stats"))
    return stats[A_VARIABLE_COUNT], stats[A_PROGRAM_COUNT], stats[A_TOTAL_VARIABLE_UPDATES]


def parse_session(term: Any, session_struct: Atom, variable_struct: Atom) -> SessionRecord:
    """A session struct from Elixir, validated in `Session.validate/1`'s order, as a new record.

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
    variables = {vid: parse_variable_struct(vid, var, variable_struct) for vid, var in variables_term.items()}
    return SessionRecord(
        session_id,
        created_at,
        last_accessed,
        ttl,
        last_worker_id=last_worker_id,
        programs=dict(programs),
        variables=variables,
        variable_index={intern_name(key): vid for key, vid in variable_index.items()},
        metadata=metadata,
        variable_count=variable_count,
        program_count=program_count,
        total_variable_updates=total_updates,
    )


# parsing imported variables (import_variables) --------------------------------------------

IMPORT_FIELDS = (
    "id",
    "name",
    "type",
    "value",
    "constraints",
    "metadata",
    "version",
    "created_at",
    "last_updated_at",
    "access_rules",
)


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


def parse_imported_variable(term: Any) -> VariableRecord:
    """Validate one import map (shape with pydantic, then type, value and constraints with the
    type rules) and build its record. Raises InvalidImport."""
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
    # imported variables start unlocked: an optimizer of another session/time holds no lock here
    return VariableRecord(
        model.id,
        intern_name(model.name),
        type_atom,
        value,
        _shared_if_empty(model.constraints),
        _shared_if_empty(model.metadata),
        model.version,
        model.created_at,
        last_updated_at,
        NOT_OPTIMIZING,
        model.access_rules if model.access_rules else EMPTY_LIST,
    )
