"""The harness's expansion of compact variables (`SnakepitSidecar.Protocol.expand_variables/2`),
written again in Python from its Elixir source and independently of `sidecar.store.structs`: tests use
it to read compact replies as the harness's callers see them, so a field order that both sides of
this repository got wrong in the same way would still fail (the ExUnit suite checks the real one).
"""

from __future__ import annotations

from typing import Any

from sidecar.terms import Atom as A

STRUCT = A("__struct__")
OK = A("ok")
ELIXIR_FIELDS = (
    "id name type value constraints metadata version created_at last_updated_at optimization_status access_rules"
).split()
ELIXIR_DEFAULT_STATUS = {A("optimizing"): False, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None}


def harness_expand(term: Any) -> Any:
    """`expand_variable/1` of protocol.ex: a 12-tuple led by an atom becomes the struct."""
    if type(term) is tuple and len(term) == 12 and isinstance(term[0], A):
        struct = {STRUCT: term[0]}
        for name, value in zip(ELIXIR_FIELDS, term[1:]):
            struct[A(name)] = value
        if struct[A("optimization_status")] is None:
            struct[A("optimization_status")] = dict(ELIXIR_DEFAULT_STATUS)
        return struct
    return term


def harness_expand_result(function: str, result: Any) -> Any:
    """`expand_variables/2` of protocol.ex."""
    if type(result) is not tuple or len(result) != 2 or result[0] is not OK:
        return result
    value = result[1]
    if function == "get_variable":
        return (OK, harness_expand(value))
    if function == "list_variables" and isinstance(value, list):
        return (OK, [harness_expand(v) for v in value])
    if function == "get_variables" and isinstance(value, dict) and isinstance(value.get(A("found")), dict):
        return (OK, {**value, A("found"): {k: harness_expand(v) for k, v in value[A("found")].items()}})
    return result
