"""The call table: function names, accepted arities, argument checks and defaults.

`dispatch(store, name, args)` turns one `{:call, id, function, args}` into a store method call
and returns `(result_term, events)`. It never raises for anything a client can send:

    unknown function          {:error, {:unknown_call, name}}
    wrong number of args      {:error, {:bad_arity, name, given, accepted}}
    argument of wrong type    {:error, {:bad_argument, name, position, expected}}  (1-based)
    a term that, stored, could not be read back (nested too deep for the reply carrying it)
                              {:error, {:term_too_deep, name, path, max_depth}}  (sidecar.store.nesting)
    storage failure           {:error, {:storage_error, message}}  (logged)
    a defect in the store     {:error, {:internal_error, message}}  (logged)

except `storage.base.Conflict`, which it lets through: the unit of work around the call
(`SessionStore.transact`) runs the call again.

The nesting check runs after the argument checks and before the store: a refused write
changes nothing. Which arguments are stored where is the `stored` of each `Param` below.

Argument checks only refuse what the original's function heads refused (a session function
given a non-binary id, a name that is not an atom or binary, ...). Where the contract defines
a validation error for a value (create_session("") -> :invalid_id, a bad ttl -> :invalid_ttl),
the argument passes through and the store answers the contract's error. Variable and program
calls accept any session id, as the original did: an unknown one is :session_not_found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sidecar.elixir.inspect import describe_exception
from sidecar.storage.base import Conflict, StorageError
from sidecar.store import nesting
from sidecar.store.nesting import At, MapsAt, OptionsAt, ValuesAt
from sidecar.store.structs import is_binary, is_integer
from sidecar.terms import Atom, is_identifier

log = logging.getLogger(__name__)

ERROR = Atom("error")
A_UNKNOWN_CALL = Atom("unknown_call")
A_BAD_ARITY = Atom("bad_arity")
A_BAD_ARGUMENT = Atom("bad_argument")
A_INTERNAL_ERROR = Atom("internal_error")
A_STORAGE_ERROR = Atom("storage_error")

_NO_DEFAULT = object()


class BadArgument(Exception):
    """An argument of the wrong type; `expected` names what was wanted."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


# argument checkers: return the argument in the form the store takes, or raise BadArgument ----


def any_term(term: Any) -> Any:
    return term


def binary(term: Any) -> Any:
    if not is_binary(term):
        raise BadArgument("binary")
    return term


def identifier(term: Any) -> Any:
    if not is_identifier(term):
        raise BadArgument("atom or binary")
    return term


def a_map(term: Any) -> dict:
    if not isinstance(term, dict):
        raise BadArgument("map")
    return term


def a_list(term: Any) -> list:
    if not isinstance(term, list):
        raise BadArgument("list")
    return term


def identifier_list(term: Any) -> list:
    if not isinstance(term, list) or not all(is_identifier(item) for item in term):
        raise BadArgument("list of atoms or binaries")
    return term


def identifier_keyed_map(term: Any) -> dict:
    if not isinstance(term, dict) or not all(is_identifier(key) for key in term):
        raise BadArgument("map with atom or binary keys")
    return term


def integer(term: Any) -> int:
    if not is_integer(term):
        raise BadArgument("integer")
    return term


def non_negative_integer(term: Any) -> int:
    if not is_integer(term) or term < 0:
        raise BadArgument("non-negative integer")
    return term


def options(term: Any) -> dict:
    """A keyword list (first occurrence of a key wins, as Keyword.get) or a map with atom keys."""
    if isinstance(term, dict):
        return term
    if isinstance(term, list):
        converted: dict = {}
        for item in term:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Atom)):
                raise BadArgument("keyword list or map")
            converted.setdefault(item[0], item[1])
        return converted
    raise BadArgument("keyword list or map")


