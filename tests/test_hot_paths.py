"""The per-call fast paths give exactly what the general paths give.

* `codec.encode_tagged_frame` (replies, telemetry) writes `codec.encode_frame`'s bytes;
* `codec.decode_call` and the one-frame chunk path of `ProtocolMachine.receive_data` give the
  events of the general path (whole `decode`, then the frame checks), malformed frames included;
* a read call's arguments taken from `codec.decode_call`'s memo are what decoding them gives,
  in a fresh list, and the memo stays bounded;
* `codec._dec_args` (a call's flat argument list read inline) gives exactly `codec._dec`'s term
  (str vs bytes, atoms, nil/true/false, 1 vs 1.0, -0.0) or fails where `_dec` fails;
* `ProtocolMachine.receive_calls` and `Sidecar.handle_input`'s chunk-of-calls path answer as
  `receive_data` and the per-event loop do;
* `codec.encode_reply_frame` writes `codec.encode_frame`'s bytes;
* the telemetry head cache never answers for an event list changed in place;
* `calls.dispatch`'s per-(name, arity) runners answer as the general table walk;
* `Clock.utc_iso8601` (formatted seconds cached) is `format_utc_iso8601(datetime.now(utc))`;
* the numeric range check's plain-number branch agrees with the term-order rule.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from backends import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import atoms, binaries, floats, ints, strictly_equal, strings, terms

from sidecar import clock, codec, protocol
from sidecar.clock import Clock, FakeClock, format_utc_iso8601
from sidecar.protocol import ProtocolMachine
from sidecar.storage.base import VariableRecord
from sidecar.store import calls, types
from sidecar.store.config import StoreConfig
from sidecar.store.replies import Replies
from sidecar.store.session_store import SessionStore, is_error
from sidecar.terms import Atom, Encoded

A = Atom
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

encodeds = terms.map(lambda term: Encoded(codec.encode_body(term)))
results = st.one_of(
    terms,
    encodeds,
    st.tuples(atoms, st.one_of(terms, encodeds, atoms)),
    st.tuples(st.sampled_from([A("ok"), A("error")]), st.one_of(terms, encodeds)),
    st.dictionaries(atoms, st.one_of(terms, encodeds), max_size=4),
    st.dictionaries(st.one_of(strings, atoms), st.one_of(st.none(), st.booleans(), ints, strings, atoms), max_size=4),
)
call_ids = st.one_of(st.integers(0, 300), st.integers(0, 2**40), st.sampled_from([2**31 - 1, 2**31, 2**64]))


# -- encode_tagged_frame ------------------------------------------------------------------


@SETTINGS
@given(call_ids, results)
def test_reply_frames_are_encode_frame_bytes(call_id: int, result: Any) -> None:
    expected = codec.encode_frame((A("reply"), call_id, result))
    assert ProtocolMachine().reply(call_id, result) == expected
    assert codec.encode_tagged_frame(codec.tagged_head(A("reply"), 3), call_id, result) == expected


@SETTINGS
@given(st.one_of(st.lists(atoms, max_size=5), terms), results, results)
def test_telemetry_frames_are_encode_frame_bytes(event: Any, measurements: Any, metadata: Any) -> None:
    expected = codec.encode_frame((A("telemetry"), event, measurements, metadata))
    machine = ProtocolMachine()
    assert machine.telemetry(event, measurements, metadata) == expected
    assert machine.telemetry(event, measurements, metadata) == expected  # now from the cache


def test_store_events_encode_as_before() -> None:
    from sidecar.store import session_store as store_module

    machine = ProtocolMachine()
    for event in (store_module.EV_GET, store_module.EV_UPDATED, store_module.EV_BATCH_UPDATE):
        for measurements, metadata in (
            ({A("count"): 1, A("version"): 300}, {A("session_id"): "s", A("type"): A("float")}),
            ({A("count"): 1}, {A("session_id"): b"\xff", A("cache_hit"): False}),
            ({A("count"): 10}, {A("session_id"): "é", A("atomic"): None}),
        ):
            for _ in range(2):
                assert machine.telemetry(event, measurements, metadata) == codec.encode_frame(
                    (A("telemetry"), event, measurements, metadata)
                )


def test_telemetry_head_cache_sees_a_list_changed_in_place() -> None:
    machine = ProtocolMachine()
    event = [A("a"), A("b")]
    first = machine.telemetry(event, {}, {})
    assert first == codec.encode_frame((A("telemetry"), [A("a"), A("b")], {}, {}))
    event[1] = A("c")
    assert machine.telemetry(event, {}, {}) == codec.encode_frame((A("telemetry"), [A("a"), A("c")], {}, {}))
    event[1] = True
    assert machine.telemetry(event, {}, {}) == codec.encode_frame((A("telemetry"), [A("a"), True], {}, {}))
    event.append(1)
    assert machine.telemetry(event, {}, {}) == codec.encode_frame((A("telemetry"), [A("a"), True, 1], {}, {}))


def test_an_unencodable_reply_is_still_an_internal_error() -> None:
    data = ProtocolMachine().reply(3, (A("ok"), object()))
    term = codec.decode(data[4:])
    assert term[:2] == (A("reply"), 3) and term[2][0] is A("error") and term[2][1][0] is A("internal_error")
    assert ProtocolMachine().reply(4, (A("ok"), float("nan")))[4:] == codec.encode(
        (A("reply"), 4, (A("error"), (A("internal_error"), "reply could not be encoded: the BEAM has no float nan")))
    )


# -- decode_call and the one-frame chunk path ---------------------------------------------


class _GeneralMachine(ProtocolMachine):
    """The reference: every frame through whole `decode` and the general checks."""

    def receive_data(self, data):  # type: ignore[override]
        saved = protocol._decode_call
        protocol._decode_call = lambda body: None
        try:
            return super().receive_data(bytearray(data) if data else data)  # not bytes: no chunk path
        finally:
            protocol._decode_call = saved


def _atom_bytes(name: str, tag: int) -> bytes:
    raw = name.encode()
    if len(raw) > 255:  # the small tags cannot hold it: their 2-byte-length forms
        tag = {115: 100, 119: 118}.get(tag, tag)
    return bytes((tag, len(raw))) + raw if tag in (115, 119) else bytes((tag,)) + len(raw).to_bytes(2, "big") + raw


call_atom_tags = st.sampled_from([119, 100, 115, 118])
id_bytes = st.one_of(
    st.integers(0, 255).map(lambda n: bytes((97, n))),
    st.integers(-(2**31), 2**31 - 1).map(lambda n: b"b" + n.to_bytes(4, "big", signed=True)),
    call_ids.map(lambda n: codec.encode(n)[1:]),
    terms.map(lambda t: codec.encode(t)[1:]),
)
function_bytes = st.one_of(
    st.sampled_from(
        ["ping", "get_variable", "has_variable?", "session_exists?", "get_variable_value", "update_variable"]
        + ["nil", "true", "false", "x" * 256]
    ).flatmap(lambda name: call_atom_tags.map(lambda tag: _atom_bytes(name, tag))),
    terms.map(lambda t: codec.encode(t)[1:]),
)
args_bytes = st.one_of(
    st.lists(terms, max_size=4).map(lambda t: codec.encode(t)[1:]),
    terms.map(lambda t: codec.encode(t)[1:]),
)


@st.composite
def call_bodies(draw: Any) -> bytes:
    """Bodies shaped like `{:call, id, f, args}`, often wrong somewhere, sometimes cut or padded."""
    arity = draw(st.sampled_from([4, 4, 4, 3, 5]))
    body = bytes((131, 104, arity)) + _atom_bytes(draw(st.sampled_from(["call", "call", "hello"])), draw(call_atom_tags))
    body += draw(id_bytes) + draw(function_bytes) + draw(args_bytes)
    cut = draw(st.sampled_from(["whole", "whole", "whole", "truncate", "pad", "flip"]))
    if cut == "truncate" and len(body) > 1:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif cut == "pad":
        body += draw(st.binary(min_size=1, max_size=3))
    elif cut == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes((draw(st.integers(0, 255)),)) + body[at + 1 :]
    return body


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@SETTINGS
@given(call_bodies())
def test_decode_call_agrees_with_decode(body: bytes) -> None:
    fast = codec.decode_call(body)
    if fast is not None:
        assert codec.decode(body) == (A("call"), *fast)
        term = codec.decode(body)
        assert type(term[1]) is int and term[1] >= 0 and type(term[2]) is Atom and type(term[3]) is list


@SETTINGS
@given(st.lists(call_bodies(), min_size=1, max_size=3), st.integers(1, 64))
def test_events_are_the_general_paths(bodies: list[bytes], max_frame_bytes: int) -> None:
    for limit in (max_frame_bytes, protocol.DEFAULT_MAX_FRAME_BYTES):
        fast, general = ProtocolMachine(limit), _GeneralMachine(limit)
        for body in bodies:  # one frame per chunk: the chunk path
            assert fast.receive_data(_frame(body)) == general.receive_data(_frame(body))
        data = b"".join(_frame(body) for body in bodies)  # all in one chunk: the parse loop
        assert ProtocolMachine(limit).receive_data(data) == _GeneralMachine(limit).receive_data(data)
        assert fast.receive_data(b"") == general.receive_data(b"")


def test_a_chunk_that_is_not_exactly_one_frame_is_buffered_as_before() -> None:
    whole = _frame(codec.encode((A("call"), 7, A("ping"), [])))
    machine = ProtocolMachine()
    assert machine.receive_data(whole[:6]) == []
    assert machine.receive_data(whole[6:]) == [protocol.Call(7, A("ping"), [])]
    assert machine.receive_data(whole + whole[:3]) == [protocol.Call(7, A("ping"), [])]
    assert machine.buffered_bytes == 3


# -- calls.dispatch runners --------------------------------------------------------------


def _store() -> SessionStore:
    store = SessionStore(StoreConfig(), FakeClock(100))
    store.call("create_session", "s", {})
    store.call("register_variable", "s", A("v"), A("float"), 1.5, {A("constraints"): {A("min"): 0, A("max"): 10}})
    store.call("register_variable", "s", "n", A("integer"), 3, {})
    return store


def _in_unit(store: SessionStore, dispatch: Any, name: Any, args: list) -> tuple:
    """`dispatch(store, name, args)` as the sidecar runs it: one unit of work, the answer
    rendered as the reply layer renders it (records become structs)."""
    result, events = store.transact(lambda: dispatch(store, name, args), lambda outcome: is_error(outcome[0]))
    return Replies(store.config, store.clock).render(name, result) if isinstance(name, Atom) else result, events


arg_values = st.one_of(
    st.sampled_from(["s", "nope", A("v"), "v", "n", A("float"), 2.5, 11, -1, [], {}, None, True, [A("v"), "n"]]),
    st.just({A("v"): 4.0, "n": 2}),
    st.just([(A("atomic"), True)]),
    st.just({A("constraints"): {A("min"): 1}}),
    terms,
)


@SETTINGS
@given(st.sampled_from(sorted(calls.CALLS, key=lambda a: a.name)), st.lists(arg_values, max_size=6))
def test_runners_answer_as_the_table_walk(name: Atom, args: list) -> None:
    fast_store, general_store = _store(), _store()
    fast = _in_unit(fast_store, calls.dispatch, name, list(args))
    general = _in_unit(general_store, calls._dispatch_checked, name, list(args))
    assert codec.encode(fast[0]) == codec.encode(general[0])
    assert codec.encode(fast[1]) == codec.encode(general[1])
    assert snapshot(fast_store.storage) == snapshot(general_store.storage)


def test_runner_table_covers_every_arity_but_the_test_only_calls() -> None:
    for name, spec in calls.CALLS.items():
        for arity in spec.arities:
            assert ((name, arity) in calls._RUNNERS) is (not spec.test_only)


# -- clock ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nanos",
    [0, 999, 1_000, 1_764_000_000_000_000_000, 1_764_000_000_999_999_999, 1_764_000_001_000_000_000, 1_764_000_001_123_456_789],
)
def test_utc_iso8601_is_datetime_nows_format(monkeypatch: pytest.MonkeyPatch, nanos: int) -> None:
    c = Clock()
    for step in (nanos - 1, nanos, nanos + 1, nanos) if nanos else (nanos, nanos + 1):
        monkeypatch.setattr(clock.time, "time_ns", lambda step=step: step)
        seconds, rest = divmod(step, 1_000_000_000)
        moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=rest // 1000)
        assert c.utc_iso8601() == format_utc_iso8601(moment)


def test_utc_iso8601_follows_the_wall_clock() -> None:
    c = Clock()
    before = format_utc_iso8601(dt.datetime.now(dt.timezone.utc))
    stamp = c.utc_iso8601()
    after = format_utc_iso8601(dt.datetime.now(dt.timezone.utc))
    assert before <= stamp <= after


# -- numeric range ------------------------------------------------------------------------

bounds = st.one_of(
    st.none(),
    st.just(False),
    st.just(True),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just("3"),
    atoms,
)


def _reference_range(value: Any, constraints: dict) -> str | None:
    """The rule as it was written before the fast branch (Erlang term order for odd bounds)."""
    if value in types._SPECIAL_FLOATS:
        return None
    minimum, maximum = constraints.get(A("min")), constraints.get(A("max"))
    if types._truthy(minimum) and not types._at_least(value, minimum):
        return "below"
    if types._truthy(maximum) and not types._at_most(value, maximum):
        return "above"
    return None


@SETTINGS
@given(
    st.sampled_from([A("float"), A("integer")]),
    st.one_of(st.integers(-6, 6), st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)),
    bounds,
    bounds,
)
def test_numeric_range_agrees_with_term_order(type_atom: Atom, value: Any, minimum: Any, maximum: Any) -> None:
    constraints = {A("min"): minimum, A("max"): maximum}
    try:
        coerced = types.coerce(type_atom, value)
    except types.ValidationFailed:
        return
    expected = _reference_range(coerced, constraints)
    try:
        types.check_constraints(type_atom, value, constraints)
        got = None
    except types.ConstraintViolation as violation:
        got = "below" if "below" in violation.message else "above"
    assert got == expected
    assert not math.isnan(coerced) if type(coerced) is float else True


@pytest.mark.parametrize("tag", [119, 100, 115, 118])
def test_decode_call_reads_every_atom_encoding_of_a_call(tag: int) -> None:
    body = bytes((131, 104, 4)) + _atom_bytes("call", tag) + b"b\x00\x00\x01\x00" + _atom_bytes("get_variable", tag)
    body += codec.encode(["s", A("v0")])[1:]
    assert codec.decode_call(body) == (256, A("get_variable"), ["s", A("v0")])
    assert ProtocolMachine().receive_data(_frame(body)) == [protocol.Call(256, A("get_variable"), ["s", A("v0")])]


def _call_body(id_part: bytes, function_part: bytes, args_part: bytes, tag: int = 119) -> bytes:
    return bytes((131, 104, 4)) + _atom_bytes("call", tag) + id_part + function_part + args_part


EDGE_BODIES = [
    _call_body(b"b\xff\xff\xff\xff", _atom_bytes("ping", 119), b"j"),  # id -1
    _call_body(b"b\x7f\xff\xff\xff", _atom_bytes("ping", 100), b"j"),  # the largest INTEGER_EXT
    _call_body(b"n\x01\x00\x05", _atom_bytes("ping", 119), b"j"),  # SMALL_BIG id
    _call_body(b"n\x01\x01\x05", _atom_bytes("ping", 119), b"j"),  # SMALL_BIG id -5
    _call_body(b"a\x05", _atom_bytes("nil", 119), b"j"),
    _call_body(b"a\x05", _atom_bytes("true", 100), b"j"),
    _call_body(b"a\x05", _atom_bytes("false", 119), b"j"),
    _call_body(b"a\x05", b"m\x00\x00\x00\x04ping", b"j"),  # function a binary
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"a\x01"),  # args not a list
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"k\x00\x02ab"),  # args a charlist
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"l\x00\x00\x00\x01a\x01a\x02"),  # improper
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"l\x00\x00\x00\x01a\x01l\x00\x00\x00\x01a\x02j"),  # list tail
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"jj"),  # trailing byte
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"l\x00\x00\x00\x09a\x01j"),  # truncated list
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"lFFFFa\x01j"),
    _call_body(b"a\x05", _atom_bytes("x" * 256, 118), b"j"),  # atom too long
    _call_body(b"a\x05", _atom_bytes("ping", 119), b"l\x00\x00\x00\x01F\x7f\xf0\x00\x00\x00\x00\x00\x00j"),  # inf
    _call_body(b"a", b"", b""),
    _call_body(b"", b"", b""),
    bytes((131, 80, 0, 0, 0, 10)) + b"x\x9c",  # compressed
]


@pytest.mark.parametrize("body", EDGE_BODIES)
def test_edge_frames_give_the_general_paths_events(body: bytes) -> None:
    fast = codec.decode_call(body)
    if fast is not None:
        assert codec.decode(body) == (A("call"), *fast)
    for limit in (8, protocol.DEFAULT_MAX_FRAME_BYTES):
        assert ProtocolMachine(limit).receive_data(_frame(body)) == _GeneralMachine(limit).receive_data(_frame(body))


# -- the flat argument list (codec._dec_args) ---------------------------------------------

scalar_args = st.one_of(
    strings,
    binaries,
    st.binary(max_size=6),  # often not UTF-8: stays bytes
    atoms,
    st.sampled_from([None, True, False, A("x" * 255)]),
    st.integers(0, 255),
    st.integers(-(2**31), 2**31 - 1),
    ints,
    floats,
)


def _scalar_bytes(draw: Any, value: Any) -> bytes:
    """`value` encoded, atoms in any of the four atom encodings (the decoder reads all four)."""
    if type(value) is Atom or value is None or type(value) is bool:
        name = "nil" if value is None else str(value).lower() if type(value) is bool else value.name
        return _atom_bytes(name, draw(call_atom_tags))
    return codec.encode(value)[1:]


@st.composite
def arg_lists(draw: Any) -> bytes:
    """A LIST_EXT of mostly scalars (some any term), sometimes with a tail, cut, padded or
    with a byte changed (a NEW_FLOAT_EXT turned into an infinity included)."""
    items = draw(st.lists(st.one_of(scalar_args, scalar_args, scalar_args, terms), max_size=5))
    body = b"l" + len(items).to_bytes(4, "big") + b"".join(_scalar_bytes(draw, item) for item in items)
    body += draw(st.sampled_from([b"j", b"j", b"j", b"a\x01", codec.encode([1])[1:], b"k\x00\x01a"]))
    change = draw(st.sampled_from(["none", "none", "truncate", "pad", "flip", "length", "inf"]))
    # the LIST_EXT tag itself stays: `_dec_args` is only called on one (decode_call checks)
    if change == "truncate":
        body = body[: draw(st.integers(1, len(body) - 1))]
    elif change == "pad":
        body += draw(st.binary(min_size=1, max_size=3))
    elif change == "flip":
        at = draw(st.integers(1, len(body) - 1))
        body = body[:at] + bytes((draw(st.integers(0, 255)),)) + body[at + 1 :]
    elif change == "length":
        body = b"l" + draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big") + body[5:]
    elif change == "inf" and b"F" in body:
        at = body.index(b"F")
        body = body[: at + 1] + draw(st.sampled_from([b"\x7f\xf0", b"\xff\xf0", b"\x7f\xf8"])) + bytes(6) + body[at + 9 :]
    return body


def _outcome(decoder: Any, data: bytes) -> Any:
    try:
        return decoder(data, 0)
    except Exception:
        return "raises"


@SETTINGS
@given(arg_lists())
def test_flat_argument_lists_decode_as_the_general_decoder(data: bytes) -> None:
    fast, general = _outcome(codec._dec_args, data), _outcome(codec._dec, data)
    assert (fast == "raises") is (general == "raises")
    if fast != "raises":
        assert strictly_equal(fast[0], general[0]) and fast[1] == general[1]


@SETTINGS
@given(
    call_ids.filter(lambda n: n < 2**31),
    arg_lists(),
    st.sampled_from(["get_variable", "update_variable", "ping"]),
    call_atom_tags,
)
def test_decode_call_with_flat_arguments_is_decode(call_id: int, args: bytes, function: str, tag: int) -> None:
    body = _call_body(codec.encode(call_id)[1:], _atom_bytes(function, tag), args, tag)
    fast = codec.decode_call(body)
    try:
        general = codec.decode(body)
    except codec.DecodeError:
        assert fast is None
        return
    if fast is not None:
        assert strictly_equal(general, (A("call"), *fast))
    elif type(general[3]) is list:  # a well-formed call with a list of args takes the fast path
        raise AssertionError(f"decode_call missed {general!r}")


@SETTINGS
@given(call_bodies(), st.booleans())
def test_decode_call_from_the_memo_is_decode(body: bytes, cold: bool) -> None:
    if cold:
        codec._decoded_args.clear()
    first = codec.decode_call(body)
    second = codec.decode_call(body)  # a memo hit when the first one was memoised
    if first is None:
        assert second is None
        return
    general = codec.decode(body)
    assert strictly_equal(general, (A("call"), *first)) and strictly_equal(general, (A("call"), *second))
    assert first[2] is not second[2]


def test_read_calls_arguments_are_memoised_and_each_caller_gets_its_own_list() -> None:
    codec._decoded_args.clear()
    first = codec.decode_call(codec.encode((A("call"), 1, A("get_variable"), ["s1", A("v0")])))
    assert len(codec._decoded_args) == 1
    first[2].append("changed by the store")  # the memo holds a tuple: this cannot reach it
    second = codec.decode_call(codec.encode((A("call"), 70_000, A("get_variable"), ["s1", A("v0")])))
    assert second == (70_000, A("get_variable"), ["s1", A("v0")])
    assert len(codec._decoded_args) == 1


@pytest.mark.parametrize(
    "function, args",
    [
        ("update_variable", ["s1", A("v0"), "a string value"]),  # a write
        ("get_variable", ["s1", 5]),  # an argument that is not a binary or an atom
        ("get_variable", ["s" * 300, A("v0")]),  # longer than the memo keeps
    ],
)
def test_calls_the_memo_does_not_keep(function: str, args: list) -> None:
    codec._decoded_args.clear()
    assert codec.decode_call(codec.encode((A("call"), 1, A(function), args))) == (1, A(function), args)
    assert codec._decoded_args == {}


def test_the_memo_is_emptied_when_full() -> None:
    codec._decoded_args.clear()
    for n in range(codec._MEMO_ENTRIES + 10):
        assert codec.decode_call(codec.encode((A("call"), n, A("get_variable"), [f"s{n}", A("v0")])))[2] == [f"s{n}", A("v0")]
    assert 0 < len(codec._decoded_args) <= codec._MEMO_ENTRIES


# -- the leading arguments of update_variable (codec._decoded_prefixes) ------------------

update_values = st.one_of(floats, st.integers(0, 255), st.integers(-(2**31), 2**31 - 1), st.integers(), scalar_args)


def _update_body(draw: Any, call_id: int, leading: list, value: Any, tag: int) -> bytes:
    items = [*leading, value]
    args = b"l" + len(items).to_bytes(4, "big") + b"".join(_scalar_bytes(draw, item) for item in items) + b"j"
    return _call_body(codec.encode(call_id)[1:], _atom_bytes("update_variable", tag), args, tag)


@SETTINGS
@given(
    st.lists(scalar_args, min_size=1, max_size=3),
    st.lists(update_values, min_size=1, max_size=4),
    st.booleans(),
    call_atom_tags,
    st.data(),
)
def test_update_calls_from_the_prefix_memo_are_decode(
    leading: list, values: list, cold: bool, tag: int, data: st.DataObject
) -> None:
    """The same leading arguments with one value after another (the memo's case), any atom
    encoding, values of every scalar kind: each call decodes as `decode` does."""
    if cold:
        codec._decoded_prefixes.clear()
    for call_id, value in enumerate(values):
        body = _update_body(data.draw, call_id, leading, value, tag)
        fast = codec.decode_call(body)
        try:
            general = codec.decode(body)
        except codec.DecodeError:  # e.g. a long atom's UTF-8 bytes under a Latin-1 tag
            assert fast is None and codec.decode_call(body) is None
            continue
        assert fast is not None and strictly_equal(general, (A("call"), *fast))
        assert strictly_equal(codec.decode_call(body), fast)  # again: from the memo when kept
    assert len(codec._decoded_prefixes) <= codec._MEMO_ENTRIES


def _prefix_of(body: bytes, tail_size: int) -> bytes:
    return body[len(_call_body(b"a\x01", _atom_bytes("update_variable", 119), b"")) : -tail_size]


def test_update_variables_leading_arguments_are_memoised_and_read_from_the_memo() -> None:
    codec._decoded_prefixes.clear()
    first = codec.encode((A("call"), 1, A("update_variable"), ["s1", A("v0"), 1.5]))
    assert codec.decode_call(first) == (1, A("update_variable"), ["s1", A("v0"), 1.5])
    prefix = _prefix_of(first, 10)
    assert codec._decoded_prefixes == {prefix: ("s1", A("v0"))}
    # a float, a small and a 32-bit integer after the same bytes: one entry serves them all
    for call_id, value in ((2, -0.0), (3, 7), (4, -70_000), (300, 2.5e300)):
        body = codec.encode((A("call"), call_id, A("update_variable"), ["s1", A("v0"), value]))
        assert strictly_equal(codec.decode_call(body), (call_id, A("update_variable"), ["s1", A("v0"), value]))
    assert len(codec._decoded_prefixes) == 1
    # the hit path really answers from the entry (planted here: decode would say "s1")
    codec._decoded_prefixes[prefix] = ("planted", A("v0"))
    assert codec.decode_call(first) == (1, A("update_variable"), ["planted", A("v0"), 1.5])
    codec._decoded_prefixes.clear()


@pytest.mark.parametrize(
    "args",
    [
        ["s1", A("v0"), "a string value"],  # a last argument of no fixed size
        ["s1", A("v0"), True],
        ["s1", A("v0"), 2**40],  # a big integer
        ["s1", 5, 1.5],  # a leading argument that is not a binary or an atom
        ["s" * 300, A("v0"), 1.5],  # longer than the memo keeps
        ["s1", A("v0"), 1.5, {}],  # metadata last
        [1.5],  # nothing before the value
    ],
)
def test_update_calls_the_prefix_memo_does_not_keep(args: list) -> None:
    codec._decoded_prefixes.clear()
    body = codec.encode((A("call"), 1, A("update_variable"), args))
    assert strictly_equal(codec.decode_call(body), (1, A("update_variable"), args))
    assert codec._decoded_prefixes == {}


def test_a_tail_that_only_looks_like_a_value_is_not_memoised() -> None:
    """Bytes ending as a short integer would, but read otherwise: a SMALL_BIG_EXT whose first
    digit byte is 97 (`a`), and a binary whose last nine bytes look like a float."""
    codec._decoded_prefixes.clear()
    big = _call_body(b"a\x01", _atom_bytes("update_variable", 119), b"l\x00\x00\x00\x03m\x00\x00\x00\x02s1w\x02v0n\x02\x00a\x01j")
    assert codec.decode(big)[3] == ["s1", A("v0"), 97 + 256]
    floaty = codec.encode((A("call"), 1, A("update_variable"), ["s1", b"F" + bytes(8)]))
    for body in (big, floaty, big, floaty):
        assert strictly_equal((A("call"), *codec.decode_call(body)), codec.decode(body))
    assert codec._decoded_prefixes == {}


def test_a_non_finite_value_after_memoised_arguments_is_refused_as_decode_refuses_it() -> None:
    codec._decoded_prefixes.clear()
    good = codec.encode((A("call"), 1, A("update_variable"), ["s1", A("v0"), 1.5]))
    assert codec.decode_call(good) is not None and codec._decoded_prefixes
    infinite = good[:-9] + b"\x7f\xf0" + bytes(6) + b"j"
    assert codec.decode_call(infinite) is None
    with pytest.raises(codec.DecodeError):
        codec.decode(infinite)


def test_the_prefix_memo_is_emptied_when_full() -> None:
    codec._decoded_prefixes.clear()
    for n in range(codec._MEMO_ENTRIES + 10):
        assert codec.decode_call(codec.encode((A("call"), n, A("update_variable"), [f"s{n}", A("v0"), 0.5])))[2] == [
            f"s{n}",
            A("v0"),
            0.5,
        ]
    assert 0 < len(codec._decoded_prefixes) <= codec._MEMO_ENTRIES


def test_decode_call_keeps_the_general_decoders_forms() -> None:
    args = [b"\xff", "é", A("v0"), None, True, False, 7, 300, -5, 0.5, -0.0, [1], {A("a"): 1}]
    body = codec.encode((A("call"), 9, A("update_variable"), args))
    fast = codec.decode_call(body)
    assert fast is not None and strictly_equal(list(fast[2]), args)
    assert strictly_equal((A("call"), *fast), codec.decode(body))


# -- receive_calls and the chunk-of-calls path of handle_input --------------------------


@SETTINGS
@given(st.lists(st.lists(call_bodies(), min_size=1, max_size=4), min_size=1, max_size=3), st.integers(1, 64), st.data())
def test_receive_calls_then_receive_data_is_receive_data(chunks: list, max_frame_bytes: int, data: st.DataObject) -> None:
    """Each chunk: several frames, maybe cut short at the end (the next read brings the rest)."""
    for limit in (max_frame_bytes, protocol.DEFAULT_MAX_FRAME_BYTES):
        fast, general = ProtocolMachine(limit), _GeneralMachine(limit)
        stream = b"".join(_frame(body) for bodies in chunks for body in bodies)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=3)))
        for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
            chunk = stream[start:stop]
            if not chunk:
                continue
            calls, consumed = fast.receive_calls(chunk)
            assert 0 <= consumed <= len(chunk)
            got = [protocol.Call(*call) for call in calls]
            if consumed < len(chunk):
                got += fast.receive_data(chunk[consumed:])
            assert got == general.receive_data(chunk)
        assert fast.receive_data(b"") == general.receive_data(b"")


def test_receive_calls_takes_the_leading_calls_and_leaves_the_rest() -> None:
    ping = _frame(codec.encode((A("call"), 7, A("ping"), [])))
    hello = _frame(codec.encode((A("hello"), 1, {})))
    assert ProtocolMachine().receive_calls(ping) == ([(7, A("ping"), [])], len(ping))
    assert ProtocolMachine().receive_calls(ping + ping) == ([(7, A("ping"), [])] * 2, 2 * len(ping))
    assert ProtocolMachine().receive_calls(ping + hello + ping) == ([(7, A("ping"), [])], len(ping))
    assert ProtocolMachine().receive_calls(ping + ping[:6]) == ([(7, A("ping"), [])], len(ping))
    assert ProtocolMachine().receive_calls(ping + _frame(b"")) == ([(7, A("ping"), [])], len(ping))
    for chunk in (ping[:6], hello + ping, bytearray(ping), b"", ping[:4], _frame(b"") + ping):
        assert ProtocolMachine().receive_calls(chunk) == ([], 0)
    machine = ProtocolMachine()
    assert machine.receive_data(ping[:6]) == []
    assert machine.receive_calls(ping) == ([], 0)  # something is buffered
    assert machine.receive_data(b"") != []
    assert machine.receive_calls(ping) == ([], 0)  # after end of input
    assert ProtocolMachine(8).receive_calls(ping) == ([], 0)  # over the frame limit
    assert ProtocolMachine(len(ping) - 4).receive_calls(ping + ping + _frame(b"x" * len(ping))) == (
        [(7, A("ping"), [])] * 2,
        2 * len(ping),
    )


class _GeneralSidecar:
    """A Sidecar whose chunks all go through `receive_data` and the per-event loop."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from sidecar.server import Sidecar

        sidecar = Sidecar(*args, **kwargs)
        sidecar.protocol.receive_calls = lambda data: ([], 0)
        return sidecar


sidecar_args = st.one_of(
    st.sampled_from([["s", A("v")], ["s", "n"], ["s", A("v"), 2.5], ["s", "n", 4], ["s", A("v"), 11], ["nope", A("v")]]),
    st.lists(arg_values, max_size=4),
)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**31),
            st.sampled_from(["get_variable", "update_variable", "ping", "get_variables", "nope", "__reset__"]),
            sidecar_args,
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_handle_input_chunks_of_calls_answer_as_the_event_loop(requests: list, telemetry: bool) -> None:
    import logging

    from sidecar.cli import SidecarOptions
    from sidecar.logframes import LogFrameHandler
    from sidecar.server import Sidecar

    def build(kind: Any) -> Any:
        sidecar = kind(SidecarOptions(), LogFrameHandler(logging.WARNING), clock_factory=lambda *_start: FakeClock(100))
        sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("telemetry"): telemetry})))
        sidecar.handle_input(codec.encode_frame((A("call"), 1, A("create_session"), ["s"])))
        sidecar.handle_input(
            codec.encode_frame(
                (A("call"), 2, A("register_variable"), ["s", A("v"), A("float"), 1.5, {A("constraints"): {A("max"): 10}}])
            )
        )
        sidecar.handle_input(codec.encode_frame((A("call"), 3, A("register_variable"), ["s", "n", A("integer"), 3])))
        return sidecar

    fast, general = build(Sidecar), build(_GeneralSidecar)
    frames = [codec.encode_frame((A("call"), call_id, A(function), args)) for call_id, function, args in requests]
    for chunk in frames:  # one call per chunk (sequential callers)
        assert fast.handle_input(chunk) == general.handle_input(chunk)
    for size in (2, 3):  # several per chunk (concurrent callers), and a hello among them
        for start in range(0, len(frames), size):
            chunk = b"".join(frames[start : start + size])
            if start == size:
                chunk += codec.encode_frame((A("hello"), 1, {A("telemetry"): telemetry})) + chunk
            assert fast.handle_input(chunk) == general.handle_input(chunk)


