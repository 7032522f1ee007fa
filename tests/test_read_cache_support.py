"""What the sidecar does for the harness's read cache (docs/harness.md, "Read cache").

* `touch_sessions` (the batched touches of cached reads): sets `last_accessed` to the given
  second of the BEAM's clock, never past now and never backwards, answers each session's expiry
  second on the BEAM's clock (nil for a missing session or a malformed entry), and is no error;
* the periodic cleanup sends `{:invalidate, :all}` after it removed sessions, only to a harness
  that said `read_cache: true` in `:hello`, and nothing when it removed none;
* the arguments memo of `codec.decode_call` is keyed by names of calls that exist;
* the encoded-variable cache of `replies` stays bounded (dropping its older half), keeps the
  newest, and answers every record with its own encoding.
"""

from __future__ import annotations

from sidecar import codec, server
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.protocol import frame
from sidecar.store import calls
from sidecar.store.config import StoreConfig
from sidecar.store.session_store import SessionStore
from sidecar.store.structs import compact_variable
from sidecar.terms import Atom

A = Atom
OK = A("ok")


def make_store(now: int = 1000, beam_offset: int = 0) -> tuple[SessionStore, FakeClock]:
    clock = FakeClock(now, beam_offset=beam_offset)
    return SessionStore(StoreConfig(), clock), clock


def last_accessed(store: SessionStore, session_id: str) -> int:
    result, _ = store.call("fetch_session_for_update", session_id)
    return result[1].header.last_accessed


def test_touch_sessions_moves_last_accessed_to_the_given_second_and_answers_the_expiry():
    store, clock = make_store(now=1000, beam_offset=50)
    assert store.call("create_session", "s", {A("ttl"): 30})[0][0] is OK
    clock.advance(10)  # storage time now 1010, the BEAM's 960
    answers, events = store.call("touch_sessions", [("s", 955)])
    assert events == []
    assert last_accessed(store, "s") == 1005  # 955 on the BEAM's clock
    assert answers == [955 + 30]  # on the BEAM's clock


def test_touch_sessions_never_moves_back_nor_past_now():
    store, clock = make_store(now=1000)
    store.call("create_session", "s", {A("ttl"): 30})
    clock.advance(5)
    store.call("touch_sessions", [("s", 1004)])
    assert store.call("touch_sessions", [("s", 1001)])[0] == [1034]  # older: unchanged
    assert last_accessed(store, "s") == 1004
    assert store.call("touch_sessions", [("s", 9999)])[0] == [1035]  # future: now
    assert last_accessed(store, "s") == 1005


def test_touch_sessions_answers_nil_for_missing_sessions_and_malformed_entries():
    store, _ = make_store()
    store.call("create_session", "s", {A("ttl"): 7})
    answers, _ = store.call("touch_sessions", [("gone", 1000), "s", ("s",), ("s", 1.5), (5, 1000), ("s", 1000)])
    assert answers == [None, None, None, None, None, 1007]


def test_touch_sessions_through_the_call_table():
    store, _ = make_store()
    store.call("create_session", "s", {A("ttl"): 7})
    result, _ = store.transact(lambda: calls.dispatch(store, A("touch_sessions"), [[("s", 1000)]]), lambda _: False)
    assert result == [1007]
    result, _ = calls.dispatch(store, A("touch_sessions"), ["not a list"])
    assert result == (A("error"), (A("bad_argument"), A("touch_sessions"), 1, "list"))


def expire_one_session(read_cache: bool | None) -> list:
    """A sidecar (in-process) with one session that has expired: the frames of a cleanup step."""
    sidecar = server.Sidecar(SidecarOptions(enable_test_calls=True))
    hello = {A("read_cache"): read_cache} if read_cache is not None else {}
    sidecar.handle_input(frame((A("hello"), 1, hello)))
    sidecar.handle_input(frame((A("call"), 1, A("create_session"), ["short", [(A("ttl"), 0)]])))
    sidecar.handle_input(frame((A("call"), 2, A("create_session"), ["long", [(A("ttl"), 100)]])))
    sidecar.handle_input(frame((A("call"), 3, A("__advance_clock__"), [5])))
    frames, more = sidecar.cleanup_step(sidecar.clock.now(), True)
    assert not more
    return [codec.decode(f[4:]) for f in frames]


def test_the_periodic_cleanup_tells_a_caching_harness_to_invalidate():
    assert expire_one_session(True) == [(A("invalidate"), A("all"))]


def test_no_invalidation_frames_for_a_harness_without_a_cache():
    assert expire_one_session(None) == []
    assert expire_one_session(False) == []


def test_no_invalidation_frame_when_nothing_expired():
    sidecar = server.Sidecar(SidecarOptions())
    sidecar.handle_input(frame((A("hello"), 1, {A("read_cache"): True})))
    sidecar.handle_input(frame((A("call"), 1, A("create_session"), ["s", []])))
    frames, _ = sidecar.cleanup_step(sidecar.clock.now(), True)
    assert frames == []


def test_the_decode_memo_names_calls_that_exist():
    assert codec._MEMO_FUNCTIONS <= set(calls.CALLS)
    assert codec._PREFIX_MEMO_FUNCTIONS <= set(calls.CALLS)
    body = codec.encode((A("call"), 7, A("has_variable?"), ["s", A("v")]))
    assert codec.decode_call(body) == (7, A("has_variable?"), ["s", A("v")])
    assert codec._decoded_args.get(body[body.index(b"has_variable?") + len(b"has_variable?") :]) == ("s", A("v"))


def test_the_encoded_variable_cache_stays_bounded_keeps_the_newest_and_answers_right():
    from sidecar.storage.base import EMPTY_MAP, VariableRecord
    from sidecar.store.replies import Replies

    config = StoreConfig().model_copy(update={"compact_variables": True})
    replies = Replies(config, FakeClock(0), cache_entries=10)
    records = [VariableRecord(f"var_v_{i}", A("v"), A("float"), float(i), EMPTY_MAP, EMPTY_MAP, i, 0, 0) for i in range(35)]
    for record in records:
        replies.compact_term(record)
        assert len(replies._compacts) <= 10
    assert records[-1].stamp in replies._compacts  # the newest are kept
    assert records[0].stamp not in replies._compacts  # the oldest went first
    for record in records:  # kept or not, every answer is the record's own encoding
        expected = codec.encode_body(compact_variable(record, config.variable_struct, replies._to_beam))
        assert replies.compact_term(record).etf == expected