# the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    check: Callable[[Any], Any]
    default: Any = _NO_DEFAULT
    stored: Optional[nesting.Stored] = None
    """Where the argument (or parts of it) is stored and read back (`sidecar.store.nesting`); None
    when nothing of it is, or when it comes back no deeper than it was sent."""


@dataclass(frozen=True)
class CallSpec:
    method: str
    params: tuple[Param, ...]
    test_only: bool = False

    @property
    def arities(self) -> list[int]:
        required = sum(1 for param in self.params if param.default is _NO_DEFAULT)
        return list(range(required, len(self.params) + 1))


def _spec(method: str, *params: Param, test_only: bool = False) -> CallSpec:
    return CallSpec(method, params, test_only)


P = Param
A = Atom
_SESSION_OPTIONS = OptionsAt(
    ((A("metadata"), nesting.SESSION_FIELD), (A("programs"), nesting.SESSION_FIELD), (A("last_worker_id"), nesting.SESSION_FIELD))
)
_VARIABLE_OPTIONS = OptionsAt(
    (
        (A("constraints"), nesting.VARIABLE_FIELD),
        (A("metadata"), nesting.VARIABLE_FIELD),
        (A("description"), nesting.VARIABLE_METADATA_VALUE),
    )
)
_UPDATE_OPTIONS = OptionsAt(((A("metadata"), nesting.VARIABLE_FIELD),))
_PROGRAM = At(nesting.SESSION_PROGRAM)
_VARIABLE_FIELD = At(nesting.VARIABLE_FIELD)
_OPTIMIZER = At(nesting.OPTIMIZATION_STATUS_VALUE)
CALLS: dict[Atom, CallSpec] = {
    Atom(name): spec
    for name, spec in {
        # sessions (create_session / store_worker_session validate their id themselves)
        "create_session": _spec("create_session", P(any_term), P(options, {}, _SESSION_OPTIONS)),
        "get_session": _spec("get_session", P(binary)),
        "delete_session": _spec("delete_session", P(binary)),
        "session_exists?": _spec("session_exists", P(binary)),
        "list_sessions": _spec("list_sessions"),
        "cleanup_expired_sessions": _spec("cleanup_expired_sessions"),
        "get_stats": _spec("get_stats"),
        "store_worker_session": _spec("store_worker_session", P(any_term), P(any_term, stored=At(nesting.SESSION_FIELD))),
        "fetch_session_for_update": _spec("fetch_session_for_update", P(binary)),
        "put_session_if": _spec("put_session_if", P(binary), P(integer), P(any_term)),
        # programs
        "store_global_program": _spec("store_global_program", P(binary), P(any_term)),
        "get_global_program": _spec("get_global_program", P(binary)),
        "delete_global_program": _spec("delete_global_program", P(binary)),
        "store_program": _spec("store_program", P(any_term), P(any_term, stored=_PROGRAM), P(any_term, stored=_PROGRAM)),
        "update_program": _spec("update_program", P(any_term), P(any_term, stored=_PROGRAM), P(any_term, stored=_PROGRAM)),
        "get_program": _spec("get_program", P(any_term), P(any_term)),
        # variables
        "register_variable": _spec(
            "register_variable",
            P(any_term),
            P(identifier),
            P(any_term, stored=At(nesting.ERROR_DETAIL)),  # echoed in {:unknown_type, type}
            P(any_term, stored=_VARIABLE_FIELD),
            P(options, {}, _VARIABLE_OPTIONS),
        ),
        "get_variable": _spec("get_variable", P(any_term), P(identifier)),
        # "the value, or default on any error": no argument can be wrong here
        "get_variable_value": _spec("get_variable_value", P(any_term), P(any_term), P(any_term, None)),
        "update_variable": _spec(
            "update_variable", P(any_term), P(identifier), P(any_term, stored=_VARIABLE_FIELD), P(a_map, {}, _VARIABLE_FIELD)
        ),
        "delete_variable": _spec("delete_variable", P(any_term), P(identifier)),
        # a boolean question: anything that is not a variable is simply not there
        "has_variable?": _spec("has_variable", P(any_term), P(any_term)),
        "list_variables": _spec("list_variables", P(any_term), P(binary, None)),
        "get_variables": _spec("get_variables", P(any_term), P(identifier_list)),
        "update_variables": _spec(
            "update_variables",
            P(any_term),
            P(identifier_keyed_map, stored=ValuesAt(nesting.VARIABLE_FIELD)),
            P(options, {}, _UPDATE_OPTIONS),
        ),
        "export_variables": _spec("export_variables", P(any_term)),
        "import_variables": _spec("import_variables", P(any_term), P(a_list, stored=MapsAt(nesting.VARIABLE_FIELD))),
        # extensions
        "start_optimization": _spec(
            "start_optimization", P(any_term), P(identifier), P(any_term, stored=_OPTIMIZER), P(any_term, stored=_OPTIMIZER)
        ),
        "end_optimization": _spec("end_optimization", P(any_term), P(identifier)),
        "ping": _spec("ping"),
        "run_cleanup": _spec("run_cleanup"),
        "touch_sessions": _spec("touch_sessions", P(a_list)),
        "__advance_clock__": _spec("advance_clock", P(non_negative_integer), test_only=True),
        "__reset__": _spec("reset", test_only=True),
    }.items()
}