def test_a_failing_call_on_the_chunk_of_calls_path_is_logged_and_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from sidecar import server
    from sidecar.cli import SidecarOptions
    from sidecar.logframes import LogFrameHandler

    handler = LogFrameHandler(logging.WARNING)
    logging.getLogger("sidecar").addHandler(handler)
    try:
        sidecar = server.Sidecar(SidecarOptions(), handler)

        def broken_reply(call_id: int, result: Any) -> bytes:
            raise RuntimeError("boom")

        monkeypatch.setattr(sidecar.protocol, "encode_reply", broken_reply)
        monkeypatch.setattr(sidecar.protocol, "reply", broken_reply)
        out = sidecar.handle_input(codec.encode_frame((A("call"), 5, A("ping"), [])))
    finally:
        logging.getLogger("sidecar").removeHandler(handler)
    assert len(out) == 2  # the call's failure, then the reply's: logged, and the loop goes on
    level, message, _ = codec.decode(out[-1][4:])[1:]
    assert level is A("error") and "failed to handle call :ping (id 5)" in message and "boom" in message


# -- encode_reply_frame -------------------------------------------------------------------


@SETTINGS
@given(
    st.one_of(call_ids, st.integers(-(2**40), -1), st.just(True), floats),
    st.one_of(results, atoms, st.tuples(atoms, atoms), st.tuples(atoms, encodeds), st.tuples(strings, encodeds)),
)
def test_encode_reply_frame_is_encode_frame(call_id: Any, result: Any) -> None:
    head = codec.tagged_head(A("reply"), 3)
    assert codec.encode_reply_frame(head, call_id, result) == codec.encode_frame((A("reply"), call_id, result))


