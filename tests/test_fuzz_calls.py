"""Whatever a client sends, the store answers with a term and stays intact.

Hypothesis drives sequences of calls — known names with plausible and arbitrary arguments,
unknown names, wrong arities — through `calls.dispatch`, and checks after every call that:

* dispatch returned (it never raises) and never had to report an internal error;
* the result and the telemetry events can be encoded for the wire;
* a call answered `{:error, _}` changed nothing: the sessions (their revision, variables,
  programs, metadata) and the global programs are as they were before it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import terms as any_terms

from sidecar import calls, codec
from sidecar.clock import FakeClock
from sidecar.config import StoreConfig
from sidecar.store import SessionStore
from sidecar.terms import Atom

A = Atom
ERROR = A("error")
INTERNAL_ERROR = A("internal_error")

session_ids = st.sampled_from(["s1", "s1", "s1", "s2", "", A("s1")])
names = st.sampled_from([A("temp"), "temp", "count", A("v"), "var_temp_1", ""])
type_terms = st.sampled_from([A("float"), A("integer"), A("string"), A("boolean"), A("choice"),
                              A("module"), A("embedding"), A("tensor"), "float", A("nope")])  # fmt: skip
values = st.one_of(
    st.sampled_from([0.5, 1, 2.0, -3, True, None, "x", A("infinity"), "NaN", [1.0, 2], [],
                     {"shape": [2], "data": [1, 2]}]),  # fmt: skip
    any_terms,
)
options = st.one_of(
    st.sampled_from([[], {}, [(A("atomic"), True)], [(A("ttl"), 5)], [(A("ttl"), -1)],
                     [(A("constraints"), {A("min"): 0, A("max"): 1})], {A("metadata"): {"k": 1}}]),  # fmt: skip
    any_terms,
)
# what each argument position usually holds in the contract's calls (session id, then a name
# or program id, then a type or a value, ...), with any term at all now and then
POSITIONS = [
    session_ids,
    st.one_of(names, st.lists(names, max_size=3), st.dictionaries(names, values, max_size=3)),
    st.one_of(type_terms, values),
    st.one_of(values, options),
    options,
    options,
]
KNOWN = sorted(calls.CALLS, key=str)


@st.composite
def a_call(draw: Any) -> tuple[Any, list]:
    """A known function with one of its arities (mostly) and plausible arguments (mostly)."""
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from([A("nope"), A(""), None]))
        arity = draw(st.integers(0, 4))
    else:
        name = draw(st.sampled_from(KNOWN))
        arities = calls.CALLS[name].arities
        arity = draw(st.one_of(st.sampled_from(arities), st.integers(0, 6))) if draw(st.booleans()) else draw(st.sampled_from(arities))
    args = [draw(st.one_of(POSITIONS[min(i, 5)], POSITIONS[min(i, 5)], POSITIONS[min(i, 5)], any_terms)) for i in range(arity)]
    return name, args


call_sequences = st.lists(a_call(), min_size=1, max_size=12)


def snapshot(store: SessionStore, program_ids: list) -> bytes:
    """Everything a rejected call must leave as it was, as comparable bytes."""
    backend = store.backend
    sessions = []
    for session_id in backend.session_ids():
        session = backend.get_session(session_id)
        variables = [
            (v.id, v.name, v.type, v.value, v.constraints, v.metadata, v.version, v.optimization_status)
            for v in session.variables.values()
        ]
        sessions.append((session_id, session.revision, variables, session.programs, session.metadata,
                         session.ttl, session.last_worker_id))  # fmt: skip
    programs = [(pid, backend.get_global_program(pid)) for pid in program_ids]
    return codec.encode((sessions, programs))


def _program_ids(sequence: list[tuple[Any, list]]) -> list:
    """"g1" and every first argument the sequence gives a global-program call."""
    ids = ["g1"]
    for name, args in sequence:
        if args and isinstance(name, Atom) and name.name.endswith("global_program") and args[0] not in ids:
            try:
                hash(args[0])
            except TypeError:
                continue
            ids.append(args[0])
    return ids


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_sequences)
def test_any_call_sequence_gets_answers_and_errors_change_nothing(sequence: list[tuple[Any, list]]) -> None:
    store = SessionStore(StoreConfig(), FakeClock(-1000))
    store.create_session("s1", {})
    store.register_variable("s1", A("temp"), A("float"), 0.5, {A("constraints"): {A("min"): 0.0, A("max"): 1.0}})
    store.store_global_program("g1", {A("a"): 1})
    program_ids = _program_ids(sequence)
    for name, args in sequence:
        before = snapshot(store, program_ids)
        result, events = calls.dispatch(store, name, list(args))
        codec.encode(result)
        codec.encode(list(events))
        failed = type(result) is tuple and len(result) == 2 and result[0] is ERROR
        if failed:
            assert not (type(result[1]) is tuple and result[1][:1] == (INTERNAL_ERROR,)), (name, args, result)
            assert snapshot(store, program_ids) == before, (name, args, result)
