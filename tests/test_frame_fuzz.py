"""Frame fuzzing: hostile bytes against the protocol machine and against a real sidecar process.

Cases (each a whole frame, header included): random bodies; truncations and byte mutations of
valid frames (calls of every function in the table, hellos, any term); huge integers (as
arguments, as the function, as the id, in bad frames); nesting around and far past the limit;
atom floods (hundreds of new atom names); zlib-compressed terms (ETF tag 80) that are honest,
that lie about their size either way, that would inflate past the frame limit (bombs), or whose
zlib data is broken; bad lengths (0, shorter than a term, over the frame limit with the body
sent, over the limit with a readable call id).

* `ProtocolMachine` directly (pure): every input gives events, never an exception; exactly one
  event per frame, the same however the stream is split; each error event's answer encodes
  and decodes; nothing stays buffered after whole frames; random unframed bytes then end of
  input leave nothing buffered, with `eof_inside_frame` set exactly when a frame was cut.
* a real `python -m sidecar` (one process for the whole run): after each case a health check,
  a ping with an id of its own, must be answered `:pong`, after exactly one answer (a reply or
  a protocol error) per fuzz frame: the process is alive and the framing is in sync. Every
  byte it wrote must decode as frames.
"""

from __future__ import annotations

import itertools
import random
import struct
import zlib
from typing import Any, Iterator

import pytest
from client import SubprocessClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import terms

from sidecar import codec
from sidecar.protocol import HEADER_BYTES, PEEK_BYTES, Call, CallError, Hello, ProtocolError, ProtocolMachine
from sidecar.store import calls
from sidecar.terms import Atom

A = Atom
LIMIT = 65_536  # the frame limit of the machine and the process under fuzz
MAX = codec.MAX_TERM_DEPTH
FUNCTIONS = sorted(name.name for name in calls.CALLS) + ["nope", "update_variable", "get_variable"]


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def call_body(call_id: Any, function: Any, args: Any) -> bytes:
    return codec.encode((A("call"), call_id, function, args))


def big_int_etf(value: int) -> bytes:
    """An integer as LARGE_BIG_EXT (no version byte)."""
    magnitude = abs(value)
    digits = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes((111,)) + len(digits).to_bytes(4, "big") + bytes((1 if value < 0 else 0,)) + digits


def nested_etf(depth: int, leaf: bytes = bytes((97, 1))) -> bytes:
    """`depth` levels of 1-tuples around `leaf`."""
    return bytes((104, 1)) * depth + leaf


def call_with_arg_etf(call_id: int, function: str, arg: bytes) -> bytes:
    name = function.encode()
    return (
        b"\x83\x68\x04\x77\x04call\x62"
        + call_id.to_bytes(4, "big")
        + bytes((119, len(name)))
        + name
        + bytes((108, 0, 0, 0, 1))
        + arg
        + bytes((106,))
    )


def compressed(inner: bytes, declared: int | None = None) -> bytes:
    """131, 80, declared size, zlib(inner) (inner without version byte)."""
    size = len(inner) if declared is None else declared
    return b"\x83\x50" + size.to_bytes(4, "big") + zlib.compress(inner)


# ---------------------------------------------------------------------------------------------
# cases: each draws the bytes of one whole frame


call_ids = st.one_of(st.integers(0, 255), st.integers(0, 2**31 - 1), st.integers(2**31, 2**64), st.just(-1))
valid_bodies = st.one_of(
    st.builds(call_body, call_ids, st.sampled_from(FUNCTIONS).map(A), st.lists(terms, max_size=5)),
    st.builds(
        lambda version, options: codec.encode((A("hello"), version, options)),
        st.integers(0, 3),
        st.dictionaries(
            st.sampled_from([A("telemetry"), A("compact_variables"), A("default_ttl"), "default_ttl", A("x")]), terms, max_size=3
        ),
    ),
    terms.map(codec.encode),
)