def test_encode_reply_frame_refuses_what_encode_frame_refuses() -> None:
    head = codec.tagged_head(A("reply"), 3)
    for result in (A("x" * 256), (A("ok"), A("x" * 256)), (A("x" * 256), Encoded(b"j"))):
        with pytest.raises(codec.EncodeError):
            codec.encode_frame((A("reply"), 1, result))
        with pytest.raises(codec.EncodeError):
            codec.encode_reply_frame(head, 1, result)


# -- the generated runners ----------------------------------------------------------------


def test_runners_call_the_stores_current_method_and_pass_defaults() -> None:
    store = _store()
    seen: list = []
    store.update_variable = lambda *args: (seen.append(args), (A("ok"), []))[1]  # type: ignore[method-assign]
    assert calls.dispatch(store, A("update_variable"), ["s", A("v"), 2.0]) == (A("ok"), [])
    assert seen == [("s", A("v"), 2.0, {})]
    store.get_variable = lambda *args: 1 / 0  # type: ignore[method-assign]
    result, events = calls.dispatch(store, A("get_variable"), ["s", A("v")])
    assert result == (A("error"), (A("internal_error"), "ZeroDivisionError: division by zero")) and events == []
    assert calls.dispatch(store, A("get_variable"), ["s", 1]) == (
        (A("error"), (A("bad_argument"), A("get_variable"), 2, "atom or binary")),
        [],
    )
    result, _ = _in_unit(
        store, calls.dispatch, A("update_variables"), ["s", {A("v"): 4.0}, [(A("atomic"), True), (A("atomic"), False)]]
    )
    assert result[0] is A("ok")


