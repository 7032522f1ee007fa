"""Records as Elixir struct terms and back, the reply cache, shared defaults, the memory backend."""

from __future__ import annotations

import pytest

from sidecar import codec
from sidecar.clock import FakeClock
from sidecar.storage.base import EMPTY_MAP, NOT_OPTIMIZING, SessionRecord, VariableRecord
from sidecar.storage.memory import MemoryStorage
from sidecar.store.config import DEFAULT_SESSION_STRUCT, DEFAULT_VARIABLE_STRUCT, StoreConfig
from sidecar.store.replies import Replies
from sidecar.store.session_store import SessionStore
from sidecar.store.structs import InvalidSession, parse_session, render_session
from sidecar.terms import Atom as A
from sidecar.terms import term_equal

S, V = DEFAULT_SESSION_STRUCT, DEFAULT_VARIABLE_STRUCT


def _store(config: StoreConfig | None = None) -> SessionStore:
    store = SessionStore(config or StoreConfig(), FakeClock(7))
    store.call("create_session", "s1", {A("metadata"): {"m": 1}})
    store.call("register_variable", "s1", A("t"), A("float"), 0.5, {A("constraints"): {A("max"): 1.0}})
    store.call("register_variable", "s1", "n", A("integer"), 1, {})
    return store


def wire(term):
    """The term as the BEAM receives it (cached encodings inside become terms again)."""
    return codec.decode(codec.encode(term))


def contents(store: SessionStore, session_id: str = "s1"):
    (_, found, _revision), _ = store.call("fetch_session_for_update", session_id)
    return found


def test_session_render_parse_round_trip():
    store = _store()
    term = wire(render_session(contents(store), S, V))
    parsed = parse_session(term, S, V)
    assert term_equal(wire(render_session(parsed, S, V)), term)
    assert parsed.variables[0].name is A("t") and parsed.variables[0].id == "var_t_1"


def test_struct_modules_come_from_config():
    config = StoreConfig(session_struct="My.Session", variable_struct=A("Elixir.My.Var"))
    store = SessionStore(config, FakeClock())
    store.call("create_session", "s1", {})
    store.call("register_variable", "s1", "x", A("integer"), 1, {})
    replies = Replies(config, store.clock)
    session = wire(replies.render(A("get_session"), store.call("get_session", "s1")[0])[1])
    assert session[A("__struct__")] is A("Elixir.My.Session")
    assert session[A("variables")]["var_x_1"][A("__struct__")] is A("Elixir.My.Var")


def test_the_reply_cache_serves_a_record_state_until_the_variable_changes():
    store = _store()
    replies = Replies(store.config, store.clock)
    (_, record), _ = store.call("get_variable", "s1", "t")
    first = replies.struct_term(record)
    (_, again), _ = store.call("get_variable", "s1", "t")
    assert replies.struct_term(again) is first
    store.call("update_variable", "s1", "t", 0.75, {})
    (_, updated), _ = store.call("get_variable", "s1", "t")
    assert replies.struct_term(updated) is not first
    assert wire(replies.struct_term(updated))[A("value")] == 0.75 and wire(first)[A("value")] == 0.5
    store.call("start_optimization", "s1", "t", "o", None)
    (_, locked), _ = store.call("get_variable", "s1", "t")
    assert wire(replies.struct_term(locked))[A("optimization_status")][A("optimizing")] is True


def test_the_reply_cache_is_keyed_by_stamp_and_checked_against_the_id():
    replies = Replies(StoreConfig(), FakeClock())
    one = VariableRecord("var_a_1", A("a"), A("integer"), 1, stamp=42)
    other = VariableRecord("var_b_2", A("b"), A("integer"), 2, stamp=42)  # a stamp seen twice
    assert wire(replies.struct_term(one))[A("value")] == 1
    assert wire(replies.struct_term(other))[A("value")] == 2


def test_the_reply_cache_is_bounded_and_emptied_by_new_settings():
    clock = FakeClock()
    replies = Replies(StoreConfig(), clock, cache_entries=3)
    records = [VariableRecord(f"var_a_{n}", A("a"), A("integer"), n) for n in range(5)]
    for record in records:
        replies.struct_term(record)
    assert len(replies._structs) == 3
    kept = replies.struct_term(records[-1])
    assert replies.struct_term(records[-1]) is kept
    clock.beam_offset = 100  # a new hello: times are presented differently now
    replies.configure(StoreConfig(), clock)
    assert replies.struct_term(records[-1]) is not kept


def test_defaults_are_shared_and_never_mutated():
    store = _store()
    n = store.storage.get_variable("s1", "var_n_2")
    assert n.constraints is EMPTY_MAP and n.optimization_status is NOT_OPTIMIZING
    default_metadata = n.metadata
    store.call("update_variable", "s1", "n", 2, {"x": 1})
    assert default_metadata == {"source": "elixir", "created_by": "session_store"}
    assert NOT_OPTIMIZING[A("optimizing")] is False and EMPTY_MAP == {}


def test_records_are_never_changed_in_place():
    store = _store()
    before = store.storage.get_variable("s1", "var_n_2")
    header = store.storage.get_session("s1")
    store.call("update_variable", "s1", "n", 5, {})
    assert before.value == 1 and before.version == 0
    assert header.revision == store.storage.get_session("s1").revision - 1


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
    term = {**render_session(contents(store), S, V), **change}
    with pytest.raises(InvalidSession) as raised:
        parse_session(term, S, V)
    assert raised.value.reason is A(reason)


def test_variable_map_key_must_match_its_id():
    store = _store()
    term = render_session(contents(store), S, V)
    var = term[A("variables")]["var_t_1"]
    term[A("variables")] = {"other_key": var}
    with pytest.raises(InvalidSession):
        parse_session(term, S, V)


def test_memory_backend_operations():
    storage = MemoryStorage()
    tx = storage.begin()
    session = SessionRecord("s", 0, 0, 10)
    stored, inserted = tx.insert_session(session)
    assert inserted and stored is session
    stored, inserted = tx.insert_session(SessionRecord("s", 5, 5, 10))
    assert not inserted and stored is session
    var = VariableRecord("var_a_1", "a", A("integer"), 1)
    assert tx.put_variable("s", var, "a") is True
    assert tx.put_variable("s", var, "a") is False
    assert tx.get_variable("s", "var_a_1") is var and tx.indexed_variable_id("s", "a") == "var_a_1"
    tx.delete_variable("s", "var_a_1", None)
    assert tx.get_variable("s", "var_a_1") is None and tx.indexed_variable_id("s", "a") == "var_a_1"
    assert tx.expired_session_ids(10, 100) == [] and tx.expired_session_ids(11, 100) == ["s"]
    tx.put_global_program("g", 1, 100)
    assert tx.delete_global_programs_stored_before(100) == 0
    assert tx.delete_global_programs_stored_before(101) == 1
    assert tx.delete_session("s") and not tx.delete_session("s")
    tx.commit()
