"""Records as Elixir struct terms and back, the render cache, shared defaults, the memory backend."""

from __future__ import annotations

import pytest

from sidecar import codec
from sidecar.clock import FakeClock
from sidecar.config import DEFAULT_SESSION_STRUCT, DEFAULT_VARIABLE_STRUCT, StoreConfig
from sidecar.storage.base import EMPTY_MAP, NOT_OPTIMIZING, SessionRecord, VariableRecord
from sidecar.storage.memory import MemoryBackend
from sidecar.store import SessionStore
from sidecar.structs import InvalidSession, parse_session, render_session, render_variable
from sidecar.terms import Atom as A
from sidecar.terms import term_equal

S, V = DEFAULT_SESSION_STRUCT, DEFAULT_VARIABLE_STRUCT


def _store() -> SessionStore:
    store = SessionStore(StoreConfig(), FakeClock(7))
    store.create_session("s1", {A("metadata"): {"m": 1}})
    store.register_variable("s1", A("t"), A("float"), 0.5, {A("constraints"): {A("max"): 1.0}})
    store.register_variable("s1", "n", A("integer"), 1, {})
    return store


def wire(term):
    """The term as the BEAM receives it (cached encodings inside become terms again)."""
    return codec.decode(codec.encode(term))


def test_session_render_parse_round_trip():
    store = _store()
    session = store.backend.get_session("s1")
    term = wire(render_session(session, S, V))
    parsed = parse_session(term, S, V)
    assert term_equal(wire(render_session(parsed, S, V)), term)
    assert parsed.variables["var_t_1"].name is A("t")


def test_struct_modules_come_from_config():
    store = SessionStore(StoreConfig(session_struct="My.Session", variable_struct=A("Elixir.My.Var")), FakeClock())
    store.create_session("s1", {})
    store.register_variable("s1", "x", A("integer"), 1, {})
    (_, session), _ = store.get_session("s1")
    session = wire(session)
    assert session[A("__struct__")] is A("Elixir.My.Session")
    assert session[A("variables")]["var_x_1"][A("__struct__")] is A("Elixir.My.Var")


def test_render_is_cached_until_the_variable_changes():
    store = _store()
    (_, first), _ = store.get_variable("s1", "t")
    (_, again), _ = store.get_variable("s1", "t")
    assert again is first
    store.update_variable("s1", "t", 0.75, {})
    (_, updated), _ = store.get_variable("s1", "t")
    assert updated is not first
    assert wire(updated)[A("value")] == 0.75 and wire(first)[A("value")] == 0.5
    store.start_optimization("s1", "t", "o", None)
    (_, locked), _ = store.get_variable("s1", "t")
    assert wire(locked)[A("optimization_status")][A("optimizing")] is True


def test_defaults_are_shared_and_never_mutated():
    store = _store()
    session = store.backend.get_session("s1")
    n = session.variables["var_n_2"]
    assert n.constraints is EMPTY_MAP and n.optimization_status is NOT_OPTIMIZING
    default_metadata = n.metadata
    store.update_variable("s1", "n", 2, {"x": 1})
    assert default_metadata == {"source": "elixir", "created_by": "session_store"}
    assert NOT_OPTIMIZING[A("optimizing")] is False and EMPTY_MAP == {}


def test_records_use_slots():
    assert not hasattr(VariableRecord("i", "n", A("float"), 1.0), "__dict__")
    assert not hasattr(SessionRecord("s", 0, 0, 1), "__dict__")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({A("variables"): []}, "invalid_variables"),
        ({A("variables"): {"var_x": {A("id"): "var_x"}}}, "invalid_variables"),
        ({A("variable_index"): None}, "invalid_variable_index"),
        ({A("stats"): {A("variable_count"): 1}}, "invalid_stats"),
        ({A("__struct__"): V}, "not_a_session"),
    ],
)
def test_parse_session_checks_beyond_session_validate(change, reason):
    store = _store()
    term = {**render_session(store.backend.get_session("s1"), S, V), **change}
    with pytest.raises(InvalidSession) as raised:
        parse_session(term, S, V)
    assert raised.value.reason is A(reason)


def test_variable_map_key_must_match_its_id():
    store = _store()
    term = render_session(store.backend.get_session("s1"), S, V)
    var = term[A("variables")]["var_t_1"]
    term[A("variables")] = {"other_key": var}
    with pytest.raises(InvalidSession):
        parse_session(term, S, V)


def test_memory_backend_operations():
    backend = MemoryBackend()
    session = SessionRecord("s", 0, 0, 10)
    stored, inserted = backend.insert_session_if_absent(session)
    assert inserted and stored is session
    stored, inserted = backend.insert_session_if_absent(SessionRecord("s", 5, 5, 10))
    assert not inserted and stored is session
    var = VariableRecord("var_a_1", "a", A("integer"), 1)
    assert backend.put_variable(session, var, "a") is True
    assert backend.put_variable(session, var, "a") is False
    assert backend.get_variable(session, "var_a_1") is var and backend.indexed_variable_id(session, "a") == "var_a_1"
    backend.delete_variable(session, var, None)
    assert backend.get_variable(session, "var_a_1") is None and backend.indexed_variable_id(session, "a") == "var_a_1"
    assert backend.expired_session_ids(10) == [] and backend.expired_session_ids(11) == ["s"]
    backend.put_global_program("g", 1, 100)
    assert backend.delete_global_programs_stored_before(100) == 0
    assert backend.delete_global_programs_stored_before(101) == 1
    assert backend.delete_session("s") and not backend.delete_session("s")