# -- the store's telemetry switch ---------------------------------------------------------


@pytest.mark.parametrize(
    "function, args",
    [
        ("get_variable", ("s", "v")),
        ("get_variable_value", ("s", "v")),
        ("update_variable", ("s", "v", 2.5, {})),
        ("update_variable", ("s", "v", 99.0, {})),  # a constraint violation still reports
        ("get_variables", ("s", ["v", "nope"])),
        ("has_variable", ("s", "v")),
        ("get_variable", ("nope", "v")),
    ],
)
def test_telemetry_off_skips_the_hot_calls_events_and_nothing_else(function: str, args: tuple) -> None:
    from sidecar.store.config import StoreConfig
    from sidecar.store.session_store import SessionStore

    def store(telemetry: bool) -> SessionStore:
        made = SessionStore(StoreConfig(), FakeClock(100))
        made.call("create_session", "s", {})
        made.call("register_variable", "s", A("v"), A("float"), 1.5, {A("constraints"): {A("max"): 10.0}})
        made.telemetry = telemetry
        return made

    on, off = store(True), store(False)
    result_on, events_on = _in_unit(on, lambda store, name, args: getattr(store, function)(*args), A(function), list(args))
    result_off, events_off = _in_unit(off, lambda store, name, args: getattr(store, function)(*args), A(function), list(args))
    assert strictly_equal(codec.decode(codec.encode(result_off)), codec.decode(codec.encode(result_on)))
    kept = [event for event in events_on if event[0][-1] in (A("validation_failed"), A("constraint_violation"))]
    assert list(events_off) == kept  # only the hot events are skipped
    if function != "get_variable" or args[0] == "s":
        assert events_on  # the switch had something to skip


