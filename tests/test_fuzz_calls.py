"""Whatever a client sends, the store answers with a term and stays intact, on every backend.

Hypothesis drives sequences of calls — known names with plausible and arbitrary arguments,
unknown names, wrong arities — through the sidecar's own call path (`Sidecar.serve_call`: the
call table, the store inside a unit of work, the reply layer, the reply's encoding; then the
chunk's flush), and checks after every call that:

* it was answered with a reply frame and never had to report an internal error;
* the telemetry events can be encoded for the wire;
* a call answered `{:error, _}` changed nothing: everything the storage holds (sessions with
  their headers, variables, index and programs, global programs, counters) is as it was.

On SQLite, the log is written into the file after the setup and after some calls (drawn), and after each sequence
the sidecar is killed (its file and log closed as a kill leaves them, nothing written into the
file first) and the file opened again: the replay must give exactly what the memory of the
sidecar that wrote it held; and again after a clean stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from backends import BACKENDS, open_backend, snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_codec import terms as any_terms

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import Sidecar
from sidecar.storage.sqlite import SqliteStorage
from sidecar.store import calls
from sidecar.terms import Atom

A = Atom
ERROR = A("error")
INTERNAL_ERROR = A("internal_error")

session_ids = st.sampled_from(["s1", "s1", "s1", "s2", "", A("s1")])
names = st.sampled_from([A("temp"), "temp", "count", A("v"), "var_temp_1", ""])
type_terms = st.sampled_from([A("float"), A("integer"), A("string"), A("boolean"), A("choice"),
                              A("module"), A("embedding"), A("tensor"), "float", A("nope")])  # fmt: skip
values = st.one_of(
    st.sampled_from(
        [0.5, 1, 2.0, -3, True, None, "x", A("infinity"), "NaN", [1.0, 2], [], {"shape": [2], "data": [1, 2]}]
    ),  # fmt: skip
    any_terms,
)
options = st.one_of(
    st.sampled_from(
        [
            [],
            {},
            [(A("atomic"), True)],
            [(A("ttl"), 5)],
            [(A("ttl"), -1)],
            [(A("constraints"), {A("min"): 0, A("max"): 1})],
            {A("metadata"): {"k": 1}},
        ]
    ),  # fmt: skip
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
        arity = (
            draw(st.one_of(st.sampled_from(arities), st.integers(0, 6)))
            if draw(st.booleans())
            else draw(st.sampled_from(arities))
        )
    args = [draw(st.one_of(POSITIONS[min(i, 5)], POSITIONS[min(i, 5)], POSITIONS[min(i, 5)], any_terms)) for i in range(arity)]
    return name, args


call_sequences = st.lists(a_call(), min_size=1, max_size=12)


def _program_ids(sequence: list[tuple[Any, list]]) -> list:
    """ "g1" and every first argument the sequence gives a global-program call."""
    ids = ["g1"]
    for name, args in sequence:
        if args and isinstance(name, Atom) and name.name.endswith("global_program") and args[0] not in ids:
            try:
                hash(args[0])
            except TypeError:
                continue
            ids.append(args[0])
    return ids


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sequence=call_sequences, applied_after=st.sets(st.integers(-1, 11), max_size=3))
# rare when drawn: a session in the file, deleted (or deleted and made again) in the log, a kill
@example(sequence=[(A("delete_session"), ["s1"])], applied_after={-1})
@example(sequence=[(A("delete_session"), ["s1"]), (A("create_session"), ["s1", {}])], applied_after={-1})
def test_any_call_sequence_gets_answers_and_errors_change_nothing(
    backend: str, tmp_path_factory: Any, sequence: list[tuple[Any, list]], applied_after: set[int]
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    storage = open_backend(backend, directory)
    sidecar = Sidecar(SidecarOptions(), clock_factory=lambda *_start: FakeClock(-1000), storage=storage)
    ids = iter(range(1, 1000))

    def serve(name: Any, args: list) -> Any:
        call_id = next(ids)
        events, frame = sidecar.serve_call(call_id, name, args)
        sidecar.store.flush()
        codec.encode(list(events))
        tag, replied_id, result = codec.decode(frame[4:])
        assert tag is A("reply") and replied_id == call_id
        return result

    serve(A("create_session"), ["s1", {}])
    serve(A("register_variable"), ["s1", A("temp"), A("float"), 0.5, {A("constraints"): {A("min"): 0.0, A("max"): 1.0}}])
    serve(A("store_global_program"), ["g1", {A("a"): 1}])
    program_ids = _program_ids(sequence)
    if -1 in applied_after and isinstance(storage, SqliteStorage):
        storage._apply()  # the setup in the file, the sequence in the log
    try:
        for at, (name, args) in enumerate(sequence):
            before = snapshot(storage, program_ids)
            result = serve(name, list(args)) if isinstance(name, Atom) else calls.dispatch(sidecar.store, name, list(args))[0]
            failed = type(result) is tuple and len(result) == 2 and result[0] is ERROR
            if failed:
                assert not (type(result[1]) is tuple and result[1][:1] == (INTERNAL_ERROR,)), (name, args, result)
                assert snapshot(storage, program_ids) == before, (name, args, result)
            if at in applied_after and isinstance(storage, SqliteStorage):
                storage._apply()
        if isinstance(storage, SqliteStorage):
            held = snapshot(storage, program_ids)
            storage._db.close()  # killed: the log's records are replayed by the next open
            storage._log.close(remove=False)
            storage = SqliteStorage(storage.path)
            assert snapshot(storage, program_ids) == held
            storage.close()
            storage = SqliteStorage(storage.path)
            assert snapshot(storage, program_ids) == held
    finally:
        storage.close()