@st.composite
def random_body(draw: Any) -> bytes:
    body = draw(st.binary(max_size=200))
    return framed(draw(st.sampled_from([b"", b"\x83"])) + body)


@st.composite
def truncated_valid(draw: Any) -> bytes:
    body = draw(valid_bodies)
    return framed(body[: draw(st.integers(0, max(0, len(body) - 1)))])


@st.composite
def mutated_valid(draw: Any) -> bytes:
    body = bytearray(draw(valid_bodies))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(body) - 1))
        body[position] = draw(st.integers(0, 255))
    return framed(bytes(body))


@st.composite
def huge_integer(draw: Any) -> bytes:
    value = draw(
        st.one_of(
            st.integers(14_000, 60_000).map(lambda bits: (1 << bits) - 1), st.integers(4300, 12_000).map(lambda d: -(10**d))
        )
    )
    big = big_int_etf(value)
    where = draw(st.sampled_from(["arg", "function", "id", "bad_frame", "hello_version", "constraint"]))
    if where == "arg":
        return framed(call_with_arg_etf(draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from(FUNCTIONS)), big))
    if where == "function":
        return framed(b"\x83\x68\x04\x77\x04call\x61\x33" + big + bytes((106,)))
    if where == "id":
        return framed(b"\x83\x68\x04\x77\x04call" + big + bytes((119, 4)) + b"ping" + bytes((106,)))
    if where == "bad_frame":
        return framed(b"\x83\x68\x02\x77\x04nope" + big)
    if where == "hello_version":
        return framed(b"\x83\x68\x03\x77\x05hello" + big + bytes((116, 0, 0, 0, 0)))
    # update_variable(sid, name, huge) on whatever is there
    return framed(
        b"\x83\x68\x04\x77\x04call\x61\x07\x77\x0fupdate_variable"
        + bytes((108, 0, 0, 0, 3))
        + codec.encode("s")[1:]
        + codec.encode(A("n"))[1:]
        + big
        + bytes((106,))
    )


@st.composite
def deep_nesting(draw: Any) -> bytes:
    depth = draw(st.one_of(st.integers(MAX - 3, MAX + 3), st.sampled_from([1_000, 20_000])))
    if draw(st.booleans()):
        return framed(call_with_arg_etf(draw(st.integers(0, 1000)), draw(st.sampled_from(FUNCTIONS)), nested_etf(depth)))
    return framed(b"\x83" + nested_etf(depth))


@st.composite
def atom_flood(draw: Any) -> bytes:
    count = draw(st.integers(100, 2000))
    salt = draw(st.integers(0, 2**32))
    names = [f"f{salt}_{i}".encode() for i in range(count)]
    atoms = b"".join(bytes((119, len(name))) + name for name in names)
    atom_list = bytes((108,)) + count.to_bytes(4, "big") + atoms + bytes((106,))
    if draw(st.booleans()):
        return framed(call_with_arg_etf(draw(st.integers(0, 1000)), draw(st.sampled_from(FUNCTIONS)), atom_list))
    return framed(b"\x83" + atom_list)


@st.composite
def compressed_term(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["honest", "claims_less", "claims_more", "bomb", "over_limit_claim", "broken", "zero"]))
    count = draw(st.integers(1, 20_000))
    inner_kind = draw(st.sampled_from(["nils", "zeros", "call"]))
    if inner_kind == "nils":  # the worst ratio of memory to bytes: a list of []
        inner = bytes((108,)) + count.to_bytes(4, "big") + bytes((106,)) * count + bytes((106,))
    elif inner_kind == "zeros":
        inner = bytes((109,)) + count.to_bytes(4, "big") + bytes(count)
    else:
        inner = call_body(draw(st.integers(0, 1000)), A("ping"), [])[1:]
    if kind == "honest":
        return framed(compressed(inner))
    if kind == "claims_less":
        return framed(compressed(inner, max(1, len(inner) - draw(st.integers(1, 100)))))
    if kind == "claims_more":
        return framed(compressed(inner, len(inner) + draw(st.integers(1, 100))))
    if kind == "bomb":  # inflates to far more than the frame limit, and says so
        bomb = bytes((109,)) + (LIMIT * 64).to_bytes(4, "big") + bytes(LIMIT * 64)
        return framed(compressed(bomb))
    if kind == "over_limit_claim":  # says 4 GB, holds little
        return framed(compressed(inner, 2**32 - 1))
    if kind == "zero":
        return framed(b"\x83\x50" + bytes(4) + zlib.compress(inner))
    data = bytearray(compressed(inner))
    data[draw(st.integers(6, len(data) - 1))] ^= 0xFF
    return framed(bytes(data))