def test_hello_sets_the_stores_telemetry_switch() -> None:
    from sidecar.cli import SidecarOptions
    from sidecar.server import Sidecar

    for telemetry in (False, True):
        sidecar = Sidecar(SidecarOptions())
        assert sidecar.store.telemetry is True
        sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("telemetry"): telemetry})))
        assert sidecar.store.telemetry is telemetry and sidecar.telemetry_enabled is telemetry


# -- the plain update (SessionStore._plain_update) ----------------------------------------

_VARIABLE_KINDS = [  # (type, first value, constraints): all eight types, with and without constraints
    (A("float"), 0.5, {}),
    (A("float"), 0.5, {A("min"): 0, A("max"): 10}),
    (A("integer"), 3, {}),
    (A("string"), "word", {}),
    (A("string"), "word", {A("max_length"): 5}),
    (A("boolean"), False, {}),
    (A("choice"), "a", {}),
    (A("module"), A("Elixir.Mod"), {}),
    (A("embedding"), [0.5, 1.0], {}),
    (A("tensor"), {"shape": [2], "data": [1.0, 2.0]}, {}),
]
update_values_for_store = st.one_of(
    st.sampled_from([1.5, 7, -0.0, 99.0, True, False, None, "word", "longer words", A("a"), A("Elixir.Mod"), [0.5], [1, 2]]),
    st.just({"shape": [2], "data": [3.0, 4.0]}),
    terms,
)