def _error(reason: Any) -> tuple:
    return (ERROR, reason)


def lookup(store: Any, name: Any) -> Optional[CallSpec]:
    """The spec of a call this store serves, or None."""
    spec = CALLS.get(name) if isinstance(name, Atom) else None
    if spec is None or (spec.test_only and not store.config.enable_test_calls):
        return None
    return spec


def dispatch(store: Any, name: Any, args: Any) -> tuple[Any, Any]:
    """Run one call: `(result_term, events)`. Never raises."""
    if type(args) is list and type(name) is Atom:
        runner = _RUNNERS.get((name, len(args)))
        if runner is not None:
            return runner(store, args)
    return _dispatch_checked(store, name, args)


def _dispatch_checked(store: Any, name: Any, args: Any) -> tuple[Any, Any]:
    """The general path: every check of the table, in order (what the runners precompute)."""
    spec = lookup(store, name)
    if spec is None:
        return _error((A_UNKNOWN_CALL, name)), []
    if not isinstance(args, list):
        return _error((A_BAD_ARGUMENT, name, 0, "list of arguments")), []
    arities = spec.arities
    if len(args) not in arities:
        return _error((A_BAD_ARITY, name, len(args), arities)), []
    call_args = []
    for position, param in enumerate(spec.params, start=1):
        if position > len(args):
            call_args.append(param.default)
            continue
        try:
            call_args.append(param.check(args[position - 1]))
        except BadArgument as bad:
            return _error((A_BAD_ARGUMENT, name, position, bad.expected)), []
    for position, param in enumerate(spec.params[: len(args)], start=1):
        if param.stored is not None:
            reason = param.stored.reason(name, position, call_args[position - 1])
            if reason is not None:
                return _error(reason), []
    return _run(store, name, spec.method, call_args)


def _run(store: Any, name: Atom, method: str, call_args: list) -> tuple[Any, Any]:
    try:
        return getattr(store, method)(*call_args)
    except Conflict:
        raise
    except Exception as exc:  # the unit of work around the call undoes what it did
        return _internal_error(name, exc)


def _internal_error(name: Atom, exc: Exception) -> tuple[Any, Any]:
    """Log a failure met while running `name` (from inside its `except`) and answer it: a
    storage failure as `{:storage_error, message}`, anything else (a defect) as
    `{:internal_error, message}`."""
    if isinstance(exc, StorageError):
        log.error("call %s: storage failed: %s", name.name, exc)
        return _error((A_STORAGE_ERROR, str(exc))), []
    log.exception("call %s failed", name.name)
    return _error((A_INTERNAL_ERROR, describe_exception(exc))), []