@st.composite
def bad_length(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["empty", "tiny", "over_limit", "over_limit_with_id"]))
    if kind == "empty":
        return struct.pack(">I", 0)
    if kind == "tiny":
        body = draw(st.binary(min_size=1, max_size=3))
        return framed(body)
    size = LIMIT + draw(st.integers(1, 3 * PEEK_BYTES))
    if kind == "over_limit":
        return struct.pack(">I", size) + (draw(st.binary(min_size=1, max_size=16)) * size)[:size]
    prefix = call_body(draw(st.integers(0, 2**31 - 1)), A("store_program"), ["s"])[:-1]
    body = (prefix + bytes(size))[:size]
    return struct.pack(">I", size) + body


cases = st.one_of(
    random_body(),
    truncated_valid(),
    mutated_valid(),
    huge_integer(),
    deep_nesting(),
    atom_flood(),
    compressed_term(),
    bad_length(),
)


def frames_in(stream: bytes) -> int:
    """How many whole frames `stream` holds (all of it must be whole frames)."""
    count = offset = 0
    while offset < len(stream):
        (size,) = struct.unpack_from(">I", stream, offset)
        offset += HEADER_BYTES + size
        count += 1
    assert offset == len(stream)
    return count


# ---------------------------------------------------------------------------------------------
# the protocol machine


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.lists(cases, min_size=1, max_size=4), st.data())
def test_the_machine_answers_every_frame_once_however_it_is_split(frames: list[bytes], data: Any) -> None:
    stream = b"".join(frames)
    whole_machine = ProtocolMachine(LIMIT)
    whole = whole_machine.receive_data(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    split_machine = ProtocolMachine(LIMIT)
    split: list = []
    previous = 0
    for cut in cuts + [len(stream)]:
        if cut > previous:
            split.extend(split_machine.receive_data(stream[previous:cut]))
            previous = cut
        assert split_machine.buffered_bytes <= HEADER_BYTES + LIMIT
    assert len(whole) == len(frames) == frames_in(stream)
    assert [type(e) for e in split] == [type(e) for e in whole]
    assert [_reason(e) for e in split] == [_reason(e) for e in whole]
    for machine in (whole_machine, split_machine):
        assert machine.buffered_bytes == 0
        assert machine.receive_data(b"") == []
        assert machine.eof_inside_frame is None
    for event in whole:
        assert isinstance(event, (Call, CallError, ProtocolError, Hello))
        if isinstance(event, (CallError, ProtocolError)):
            answer = whole_machine.answer(event)
            assert frames_in(answer) == 1
            codec.decode(answer[4:])


def _reason(event: Any) -> Any:
    if isinstance(event, (CallError, ProtocolError)):
        return codec.encode(event.reason) if not isinstance(event, ProtocolError) else codec.encode(event.reason)
    if isinstance(event, Call):
        return (event.id, event.function, codec.encode(event.args))
    return event


@FUZZ
@given(st.binary(max_size=600), st.data())
def test_unframed_random_bytes_then_end_of_input_never_raise(stream: bytes, data: Any) -> None:
    machine = ProtocolMachine(LIMIT)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    events: list = []
    previous = 0
    for cut in cuts + [len(stream)]:
        if cut > previous:
            events.extend(machine.receive_data(stream[previous:cut]))
            previous = cut
    pending = machine.buffered_bytes > 0 or machine._skip_remaining > 0
    events.extend(machine.receive_data(b""))
    assert machine.buffered_bytes == 0
    assert (machine.eof_inside_frame is not None) == pending
    for event in events:
        if isinstance(event, (CallError, ProtocolError)):
            codec.decode(machine.answer(event)[4:])


# ---------------------------------------------------------------------------------------------
# a real process


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[SubprocessClient]:
    client = SubprocessClient("--max-frame-bytes", str(LIMIT), "--log-level", "error", test_calls=False, timeout=20)
    assert client.call("create_session", "s")[0] is A("ok")
    assert client.call("register_variable", "s", A("n"), A("integer"), 0, [(A("constraints"), {A("max"): 10})])[0] is A("ok")
    yield client
    client.close()


_health_ids = itertools.count(2**40)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(st.lists(cases, min_size=1, max_size=3))
def test_a_real_sidecar_survives_every_case_and_stays_in_sync(fuzzed: SubprocessClient, frames: list[bytes]) -> None:
    fuzzed.send_raw(b"".join(frames))
    health = next(_health_ids)
    fuzzed.send_call(A("ping"), call_id=health)
    answers = 0
    while True:
        term = fuzzed.read_frame()  # decodes: a frame the codec cannot read fails the test
        tag = term[0]
        if tag is A("reply") and term[1] == health:
            assert term[2] is A("pong")
            break
        if tag in (A("reply"), A("protocol_error"), A("welcome")):
            answers += 1
        else:
            assert tag in (A("log"), A("telemetry")), term
    assert answers == len(frames)
    assert fuzzed.process.poll() is None


def test_every_byte_the_fuzzed_sidecar_wrote_is_a_frame(fuzzed: SubprocessClient) -> None:
    # (runs after the fuzz in this module: the whole of stdout so far)
    assert fuzzed.call("ping") is A("pong")
    assert frames_in(bytes(fuzzed.raw_stdout)) > 0


def test_a_compressed_bomb_is_refused_without_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self) -> None:
            self._inner = real()
            self.eof = False
            self.unconsumed_tail = b""
            self.unused_data = b""

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._inner.decompress(data, max_length)
            inflated.append(len(out))
            self.eof, self.unconsumed_tail, self.unused_data = (
                self._inner.eof,
                self._inner.unconsumed_tail,
                self._inner.unused_data,
            )
            return out

    monkeypatch.setattr(codec.zlib, "decompressobj", Counting)
    # 4 MB of zeros: under codec's own 64 MB bound, over this machine's frame limit
    bomb = bytes((109,)) + (LIMIT * 64).to_bytes(4, "big") + bytes(LIMIT * 64)
    machine = ProtocolMachine(LIMIT)
    (event,) = machine.receive_data(framed(compressed(bomb)))
    assert isinstance(event, ProtocolError) and event.reason is A("decode_error")
    assert "would expand to" in event.message
    assert inflated == []  # refused on its declared size
    liar = compressed(bomb, declared=LIMIT)  # claims to fit: inflation stops at the claim
    (event,) = machine.receive_data(framed(liar))
    assert event.reason is A("decode_error") and sum(inflated) <= LIMIT + 1


def test_random_seeded_soak_of_mixed_cases_through_the_machine() -> None:
    # a fixed-seed stream of 2,000 cases fed in odd-sized chunks: one event per frame
    rng = random.Random(1405)
    machine = ProtocolMachine(LIMIT)
    frames = []
    for n in range(2000):
        body = bytearray(call_body(n, A(rng.choice(FUNCTIONS)), [rng.randint(-(2**70), 2**70), "x" * rng.randint(0, 50)]))
        for _ in range(rng.randint(0, 3)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        frames.append(framed(bytes(body)))
    stream = b"".join(frames)
    events: list = []
    offset = 0
    while offset < len(stream):
        step = rng.randint(1, 5000)
        events.extend(machine.receive_data(stream[offset : offset + step]))
        offset += step
    assert len(events) == 2000 and machine.buffered_bytes == 0