def _plain_update_store(telemetry: bool, optimizing: frozenset, string_typed: frozenset) -> SessionStore:
    store = SessionStore(StoreConfig(), FakeClock(100))
    store.telemetry = telemetry
    store.call("create_session", "s", {})
    for n, (type_atom, value, constraints) in enumerate(_VARIABLE_KINDS):
        result, _ = store.call("register_variable", "s", A(f"v{n}"), type_atom, value, {A("constraints"): constraints})
        assert result[0] is A("ok"), result
        if n in optimizing:
            store.call("start_optimization", "s", A(f"v{n}"), "opt", None)
        if n in string_typed:  # as a struct put back through update_session may hold it
            tx = store.storage.begin()
            fields = list(tx.find_variable("s", f"v{n}").fields())
            fields[2] = type_atom.name
            tx.put_variable("s", VariableRecord(*fields), None)
            tx.commit()
    return store


def _plain(store: SessionStore, ident: Any, value: Any) -> Any:
    """`store._plain_update("s", ident, value)` inside a unit of work."""
    return store.transact(lambda: store._plain_update("s", ident, value), lambda answer: answer is None)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.integers(0, len(_VARIABLE_KINDS) - 1).map(lambda n: A(f"v{n}")),
                st.sampled_from(["v0", "v2", "nope", A("nope"), "var_v0_1", 5]),
            ),
            update_values_for_store,
            st.sampled_from([None, {}, {"source": A("python")}, {"note": 1}]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
    st.frozensets(st.integers(0, len(_VARIABLE_KINDS) - 1), max_size=2),
    st.frozensets(st.integers(0, len(_VARIABLE_KINDS) - 1), max_size=2),
)
def test_plain_update_answers_as_the_general_update(
    updates: list, telemetry: bool, optimizing: frozenset, string_typed: frozenset
) -> None:
    """Same results, events and stored session (every variable, version, metadata and stat)
    with the inlined path as with the general one alone, update after update."""
    fast = _plain_update_store(telemetry, optimizing, string_typed)
    general = _plain_update_store(telemetry, optimizing, string_typed)
    general._plain_update = lambda *args: None  # type: ignore[method-assign]
    for ident, value, metadata in updates:
        got, got_events = fast.call("update_variable", "s", ident, value, metadata)
        want, want_events = general.call("update_variable", "s", ident, value, metadata)
        assert codec.encode(got) == codec.encode(want)
        assert codec.encode(list(got_events)) == codec.encode(list(want_events))
        assert snapshot(fast.storage) == snapshot(general.storage)