# per-call fast path --------------------------------------------------------------------------
#
# For every (name, arity) of a call that is not test-only, a runner that does exactly what
# `_dispatch_checked` does for that arity, with the arity and the table walk resolved once:
# it checks only the arguments whose check is not `any_term`, in position order, passes the
# defaults of the missing ones, and calls the store method (looked up on the store per call, so
# a replaced method is honoured). Test-only calls depend on the store's config: general path.
#
# Each runner is written out as straight-line Python (compiled once, at import, the way
# `dataclasses` writes its methods): unpacking the argument list, one `try` per checked
# argument, one attribute call. `identifier` and `binary` checks take the exact-type answer
# for a str or an Atom first and call the check itself for anything else (same result: both
# checks return the argument unchanged or raise BadArgument). Then the nesting checks of the
# given arguments that are stored (`Param.stored`), in position order, each behind a test
# that skips it for what cannot be too deep: a scalar for an `At`, an empty map or list else.

_QUICK_TYPES: dict[Callable[[Any], Any], str] = {identifier: "type({a}) is str or type({a}) is Atom", binary: "type({a}) is str"}


def _make_runner(name: Atom, spec: CallSpec, arity: int) -> Callable[[Any, list], tuple[Any, Any]]:
    method = spec.method
    if not method.isidentifier():  # pragma: no cover - the table's own names
        raise ValueError(f"store method name {method!r}")
    namespace: dict[str, Any] = {
        "name": name,
        "BadArgument": BadArgument,
        "_error": _error,
        "_internal_error": _internal_error,
        "Conflict": Conflict,
        "A_BAD_ARGUMENT": A_BAD_ARGUMENT,
        "Atom": Atom,
        "SCALAR_TYPES": nesting.SCALAR_TYPES,
    }
    given = [f"a{position}" for position in range(1, arity + 1)]
    lines = ["def run(store, args):"]
    if given:
        lines.append(f"    {', '.join(given)}, = args")
    for position, param in enumerate(spec.params[:arity], start=1):
        check = param.check
        if check is any_term:
            continue
        variable = f"a{position}"
        namespace[f"check{position}"] = check
        quick = _QUICK_TYPES.get(check)
        indent = "    "
        if quick is not None:
            lines.append(f"    if not ({quick.format(a=variable)}):")
            indent = "        "
        lines += [
            f"{indent}try:",
            f"{indent}    {variable} = check{position}({variable})",
            f"{indent}except BadArgument as bad:",
            f"{indent}    return _error((A_BAD_ARGUMENT, name, {position}, bad.expected)), []",
        ]
    for position, param in enumerate(spec.params[:arity], start=1):
        if param.stored is None:
            continue
        variable = f"a{position}"
        namespace[f"stored{position}"] = param.stored
        worth = f"type({variable}) not in SCALAR_TYPES" if isinstance(param.stored, At) else variable
        lines += [
            f"    if {worth}:",
            f"        reason = stored{position}.reason(name, {position}, {variable})",
            "        if reason is not None:",
            "            return _error(reason), []",
        ]
    defaults = []
    for position, param in enumerate(spec.params[arity:], start=arity + 1):
        namespace[f"default{position}"] = param.default
        defaults.append(f"default{position}")
    lines += [
        "    try:",
        f"        return store.{method}({', '.join(given + defaults)})",
        "    except Conflict:",
        "        raise",
        "    except Exception as exc:  # as in `_run`",
        "        return _internal_error(name, exc)",
    ]
    exec(compile("\n".join(lines), f"<runner {name.name}/{arity}>", "exec"), namespace)  # noqa: S102
    return namespace["run"]


_RUNNERS: dict[tuple[Atom, int], Callable[[Any, list], tuple[Any, Any]]] = {
    (name, arity): _make_runner(name, spec, arity) for name, spec in CALLS.items() if not spec.test_only for arity in spec.arities
}
