"""Tests for sidecar.codec: encoding choices, errors, round trips, the erlang-py oracle, the BEAM."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import erlang
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.codec import (
    DecodeError,
    EncodeError,
    decode,
    decode_via_erlang_py,
    encode,
    encode_frame,
    encode_via_erlang_py,
    peek_call_id,
)
from sidecar.terms import (
    Atom,
    BitString,
    ImproperList,
    ListKey,
    MapKey,
    Opaque,
    StrictKey,
    hashable_key,
)

A = Atom
FIXTURES = Path(__file__).parent / "fixtures"


# ---------------------------------------------------------------------------------------------
# A comparison stricter than ==: 1 / 1.0 / True, str / Atom, -0.0 / 0.0 all differ
# ---------------------------------------------------------------------------------------------


def strictly_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is MapKey:
        return len(a) == len(b) and _pairs_match(list(a), list(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and _pairs_match(list(a.items()), list(b.items()))
    if type(a) is StrictKey:
        return strictly_equal(a.value, b.value)
    if type(a) is ImproperList:
        return strictly_equal(a.items, b.items) and strictly_equal(a.tail, b.tail)
    if type(a) is BitString:
        return a.data == b.data and a.bits == b.bits
    if type(a) is Opaque:
        return a.kind == b.kind and a.etf == b.etf
    if type(a) is Atom:
        return a is b
    return a == b


def _pairs_match(left: list, right: list) -> bool:
    remaining = list(right)
    for key, value in left:
        for index, (other_key, other_value) in enumerate(remaining):
            if strictly_equal(key, other_key) and strictly_equal(value, other_value):
                del remaining[index]
                break
        else:
            return False
    return not remaining


def test_strictly_equal_tells_apart_what_elixir_tells_apart() -> None:
    assert strictly_equal({1: "a", StrictKey(1.0): "b"}, {StrictKey(1.0): "b", 1: "a"})
    assert not strictly_equal(1, 1.0)
    assert not strictly_equal(True, 1)
    assert not strictly_equal("a", A("a"))
    assert not strictly_equal(0.0, -0.0)
    assert not strictly_equal([1], (1,))
    assert not strictly_equal({1: "a"}, {1.0: "a"})


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies for Elixir-shaped native terms
# ---------------------------------------------------------------------------------------------

NODE = bytes((119, 13)) + b"nonode@nohost"
OPAQUES = [
    Opaque("pid", bytes((88,)) + NODE + bytes(range(12))),
    Opaque("ref", bytes((90, 0, 3)) + NODE + bytes(range(16))),
    Opaque("port", bytes((89,)) + NODE + bytes(range(8))),
    Opaque("port", bytes((120,)) + NODE + bytes(range(12))),
    Opaque("fun", bytes((113, 119, 4)) + b"Enum" + bytes((119, 3)) + b"map" + bytes((97, 2))),
]


def canonical_binary(raw: bytes) -> str | bytes:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def make_bitstring(data: bytes, bits: int) -> BitString:
    mask = (0xFF << (8 - bits)) & 0xFF
    return BitString(data[:-1] + bytes((data[-1] & mask,)), bits)


def build_map(pairs: list[tuple[Any, Any]]) -> dict:
    """A dict as decode() gives it: a key Python would merge with an earlier one is wrapped."""
    mapping: dict = {}
    for key, value in pairs:
        if key not in mapping:
            mapping[key] = value
            continue
        existing = next(k for k in mapping if k == key)
        if strictly_equal(existing, key) or StrictKey(key) in mapping:
            continue
        mapping[StrictKey(key)] = value
    return mapping


atom_names = st.one_of(
    st.sampled_from(["ok", "error", "undefined", "Elixir.Foo", "", "héllo", "日本", "nil_", "a b", "é" * 200]),
    st.text(max_size=12),
).filter(lambda name: name not in ("nil", "true", "false"))
atoms = atom_names.map(Atom)
strings = st.one_of(st.sampled_from(["nil", "undefined", "true", "ok", ""]), st.text(max_size=12))
binaries = st.binary(max_size=12).map(canonical_binary)
ints = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.builds(
        lambda bits, sign, low: sign * (2**bits + low), st.integers(0, 2100), st.sampled_from([1, -1]), st.integers(0, 2**32)
    ),
    st.sampled_from([0, 255, 256, -1, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**64]),
)
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([42.0, -0.0, 0.0, 5e-324]))
bitstrings = st.builds(make_bitstring, st.binary(min_size=1, max_size=4), st.integers(1, 7))
byte_lists = st.lists(st.integers(0, 255), min_size=1, max_size=8)
colliding_keys = st.sampled_from([1, 1.0, True, 0, 0.0, -0.0, False])

leaves = st.one_of(
    st.none(),
    st.booleans(),
    atoms,
    strings,
    binaries,
    ints,
    floats,
    bitstrings,
    st.sampled_from(OPAQUES),
    byte_lists,
)


def extend(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(colliding_keys, children.map(hashable_key))
    not_a_list = children.filter(lambda t: type(t) not in (list, ImproperList))
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.builds(ImproperList, st.lists(children, min_size=1, max_size=3), not_a_list),
        st.lists(st.tuples(keys, children), max_size=5).map(build_map),
    )


terms = st.recursive(leaves, extend, max_leaves=16)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def has_erlang_py_limits(term: Any) -> bool:
    """Terms that erlang-py cannot decode faithfully: colliding keys and maps inside keys."""
    if isinstance(term, (StrictKey, MapKey)):
        return True
    if isinstance(term, dict):
        return any(has_erlang_py_limits(k) or has_erlang_py_limits(v) for k, v in term.items())
    if isinstance(term, (list, tuple)):
        return any(has_erlang_py_limits(t) for t in term)
    if isinstance(term, ImproperList):
        return has_erlang_py_limits(term.items) or has_erlang_py_limits(term.tail)
    return False


# ---------------------------------------------------------------------------------------------
# Round trips and agreement with the erlang-py path
# ---------------------------------------------------------------------------------------------


@FAST
@given(terms)
def test_round_trip_is_exact(term: Any) -> None:
    assert strictly_equal(decode(encode(term)), term)


@FAST
@given(terms)
def test_fast_and_erlang_py_encoders_write_the_same_bytes(term: Any) -> None:
    assert encode(term) == encode_via_erlang_py(term)


@FAST
@given(terms)
def test_erlang_py_decoder_agrees_where_it_can(term: Any) -> None:
    data = encode(term)
    if has_erlang_py_limits(term):
        try:
            decode_via_erlang_py(data)
        except DecodeError:
            pass  # erlang-py fails on some key shapes: only ever as DecodeError
    else:
        assert strictly_equal(decode_via_erlang_py(data), term)


def test_erlang_py_path_merges_colliding_keys_which_the_fast_path_keeps() -> None:
    data = encode({1: A("a"), StrictKey(1.0): A("b"), StrictKey(True): A("c")})
    assert len(decode(data)) == 3
    assert len(decode_via_erlang_py(data)) == 1  # the documented limit of the erlang-py path


def test_erlang_py_path_does_not_depend_on_set_undefined() -> None:
    data = encode([None, A("undefined"), A("nil_")])
    expected = [None, A("undefined"), A("nil_")]
    saved = erlang._UNDEFINED
    try:
        erlang.set_undefined(b"nil")
        assert strictly_equal(decode_via_erlang_py(data), expected)
        assert encode_via_erlang_py(expected) == data
    finally:
        erlang.set_undefined(saved)
    assert strictly_equal(decode_via_erlang_py(data), expected)


# ---------------------------------------------------------------------------------------------
# Encoding choices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("abc", bytes((109, 0, 0, 0, 3)) + b"abc"),
        (b"\xff", bytes((109, 0, 0, 0, 1, 255))),
        (A("ok"), bytes((119, 2)) + b"ok"),
        (None, bytes((119, 3)) + b"nil"),
        (True, bytes((119, 4)) + b"true"),
        (False, bytes((119, 5)) + b"false"),
        (7, bytes((97, 7))),
        (-1, bytes((98, 255, 255, 255, 255))),
        (256, bytes((98, 0, 0, 1, 0))),
        (2**31, bytes((110, 4, 0, 0, 0, 0, 128))),
        (-(2**32), bytes((110, 5, 1, 0, 0, 0, 0, 1))),
        (42.0, bytes((70,)) + struct.pack(">d", 42.0)),
        ([], bytes((106,))),
        ([1, 2], bytes((107, 0, 2, 1, 2))),
        ([1, 256], bytes((108, 0, 0, 0, 2, 97, 1, 98, 0, 0, 1, 0, 106))),
        ([True], bytes((108, 0, 0, 0, 1, 119, 4)) + b"true" + bytes((106,))),
        ((1, 2), bytes((104, 2, 97, 1, 97, 2))),
        ({A("a"): 1}, bytes((116, 0, 0, 0, 1, 119, 1, 97, 97, 1))),
        (ImproperList([1], 2), bytes((108, 0, 0, 0, 1, 97, 1, 97, 2))),
        (BitString(b"\x20", 3), bytes((77, 0, 0, 0, 1, 3, 0x20))),
        ({ListKey([1]): 2}, bytes((116, 0, 0, 0, 1, 107, 0, 1, 1, 97, 2))),
        ({MapKey(((A("a"), 1),)): 2}, bytes((116, 0, 0, 0, 1, 116, 0, 0, 0, 1, 119, 1, 97, 97, 1, 97, 2))),
        ({1: 2, StrictKey(1.0): 3}, bytes((116, 0, 0, 0, 2, 97, 1, 97, 2, 70)) + struct.pack(">d", 1.0) + bytes((97, 3))),
        (OPAQUES[0], OPAQUES[0].etf),
    ],
)
def test_encoding_choices(term: Any, expected: bytes) -> None:
    assert encode(term) == b"\x83" + expected


def test_long_atoms_and_large_containers_use_their_large_tags() -> None:
    assert encode(A("é" * 200))[1:4] == bytes((118, 1, 144))  # 400 bytes: ATOM_UTF8_EXT
    assert encode(2**2100)[1] == 111
    assert encode(tuple(range(300)))[1:6] == bytes((105, 0, 0, 1, 44))
    assert encode([1] * 70000)[1] == 108


def test_subclasses_encode_as_their_base_type() -> None:
    import enum
    from collections import OrderedDict

    class Color(enum.IntEnum):
        RED = 1

    assert encode(Color.RED) == encode(1)
    assert encode(OrderedDict(a=1)) == encode({"a": 1})
    assert encode(bytearray(b"x")) == encode(b"x")


def test_encode_frame_prefixes_the_length() -> None:
    payload = encode((A("reply"), 1, A("ok")))
    assert encode_frame((A("reply"), 1, A("ok"))) == len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize(
    "term",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        [1, float("nan")],
        object(),
        {1, 2},
        A("x" * 256),
        "\ud800",
        BitString(b"", 3),
        BitString(b"\x00", 0),
        {A("k"): object()},
    ],
)
def test_unencodable_terms_raise_encode_error(term: Any) -> None:
    with pytest.raises(EncodeError):
        encode(term)
    with pytest.raises(EncodeError):
        encode_via_erlang_py(term)


def test_too_deep_nesting_is_an_encode_error() -> None:
    term: Any = []
    for _ in range(100_000):
        term = [term]
    with pytest.raises(EncodeError):
        encode(term)


# ---------------------------------------------------------------------------------------------
# Decoding details
# ---------------------------------------------------------------------------------------------


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode({"a": [1, 2.5]})
    assert strictly_equal(decode(bytearray(data)), {"a": [1, 2.5]})
    assert strictly_equal(decode(memoryview(data)), {"a": [1, 2.5]})


@pytest.mark.parametrize(
    ("etf", "expected"),
    [
        (bytes((100, 0, 5)) + "héllo".encode("latin-1"), A("héllo")),  # ATOM_EXT, latin-1
        (bytes((115, 3)) + b"nil", None),  # SMALL_ATOM_EXT
        (bytes((100, 0, 4)) + b"true", True),
        (bytes((118, 0, 2)) + b"ok", A("ok")),
        (bytes((107, 0, 3)) + b"abc", [97, 98, 99]),  # STRING_EXT is a list of ints
        (bytes((108, 0, 0, 0, 1, 97, 1, 107, 0, 1, 65)), [1, 65]),  # list tail spliced in
        (bytes((108, 0, 0, 0, 0, 97, 1)), 1),  # [ | 1] is 1, as the BEAM reads it
        (bytes((77, 0, 0, 0, 1, 1, 255)), BitString(b"\x80", 1)),  # unused bits zeroed
        (bytes((77, 0, 0, 0, 1, 8, 65)), "A"),
        (bytes((77, 0, 0, 0, 0, 0)), ""),
        (bytes((110, 1, 2, 5)), -5),  # any non-zero sign is negative
        (bytes((99,)) + b"1.50000000000000000000e+00".ljust(31, b"\x00"), 1.5),  # FLOAT_EXT
        (
            bytes((116, 0, 0, 0, 2, 70)) + struct.pack(">d", 0.0) + bytes((97, 1, 70)) + struct.pack(">d", -0.0) + bytes((97, 2)),
            {0.0: 1, StrictKey(-0.0): 2},
        ),
    ],
)
def test_decodes_old_and_unusual_encodings(etf: bytes, expected: Any) -> None:
    assert strictly_equal(decode(b"\x83" + etf), expected)


def test_colliding_map_keys_keep_apart_with_strict_key() -> None:
    data = (
        b"\x83"
        + bytes((116, 0, 0, 0, 3, 97, 1, 97, 10, 70))
        + struct.pack(">d", 1.0)
        + bytes((97, 11, 119, 4))
        + b"true"
        + bytes((97, 12))
    )
    assert strictly_equal(decode(data), {1: 10, StrictKey(1.0): 11, StrictKey(True): 12})


def test_compressed_terms_decode() -> None:
    inner = encode({"data": "abc" * 1000})[1:]
    data = b"\x83\x50" + len(inner).to_bytes(4, "big") + zlib.compress(inner)
    assert strictly_equal(decode(data), {"data": "abc" * 1000})
    assert strictly_equal(decode_via_erlang_py(data), {"data": "abc" * 1000})


def test_compressed_terms_are_bounded() -> None:
    inner = encode("x" * 100_000)[1:]
    honest = b"\x83\x50" + len(inner).to_bytes(4, "big") + zlib.compress(inner)
    with pytest.raises(DecodeError):
        decode(honest, max_uncompressed_size=10_000)
    with pytest.raises(DecodeError):
        decode_via_erlang_py(honest, max_uncompressed_size=10_000)
    lying = b"\x83\x50" + (100).to_bytes(4, "big") + zlib.compress(inner)  # expands past its size
    with pytest.raises(DecodeError):
        decode(lying)
    with pytest.raises(DecodeError):
        decode_via_erlang_py(lying)


def _nested(depth: int) -> bytes:
    return b"\x83" + b"\x68\x01" * depth + b"\x6a"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x83",
        b"\x82\x61\x01",  # wrong version
        b"\x83\x61\x01\x00",  # trailing byte
        b"\x83\x01",  # unknown tag
        b"\x83\x6d\x00\x00\x00\x05ab",  # truncated binary
        b"\x83\x77\x02\xff\xfe",  # invalid UTF-8 atom
        b"\x83\x76\x01\x00" + b"a" * 256,  # atom over 255 characters
        b"\x83\x6c\xff\xff\xff\xff\x6a",  # absurd list length
        b"\x83\x69\xff\xff\xff\xff",  # absurd tuple arity
        b"\x83\x74\xff\xff\xff\xff",  # absurd map size
        b"\x83\x6f\xff\xff\xff\xff\x00\x01",  # absurd bignum
        b"\x83\x46\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\x83\x46\x7f\xf0\x00\x00\x00\x00\x00\x00",  # infinity
        b"\x83\x4e\x01",  # atom cache reference
        b"\x83\x50\x00\x00\x00\x05garbage",  # bad zlib
        b"\x83\x50\x00\x00\x00\x00",  # compressed, size 0
        b"\x83\x68\x01\x50\x00\x00\x00\x01\x00",  # nested compressed
        b"\x83\x4d\x00\x00\x00\x01\x00\x41",  # bitstring with 0 bits
        b"\x83\x58\x61\x01" + bytes(12),  # pid whose node is not an atom
        _nested(100_000),
    ],
)
def test_malformed_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)
    with pytest.raises(DecodeError):
        decode_via_erlang_py(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x83\x74\x00\x00\x00\x02\x61\x01\x61\x01\x61\x01\x61\x02",  # duplicate key
        b"\x83\x63" + b"1_0.0".ljust(31, b"\x00"),  # FLOAT_EXT not in Erlang's format
    ],
)
def test_malformed_input_that_only_the_fast_path_rejects(data: bytes) -> None:
    # erlang-py lets a later duplicate key win and parses FLOAT_EXT with Python's float()
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_rejects_non_bytes_with_type_error() -> None:
    with pytest.raises(TypeError):
        decode("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Malformed input only ever raises DecodeError
# ---------------------------------------------------------------------------------------------


def _only_decode_errors(data: bytes) -> None:
    for decoder in (decode, decode_via_erlang_py):
        try:
            result = decoder(data)
        except DecodeError:
            continue
        encode(result)  # whatever decodes must encode again


@FAST
@given(terms, st.data())
def test_truncations_raise_decode_error(term: Any, data: st.DataObject) -> None:
    encoded = encode(term)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode(encoded[:cut])
    with pytest.raises(DecodeError):
        decode_via_erlang_py(encoded[:cut])


@FAST
@given(terms, st.data())
def test_byte_flips_raise_only_decode_error(term: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(term))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(1, len(encoded) - 1)) if len(encoded) > 1 else 0
        encoded[position] = data.draw(st.integers(0, 255))
    _only_decode_errors(bytes(encoded))


@FAST
@given(st.binary(max_size=40))
def test_garbage_raises_only_decode_error(garbage: bytes) -> None:
    _only_decode_errors(b"\x83" + garbage)
    _only_decode_errors(garbage)


# ---------------------------------------------------------------------------------------------
# peek_call_id
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call_id", [0, 17, 255, 256, 2**31 - 1, 2**31, 2**64 + 5])
def test_peek_call_id_reads_the_id_of_a_call(call_id: int) -> None:
    frame = encode((A("call"), call_id, A("get_variable"), ["session_1", A("temp")]))
    assert peek_call_id(frame) == call_id
    assert peek_call_id(frame[:24]) == call_id


def test_peek_call_id_reads_otp24_atom_ext() -> None:
    prefix = b"\x83\x68\x04\x64\x00\x04call\x62\x00\x00\x01\x00"
    assert peek_call_id(prefix) == 256


@pytest.mark.parametrize(
    "prefix",
    [
        encode((A("call"), 17, A("f"), []))[:8],  # cut before the id
        encode((A("call"), 300, A("f"), []))[:10],  # cut inside the id
        encode((A("cast"), 17, A("f"), [])),
        encode((A("call"), 17, A("f"))),
        encode((A("call"), "17", A("f"), [])),
        encode([A("call"), 17]),
        b"",
        b"\x00\x01",
    ],
)
def test_peek_call_id_says_none_when_it_cannot_tell(prefix: bytes) -> None:
    assert peek_call_id(prefix) is None


# ---------------------------------------------------------------------------------------------
# Fidelity against the real BEAM
# ---------------------------------------------------------------------------------------------


def variable_reply() -> Any:
    variable = {
        A("__struct__"): A("Elixir.Snakepit.Bridge.Variables.Variable"),
        A("id"): "var_temp_123",
        A("name"): A("temp"),
        A("type"): A("float"),
        A("value"): 0.7,
        A("constraints"): {A("min"): 0.0, A("max"): 2.0},
        A("metadata"): {"source": "elixir", "created_by": "session_store"},
        A("version"): 3,
        A("created_at"): -576460750,
        A("last_updated_at"): -576460740,
        A("optimization_status"): {
            A("optimizing"): False,
            A("optimizer_id"): None,
            A("optimizer_pid"): None,
            A("started_at"): None,
        },
        A("access_rules"): [],
    }
    return (A("reply"), 17, (A("ok"), variable))


# The native form of each term in `shared_cases` of tests/fixtures/elixir_terms.exs.
EXPECTED: dict[str, Any] = {
    "atom_ok": A("ok"),
    "nil": None,
    "true": True,
    "false": False,
    "atom_undefined": A("undefined"),
    "atom_latin1": A("héllo"),
    "atom_utf8": A("日本語"),
    "atom_long_utf8": A("é" * 200),
    "atom_empty": A(""),
    "atom_module": A("Elixir.Snakepit.Bridge.Variables.Variable"),
    "binary_abc": "abc",
    "binary_nil_text": "nil",
    "binary_empty": "",
    "binary_unicode": "héllo ✓ 日本",
    "binary_not_utf8": b"\xff\x00\x80",
    "binary_large": "x" * 70_000,
    "charlist": [97, 98, 99],
    "list_empty": [],
    "list_ints": [1, 256, -1],
    "list_long_bytes": [7] * 70_000,
    "list_mixed": [A("a"), "b", 3, 4.0, None],
    "float_42": 42.0,
    "float_neg_zero": -0.0,
    "float_small": 1.0e-5,
    "float_max": 1.7976931348623157e308,
    "float_denormal": 5.0e-324,
    "float_neg": -2.5,
    "int_0": 0,
    "int_255": 255,
    "int_256": 256,
    "int_neg1": -1,
    "int32_max": 2**31 - 1,
    "int32_min": -(2**31),
    "int32_over": 2**31,
    "int32_under": -(2**31) - 1,
    "int_2_64": 2**64,
    "int_neg_2_200": -(2**200),
    "int_large_big": 2**2100 + 1,
    "tuple_empty": (),
    "tuple_ok": (A("ok"), 1),
    "tuple_large": tuple(range(300)),
    "map_empty": {},
    "map_1_1.0": {1: A("a"), StrictKey(1.0): A("b")},
    "map_1_1.0_true": {1: A("a"), StrictKey(1.0): A("b"), StrictKey(True): A("c")},
    "map_0_false": {0: A("a"), StrictKey(False): A("b")},
    "map_atom_vs_string": {A("a"): 1, "a": 2},
    "map_nil_key": {None: 1, "nil": 2, A("undefined"): 3},
    "map_list_key": {ListKey([1, 2]): A("x"), ListKey([A("a")]): A("y")},
    "map_map_key": {MapKey(((A("a"), 1),)): A("y")},
    "map_tuple_key": {(A("a"), ListKey([1])): A("z")},
    "map_big": {A(f"k{i}"): i for i in range(1, 41)},
    "improper": ImproperList([1], 2),
    "improper_long": ImproperList([1, 2], A("a")),
    "bitstring": BitString(bytes((0b00100000,)), 3),
    "bitstring_long": BitString(bytes((255, 7 << 3)), 5),
    "nested": {"list": [{A("a"): (1, [2.5, "x"])}], None: [None]},
    "variable_reply": variable_reply(),
    "call_request": (A("call"), 17, A("get_variable"), ["session_1", A("temp")]),
}
ERLANG_PY_CANNOT = {"map_1_1.0", "map_1_1.0_true", "map_0_false"}


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], dict[str, str]]:
    """Run the fixture script once: BEAM-encoded terms by name, and its verdicts on ours."""
    elixir = shutil.which("elixir")
    if elixir is None:
        pytest.skip("`elixir` is not on PATH: cannot check fidelity against the real BEAM")
    workdir = tmp_path_factory.mktemp("elixir_terms")
    python_terms = workdir / "elixir_terms.python.txt"
    beam_terms = workdir / "elixir_terms.beam.txt"
    with python_terms.open("w") as out:
        for name, term in EXPECTED.items():
            out.write(f"fast:{name} {encode(term).hex()}\n")
            out.write(f"erlang_py:{name} {encode_via_erlang_py(term).hex()}\n")
    result = subprocess.run(
        [elixir, str(FIXTURES / "elixir_terms.exs"), str(beam_terms), str(python_terms)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        env={**os.environ, "ELIXIR_ERL_OPTIONS": "+fnu"},
    )
    assert result.returncode == 0 and "DONE" in result.stdout, result.stdout + result.stderr
    verdicts: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith(("PY_OK ", "PY_FAIL ")):
            status, label, *detail = line.split(" ", 2)
            verdicts[label] = status if status == "PY_OK" else f"{status} {' '.join(detail)}"
    encoded: dict[str, bytes] = {}
    for line in beam_terms.read_text().splitlines():
        name, hex_data = line.split(" ", 1)
        encoded[name] = bytes.fromhex(hex_data)
    return encoded, verdicts


def test_beam_accepts_every_python_encoding(beam_run: tuple[dict[str, bytes], dict[str, str]]) -> None:
    _, verdicts = beam_run
    expected_labels = {f"{encoder}:{name}" for name in EXPECTED for encoder in ("fast", "erlang_py")}
    assert set(verdicts) == expected_labels
    failures = {label: verdict for label, verdict in verdicts.items() if verdict != "PY_OK"}
    assert not failures


def test_python_decodes_every_beam_encoding(beam_run: tuple[dict[str, bytes], dict[str, str]]) -> None:
    encoded, _ = beam_run
    assert set(EXPECTED) <= set(encoded)
    mismatches = [name for name in EXPECTED if not strictly_equal(decode(encoded[name]), EXPECTED[name])]
    assert not mismatches
    oracle_mismatches = [
        name
        for name in EXPECTED
        if name not in ERLANG_PY_CANNOT and not strictly_equal(decode_via_erlang_py(encoded[name]), EXPECTED[name])
    ]
    assert not oracle_mismatches


def test_python_decodes_beam_only_encodings(beam_run: tuple[dict[str, bytes], dict[str, str]]) -> None:
    encoded, _ = beam_run
    assert encoded["compressed"][1] == 80
    assert strictly_equal(decode(encoded["compressed"]), {"data": "abc" * 1000, A("list"): list(range(1, 501))})
    assert encoded["float_old_format"][1] == 99
    assert strictly_equal(decode(encoded["float_old_format"]), 3.25)
    assert encoded["atom_utf8_tag"][1] == 119
    assert decode(encoded["atom_utf8_tag"]) is A("héllo")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("opaque_pid", "pid"),
        ("opaque_ref", "ref"),
        ("opaque_port", "port"),
        ("opaque_export", "fun"),
        ("opaque_fun", "fun"),
    ],
)
def test_beam_pids_refs_ports_funs_are_carried_verbatim(
    beam_run: tuple[dict[str, bytes], dict[str, str]], name: str, kind: str
) -> None:
    data = beam_run[0][name]
    term = decode(data)
    assert isinstance(term, Opaque) and term.kind == kind
    assert encode(term) == data
    assert decode_via_erlang_py(data).kind == kind


def test_opaques_inside_containers_re_encode_identically(beam_run: tuple[dict[str, bytes], dict[str, str]]) -> None:
    data = beam_run[0]["opaque_in_tuple"]
    term = decode(data)
    assert term[0] is A("ok") and [t.kind for t in term[1:]] == ["pid", "ref"]
    # :ok may be re-encoded with another atom tag (OTP 24 writes ATOM_EXT); the pid and ref not
    assert all(opaque.etf in data and encode(opaque) == b"\x83" + opaque.etf for opaque in term[1:])
    assert strictly_equal(decode(encode(term)), term)


def test_corrupted_beam_encodings_raise_only_decode_error(beam_run: tuple[dict[str, bytes], dict[str, str]]) -> None:
    rng = random.Random(1234)
    for _name, data in beam_run[0].items():
        if len(data) > 5000:
            continue
        for _ in range(20):
            corrupted = bytearray(data)
            corrupted[rng.randrange(1, len(data))] = rng.randrange(256)
            _only_decode_errors(bytes(corrupted))
            _only_decode_errors(data[: rng.randrange(len(data))])