def test_plain_update_takes_the_common_update_and_leaves_the_rest() -> None:
    store = _plain_update_store(True, frozenset({5}), frozenset({2}))
    storage = store.storage
    session = storage.get_session("s")
    updates, revision = session.total_variable_updates, session.revision
    assert _plain(store, A("v0"), 2.5) == (
        A("ok"),
        [
            (
                [A("snakepit"), A("session_store"), A("variable"), A("updated")],
                {A("count"): 1, A("version"): 1},
                {A("session_id"): "s", A("type"): A("float")},
            )
        ],
    )
    variable = storage.find_variable("s", "v0")
    assert variable.value == 2.5 and variable.metadata["source"] == "elixir" and "updated_at" in variable.metadata
    assert store.call("update_variable", "s", A("v0"), 3.5, {"source": A("python"), "note": 1})[0] is A("ok")
    variable = storage.find_variable("s", "v0")
    assert variable.metadata["source"] == "python" and variable.metadata["note"] == 1
    assert _plain(store, A("v0"), 4.5)[0] is A("ok")
    variable = storage.find_variable("s", "v0")
    assert variable.metadata["source"] == "elixir" and variable.metadata["note"] == 1  # as the general merge
    assert _plain(store, "v3", "text")[0] is A("ok")  # by name as a binary
    assert _plain(store, variable.id, 3)[0] is A("ok")  # by id, coerced
    variable = storage.find_variable("s", "v0")
    assert variable.value == 3.0
    session = storage.get_session("s")
    assert variable.version == 4 and session.total_variable_updates == updates + 5 and session.revision == revision + 5
    for ident, value in ((A("v0"), "not a float"), (A("v1"), 2.0), (A("v2"), 4), (A("v5"), True), (A("nope"), 1.0), (5, 1.0)):
        # refused, constraints, a type held as a string, optimizing, not found, not an identifier
        assert _plain(store, ident, value) is None


@SETTINGS
@given(st.sampled_from(sorted(types.TYPE_ATOMS, key=lambda a: a.name)), update_values_for_store)
def test_an_empty_constraints_map_never_fails_a_value_its_type_accepts(type_atom: Atom, value: Any) -> None:
    """Why `_check_value` and the plain update skip the constraint check on `%{}`."""
    try:
        coerced = types.coerce(type_atom, value)
    except types.ValidationFailed:
        return
    types.check_constraints(type_atom, coerced, {})


@SETTINGS
@given(st.dictionaries(st.one_of(strings, atoms), st.one_of(st.none(), ints, strings), max_size=4))
def test_updated_metadata_without_given_metadata_is_the_general_merge(metadata: dict) -> None:
    from sidecar.storage.base import VariableRecord

    store = SessionStore(StoreConfig(), FakeClock(100))
    variable = VariableRecord("var_x_1", A("x"), A("float"), 1.0, metadata=metadata)
    shortcut = store._updated_metadata(variable, {})
    general = store._updated_metadata(variable, {"source": None})  # the general branch, same meaning
    assert list(shortcut.items()) == list(general.items())


def test_memory_backend_finds_a_variable_by_id_first_then_by_name() -> None:
    from sidecar.storage.base import SessionRecord
    from sidecar.storage.memory import MemoryStorage

    tx = MemoryStorage().begin()
    tx.insert_session(SessionRecord("s", 0, 0, 3600))
    named = VariableRecord("var_a_1", A("a"), A("float"), 1.0)
    tricky = VariableRecord("a", A("b"), A("float"), 2.0)  # an id that is another's name
    tx.put_variable("s", named, "a")
    tx.put_variable("s", tricky, "b")
    assert tx.find_variable("s", "var_a_1") is named
    assert tx.find_variable("s", "a") is tricky  # the id wins
    assert tx.find_variable("s", "b") is tricky
    assert tx.find_variable("s", "c") is None and tx.find_variable("nope", "a") is None
    tx.commit()
