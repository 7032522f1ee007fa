"""One nesting limit (`codec.MAX_TERM_DEPTH`) for decode and encode, and writes that could not
be read back refused up front (`sidecar.store.nesting`, docs/protocol.md).

* the codec: `term_depth` agrees with a plain recursive definition; a term at the limit encodes
  and decodes, one level more is refused both ways (every container kind), also for input far
  deeper than the Python stack could walk;
* for every write that stores a client term: the deepest term it accepts round-trips exactly
  through every read path that carries it (get_session, fetch_session_for_update /
  put_session_if, get_variable, list_variables, get_variables, export_variables,
  get_variable_value, get_program, get_global_program), with each reply decoded by the same
  codec (so a reply over the limit would fail the test); one level deeper is refused with
  `{:term_too_deep, ...}` and leaves the store exactly as it was.

These run against the sidecar's frame path in-process (`FrameClient`: real frames in, real
reply frames out, with and without compact variables) and against a real subprocess.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any, Callable, Iterator

import pytest
from client import SubprocessClient
from harness_mirror import harness_expand_result
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codec import strictly_equal, terms

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.codec import MAX_TERM_DEPTH, DecodeTooDeep, EncodeTooDeep, term_depth
from sidecar.server import Sidecar
from sidecar.terms import Atom, ImproperList, ListKey, MapKey, Opaque, StrictKey, hashable_key

A = Atom
OK = A("ok")
ERROR = A("error")
MAX = MAX_TERM_DEPTH


# ---------------------------------------------------------------------------------------------
# building terms of an exact depth


def deep(depth: int, leaf: Any = "leaf") -> Any:
    """A term of exactly `depth` levels, cycling through list, tuple, map (binary key) and map
    (atom key) so that every container kind is on the path."""
    term = leaf
    for level in range(depth):
        kind = level % 4
        if kind == 0:
            term = [term]
        elif kind == 1:
            term = (A("t"), term)
        elif kind == 2:
            term = {"k": term}
        else:
            term = {A("k"): term, A("n"): 1}
    return term


def deep_list(depth: int, leaf: Any = 1.0) -> Any:
    """`[[...[leaf]...]]`, `depth` levels of lists (a tensor's data with one element)."""
    term = leaf
    for _ in range(depth):
        term = [term]
    return term


def tensor(depth: int) -> dict:
    """A :tensor value of exactly `depth` levels: %{"shape" => [1], "data" => [[...[1.0]]]}."""
    return {"shape": [1], "data": deep_list(depth - 1)}


def map_of(depth: int, key: Any = "k") -> dict:
    """A map of exactly `depth` levels."""
    return {key: deep(depth - 1)}


def test_the_builders_build_what_they_say() -> None:
    for depth in (0, 1, 2, 5, 50, MAX, MAX + 1):
        assert term_depth(deep(depth)) == depth
        assert term_depth(deep_list(depth)) == depth
    for depth in (2, 10, MAX):
        assert term_depth(tensor(depth)) == depth
        assert term_depth(map_of(depth)) == depth


# ---------------------------------------------------------------------------------------------
# the codec


def reference_depth(term: Any) -> int:
    """The definition of codec's module docstring, written recursively."""
    if isinstance(term, StrictKey):
        return reference_depth(term.value)
    if isinstance(term, ImproperList):
        if not term.items:
            return reference_depth(term.tail)
        return 1 + max(reference_depth(t) for t in [*term.items, term.tail])
    if isinstance(term, MapKey):
        return 1 + max([reference_depth(p) for pair in term for p in pair], default=0)
    if isinstance(term, (list, ListKey)):
        return 1 + max(reference_depth(t) for t in term) if term else 0
    if isinstance(term, tuple):
        return 1 + max([reference_depth(t) for t in term], default=0)
    if isinstance(term, dict):
        return 1 + max([reference_depth(p) for pair in term.items() for p in pair], default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(terms)
def test_term_depth_is_the_recursive_definition(term: Any) -> None:
    depth = reference_depth(term)
    assert term_depth(term) == depth
    for cap in range(0, depth + 1):
        assert term_depth(term, cap) == (depth if depth <= cap else cap + 1)


@settings(max_examples=100, deadline=None)
@given(terms, st.integers(0, 3))
def test_whatever_encodes_decodes_back_and_the_limit_is_the_same_both_ways(inner: Any, extra: int) -> None:
    # wrap the term in lists until it is just under, at, or over the limit
    padding = max(0, MAX - reference_depth(inner) - 1 + extra)
    term = deep_list(padding, inner)
    if term_depth(term) <= MAX:
        assert strictly_equal(codec.decode(codec.encode(term)), term)
    else:
        with pytest.raises(EncodeTooDeep):
            codec.encode(term)
        with pytest.raises(EncodeTooDeep):
            codec.encode_via_erlang_py(term)


MARKER = "marker-0f3c9a"


def enc(term: Any) -> bytes:
    """ETF without the version byte."""
    return codec.encode(term)[1:]


def etf_with(term: Any, replacement: bytes) -> bytes:
    """`enc(term)` with the one MARKER binary in it replaced by `replacement` (ETF written by
    hand: how to build a term the encoder itself refuses)."""
    data = enc(term)
    assert data.count(enc(MARKER)) == 1
    return data.replace(enc(MARKER), replacement)


def deep_bytes(depth: int) -> bytes:
    """`deep(depth)` as ETF, for any depth (written by hand past the limit)."""
    if depth <= MAX:
        return enc(deep(depth))
    return etf_with(deep(MAX, MARKER), deep_bytes(depth - MAX))


def _wrap_bytes(inner: bytes) -> bytes:
    """`[inner]` as ETF, without version byte."""
    return bytes((108, 0, 0, 0, 1)) + inner + bytes((106,))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda t: [t],
        lambda t: (t,),
        lambda t: (A("a"), t, 1),
        lambda t: {A("k"): t},
        lambda t: {"k": t},
        lambda t: {hashable_key(t): 1},
        lambda t: ImproperList([1, t], A("tail")),
        lambda t: ImproperList([1], t),
        lambda t: tuple([0] * 300 + [t]),  # LARGE_TUPLE_EXT
    ],
    ids=[
        "list",
        "1-tuple",
        "3-tuple",
        "atom-key map",
        "binary-key map",
        "map key",
        "improper items",
        "improper tail",
        "large tuple",
    ],
)
def test_each_container_kind_counts_one_level(wrap: Callable[[Any], Any]) -> None:
    at_limit = wrap(deep(MAX - 1))
    over = wrap(deep(MAX))
    assert term_depth(at_limit) == MAX and term_depth(over) == MAX + 1
    data = codec.encode(at_limit)
    assert strictly_equal(codec.decode(data), at_limit)
    with pytest.raises(EncodeTooDeep):
        codec.encode(over)
    with pytest.raises(EncodeTooDeep):
        codec.encode_via_erlang_py(over)
    over_bytes = b"\x83" + etf_with(wrap(MARKER), enc(deep(MAX)))
    with pytest.raises(DecodeTooDeep):
        codec.decode(over_bytes)
    if not isinstance(at_limit, dict) or "k" in at_limit or A("k") in at_limit:  # erlang-py cannot
        with pytest.raises(DecodeTooDeep):  # read maps inside map keys (codec's docstring)
            codec.decode_via_erlang_py(over_bytes)


def test_a_string_ext_is_a_level_as_the_list_it_decodes_to() -> None:
    inner = bytes((107, 0, 2)) + b"ab"  # 'ab'
    at_limit = b"\x83" + bytes((108, 0, 0, 0, 1)) * (MAX - 1) + inner + bytes((106,)) * (MAX - 1)
    over = b"\x83" + bytes((108, 0, 0, 0, 1)) * MAX + inner + bytes((106,)) * MAX
    term = codec.decode(at_limit)
    assert term_depth(term) == MAX
    assert codec.encode(term) == at_limit
    with pytest.raises(DecodeTooDeep):
        codec.decode(over)


def test_a_fun_with_free_variables_is_a_level() -> None:
    # fn -> x end with x bound, made by the BEAM (OTP 24): NEW_FUN_EXT with one free variable
    fun = _fun_with_free_variable(bytes((97, 7)))
    assert term_depth(fun) == 1
    deep_fun = _fun_with_free_variable(enc(deep(MAX - 1)))
    assert term_depth(deep_fun) == MAX
    assert codec.decode(b"\x83" + deep_fun.etf) == deep_fun
    with pytest.raises(DecodeTooDeep):
        codec.decode(b"\x83" + _wrap_bytes(deep_fun.etf))
    assert term_depth([deep_fun]) == MAX + 1
    with pytest.raises(EncodeTooDeep):
        codec.encode_via_erlang_py([deep_fun])


def _fun_with_free_variable(free: bytes) -> Opaque:
    node = bytes((119, 13)) + b"nonode@nohost"
    pid = bytes((88,)) + node + bytes(12)
    body = (
        bytes((0,))  # arity
        + bytes(16)  # uniq
        + (0).to_bytes(4, "big")  # index
        + (1).to_bytes(4, "big")  # num free
        + bytes((119, 3))
        + b"erl"  # module
        + bytes((97, 0))  # old index
        + bytes((97, 0))  # old uniq
        + pid
        + free
    )
    etf = bytes((112,)) + (len(body) + 4).to_bytes(4, "big") + body
    decoded = codec.decode(b"\x83" + etf)
    assert isinstance(decoded, Opaque) and decoded.kind == "fun"
    return decoded


def test_input_far_deeper_than_the_python_stack_is_refused_not_crashed() -> None:
    for depth in (MAX + 1, 1_000, 100_000):
        data = b"\x83" + b"\x68\x01" * depth + b"\x6a"
        with pytest.raises(DecodeTooDeep):
            codec.decode(data)
        call = b"\x83\x68\x04\x77\x04call\x61\x05\x77\x04ping\x6c\x00\x00\x00\x01" + b"\x68\x01" * depth + b"\x6a\x6a"
        assert codec.decode_call(call) is None
        with pytest.raises(DecodeTooDeep):
            codec.decode(call)


def test_a_call_argument_may_nest_max_minus_two_levels() -> None:
    ok = codec.encode((A("call"), 1, A("ping"), [deep(MAX - 2)]))
    assert codec.decode_call(ok) is not None
    over = b"\x83" + etf_with((A("call"), 1, A("ping"), [MARKER]), deep_bytes(MAX - 1))
    assert codec.decode_call(over) is None
    with pytest.raises(DecodeTooDeep):
        codec.decode(over)


# ---------------------------------------------------------------------------------------------
# clients: real frames, replies decoded by the codec (which refuses anything over the limit)


class FrameClient:
    """The sidecar's whole frame path in this process: `Sidecar.handle_input` with real frames."""

    def __init__(self, compact: bool) -> None:
        self.sidecar = Sidecar(SidecarOptions(enable_test_calls=True, spin_us=0))
        self.compact = compact
        self.ids = itertools.count(1)
        out = self.sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("compact_variables"): compact})))
        assert codec.decode(out[-1][4:])[0] is A("welcome")

    def call(self, function: str, *args: Any) -> Any:
        call_id = next(self.ids)
        frames = self.sidecar.handle_input(codec.encode_frame((A("call"), call_id, A(function), list(args))))
        for data in frames:
            term = codec.decode(data[4:])  # raises DecodeTooDeep for a reply over the limit
            if term[0] is A("reply") and term[1] == call_id:
                return harness_expand_result(function, term[2]) if self.compact else term[2]
        raise AssertionError(f"no reply to {function}: {frames!r}")

    def send_raw_call(self, body: bytes) -> Any:
        frames = self.sidecar.handle_input(len(body).to_bytes(4, "big") + body)
        replies = [codec.decode(data[4:]) for data in frames]
        return [term for term in replies if term[0] is not A("log")]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def subprocess_sidecar() -> Iterator[SubprocessClient]:
    client = SubprocessClient()
    yield client
    client.close()


@pytest.fixture(params=["frames", "frames-compact", "subprocess"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "subprocess":
        made = request.getfixturevalue("subprocess_sidecar")
        assert made.call("__reset__") is OK
        made.take_events()
        yield made
    else:
        yield FrameClient(compact=request.param == "frames-compact")


def send_raw_call(client: Any, function: str, args_etf: bytes) -> Any:
    """Send `{:call, 999, function, args}` with the argument list's ETF written by hand (for a
    term the encoder itself would refuse); return the reply's result."""
    name = function.encode()
    body = b"\x83\x68\x04\x77\x04call\x62" + (999).to_bytes(4, "big") + bytes((119, len(name))) + name + args_etf
    if isinstance(client, FrameClient):
        replies = [t for t in client.send_raw_call(body) if t[0] is A("reply")]
        assert len(replies) == 1
        return replies[0][2]
    client.send_raw(len(body).to_bytes(4, "big") + body)
    return client.wait_reply(999)


def args_etf(*encoded_args: bytes) -> bytes:
    """A LIST_EXT of already encoded (no version byte) arguments."""
    return bytes((108,)) + len(encoded_args).to_bytes(4, "big") + b"".join(encoded_args) + bytes((106,))


# ---------------------------------------------------------------------------------------------
# snapshots: "changes nothing"


def snapshot(client: Any, global_ids: tuple = ("g",)) -> Any:
    """Everything a refused write could have changed, read without touching anything."""
    sessions = sorted(client.call("list_sessions"))
    state = {sid: client.call("fetch_session_for_update", sid) for sid in sessions}
    stats = client.call("get_stats")
    stats.pop(A("memory_usage_bytes"))
    programs = {gid: client.call("get_global_program", gid) for gid in global_ids}
    return sessions, state, stats, programs


def assert_refused_and_unchanged(client: Any, write: Callable[[], Any], expected: Any) -> None:
    before = snapshot(client)
    assert strictly_equal(write(), expected)
    assert strictly_equal(snapshot(client), before)


def too_deep(function: str, path: list, allowed: int) -> tuple:
    return (ERROR, (A("term_too_deep"), A(function), path, allowed))


FRAME_TOO_DEEP = (ERROR, (A("term_too_deep"), MAX))


# ---------------------------------------------------------------------------------------------
# read paths


def variable_reads(client: Any, sid: str, name: Atom) -> list[dict]:
    """The variable as every read path gives it (all must agree on its fields)."""
    status, session = client.call("get_session", sid)
    assert status is OK

    def named(variable: dict) -> bool:  # imported variables have binary names
        return variable[A("name")] in (name, name.name)

    seen = [v for v in session[A("variables")].values() if named(v)]
    status, single = client.call("get_variable", sid, name)
    assert status is OK
    seen.append(single)
    status, listed = client.call("list_variables", sid)
    assert status is OK
    seen += [v for v in listed if named(v)]
    status, batch = client.call("get_variables", sid, [name])
    assert status is OK
    seen += list(batch[A("found")].values())
    status, revisioned, _revision = client.call("fetch_session_for_update", sid)
    assert status is OK
    seen += [v for v in revisioned[A("variables")].values() if named(v)]
    assert len(seen) == 5
    return seen


def exported(client: Any, sid: str, name: Atom) -> dict:
    status, maps = client.call("export_variables", sid)
    assert status is OK
    (found,) = [m for m in maps if m[A("name")] == name.name]
    return found


def session_reads(client: Any, sid: str) -> list[dict]:
    """The session as get_session, fetch_session_for_update and put_session_if give it."""
    status, session = client.call("get_session", sid)
    assert status is OK
    status, fetched, revision = client.call("fetch_session_for_update", sid)
    assert status is OK
    status, put = client.call("put_session_if", sid, revision, fetched)
    assert status is OK, put
    return [session, fetched, put]


# ---------------------------------------------------------------------------------------------
# sessions


def test_session_metadata_and_programs_at_the_limit_round_trip_and_one_deeper_is_refused(client: Any) -> None:
    allowed = MAX - 3  # {:reply, id, {:ok, %Session{metadata: m}}}
    metadata = map_of(allowed)
    programs = map_of(allowed, key=ListKey(["p"]))
    assert client.call("create_session", "s", {A("metadata"): metadata, A("programs"): programs})[0] is OK
    for session in session_reads(client, "s"):
        assert strictly_equal(session[A("metadata")], metadata)
        assert strictly_equal(session[A("programs")], programs)
    assert strictly_equal(client.call("get_program", "s", ["p"]), (OK, programs[ListKey(["p"])]))

    # an options map holds them as deep as the session does: the decoder's bound is theirs
    for key in (A("metadata"), A("programs")):
        over = etf_with(["s2", {key: {"k": MARKER}}], deep_bytes(allowed))  # allowed + 1 levels
        assert_refused_and_unchanged(client, lambda: send_raw_call(client, "create_session", over), FRAME_TOO_DEEP)
    # the store_worker_session id is read back as deep as the session's fields (a binary, or
    # the store refuses it: a deep term is refused for its depth first)
    assert_refused_and_unchanged(
        client,
        lambda: client.call("store_worker_session", "s", deep(allowed + 1)),
        too_deep("store_worker_session", [2], allowed),
    )


def test_keyword_options_are_bounded_by_the_decoder_one_level_sooner(client: Any) -> None:
    # [metadata: m] puts m one level deeper in the request than in the reply
    allowed = MAX - 4
    metadata = map_of(allowed)
    assert client.call("create_session", "kw", [(A("metadata"), metadata)])[0] is OK
    for session in session_reads(client, "kw"):
        assert strictly_equal(session[A("metadata")], metadata)
    over = etf_with(["kw2", [(A("metadata"), {"k": MARKER})]], deep_bytes(allowed))  # allowed + 1 levels
    assert_refused_and_unchanged(client, lambda: send_raw_call(client, "create_session", over), FRAME_TOO_DEEP)


def test_put_session_if_is_bounded_by_the_decoder_and_round_trips_at_the_limit(client: Any) -> None:
    assert client.call("create_session", "p")[0] is OK
    _, session, revision = client.call("fetch_session_for_update", "p")
    allowed = MAX - 3  # the metadata field is at the same level in the request and the replies
    session[A("metadata")] = map_of(allowed)
    status, put = client.call("put_session_if", "p", revision, session)
    assert status is OK
    for read in session_reads(client, "p"):
        assert strictly_equal(read[A("metadata")], session[A("metadata")])
    _, session, revision = client.call("fetch_session_for_update", "p")
    session[A("metadata")] = {"k": MARKER}  # becomes a map of allowed + 1 levels
    over = etf_with(["p", revision, session], deep_bytes(allowed))
    assert_refused_and_unchanged(client, lambda: send_raw_call(client, "put_session_if", over), FRAME_TOO_DEEP)


# ---------------------------------------------------------------------------------------------
# programs


def test_programs_at_the_limit_round_trip_and_one_deeper_is_refused(client: Any) -> None:
    allowed = MAX - 4  # %Session{programs: %{id => data}}
    assert client.call("create_session", "s")[0] is OK
    data = deep(allowed)
    program_id = deep(allowed, leaf="id")
    assert client.call("store_program", "s", program_id, data) is OK
    assert strictly_equal(client.call("get_program", "s", program_id), (OK, data))
    for session in session_reads(client, "s"):
        assert strictly_equal(session[A("programs")], {hashable_key(program_id): data})
    updated = deep(allowed, leaf="updated")
    assert client.call("update_program", "s", program_id, updated) is OK
    assert strictly_equal(client.call("get_program", "s", program_id), (OK, updated))

    for function in ("store_program", "update_program"):
        assert_refused_and_unchanged(
            client, lambda: client.call(function, "s", "p2", deep(allowed + 1)), too_deep(function, [3], allowed)
        )
        assert_refused_and_unchanged(
            client, lambda: client.call(function, "s", deep(allowed + 1), 1), too_deep(function, [2], allowed)
        )


def test_global_programs_are_bounded_by_the_decoder(client: Any) -> None:
    allowed = MAX - 2  # {:reply, id, {:ok, data}}: as deep as in the request
    data = deep(allowed)
    assert client.call("store_global_program", "g", data) is OK
    assert strictly_equal(client.call("get_global_program", "g"), (OK, data))
    assert client.call("delete_global_program", "g") is OK
    over = args_etf(enc("g"), deep_bytes(allowed + 1))
    assert_refused_and_unchanged(client, lambda: send_raw_call(client, "store_global_program", over), FRAME_TOO_DEEP)
    assert client.call("get_global_program", "g") == (ERROR, A("not_found"))


# ---------------------------------------------------------------------------------------------
# variables


VARIABLE_FIELD = MAX - 5  # {:reply, id, {:ok, %Session{variables: %{id => %Variable{f: t}}}}}


def test_register_variable_at_the_limit_round_trips_through_every_read(client: Any) -> None:
    assert client.call("create_session", "s")[0] is OK
    value = tensor(VARIABLE_FIELD)
    constraints = {A("shape"): None, A("note"): deep(VARIABLE_FIELD - 1)}
    metadata = map_of(VARIABLE_FIELD)
    description = deep(VARIABLE_FIELD - 1)  # a value inside the metadata map: one level more
    options = {A("constraints"): constraints, A("metadata"): metadata, A("description"): description}
    status, _ = client.call("register_variable", "s", A("v"), A("tensor"), value, options)
    assert status is OK
    for variable in variable_reads(client, "s", A("v")):
        assert strictly_equal(variable[A("value")], value)
        assert strictly_equal(variable[A("constraints")], constraints)
        assert strictly_equal(variable[A("metadata")]["k"], metadata["k"])
        assert strictly_equal(variable[A("metadata")]["description"], description)
    assert strictly_equal(exported(client, "s", A("v"))[A("value")], value)
    assert strictly_equal(client.call("get_variable_value", "s", A("v")), value)


def test_register_variable_one_level_deeper_is_refused(client: Any) -> None:
    assert client.call("create_session", "s")[0] is OK
    over = VARIABLE_FIELD + 1
    cases = [
        ((A("tensor"), tensor(over), {}), [4], VARIABLE_FIELD),
        ((A("float"), 1.0, {A("constraints"): map_of(over)}), [5, A("constraints")], VARIABLE_FIELD),
        ((A("float"), 1.0, {A("metadata"): map_of(over)}), [5, A("metadata")], VARIABLE_FIELD),
        ((A("float"), 1.0, {A("description"): deep(over - 1)}), [5, A("description")], VARIABLE_FIELD - 1),
        ((deep(MAX - 2), 1.0, {}), [3], MAX - 3),  # the type is echoed in {:unknown_type, type}
    ]
    for (type_term, value, options), path, allowed in cases:
        assert_refused_and_unchanged(
            client,
            lambda: client.call("register_variable", "s", A("v"), type_term, value, options),
            too_deep("register_variable", path, allowed),
        )
    # the deepest unknown type is answered with itself
    type_term = deep(MAX - 3)
    assert strictly_equal(client.call("register_variable", "s", A("v"), type_term, 1), (ERROR, (A("unknown_type"), type_term)))


def test_updates_at_the_limit_round_trip_and_one_deeper_is_refused(client: Any) -> None:
    assert client.call("create_session", "s")[0] is OK
    assert client.call("register_variable", "s", A("v"), A("tensor"), tensor(2))[0] is OK
    assert client.call("register_variable", "s", A("w"), A("tensor"), tensor(2))[0] is OK
    value = tensor(VARIABLE_FIELD)
    metadata = map_of(VARIABLE_FIELD, key="note")
    assert client.call("update_variable", "s", A("v"), value, metadata) is OK
    for variable in variable_reads(client, "s", A("v")):
        assert strictly_equal(variable[A("value")], value)
        assert strictly_equal(variable[A("metadata")]["note"], metadata["note"])
    status, results = client.call("update_variables", "s", {A("w"): value}, {A("metadata"): metadata})
    assert status is OK and results == {"w": OK}
    for variable in variable_reads(client, "s", A("w")):
        assert strictly_equal(variable[A("value")], value)
        assert strictly_equal(variable[A("metadata")]["note"], metadata["note"])
    assert strictly_equal(exported(client, "s", A("w"))[A("value")], value)

    over = VARIABLE_FIELD + 1
    assert_refused_and_unchanged(
        client,
        lambda: client.call("update_variable", "s", A("v"), tensor(over)),
        too_deep("update_variable", [3], VARIABLE_FIELD),
    )
    assert_refused_and_unchanged(
        client,
        lambda: client.call("update_variable", "s", A("v"), tensor(2), map_of(over)),
        too_deep("update_variable", [4], VARIABLE_FIELD),
    )
    assert_refused_and_unchanged(
        client,
        lambda: client.call("update_variables", "s", {A("v"): tensor(2), A("w"): tensor(over)}),
        too_deep("update_variables", [2, A("w")], VARIABLE_FIELD),
    )
    assert_refused_and_unchanged(
        client,
        lambda: client.call("update_variables", "s", {A("v"): tensor(2)}, [(A("metadata"), map_of(over))]),
        too_deep("update_variables", [3, A("metadata")], VARIABLE_FIELD),
    )


def test_import_at_the_limit_round_trips_and_one_deeper_is_refused(client: Any) -> None:
    assert client.call("create_session", "s")[0] is OK
    value = tensor(VARIABLE_FIELD)
    imported = {
        A("id"): "var_i_1",
        A("name"): "i",
        A("type"): A("tensor"),
        A("value"): value,
        A("constraints"): map_of(VARIABLE_FIELD),
        A("metadata"): map_of(VARIABLE_FIELD),
        A("version"): 3,
        A("created_at"): 0,
    }
    assert client.call("import_variables", "s", [imported]) == (OK, 1)
    for variable in variable_reads(client, "s", A("i")):
        for field in (A("value"), A("constraints"), A("metadata")):
            assert strictly_equal(variable[field], imported[field])
    for field in (A("value"), A("constraints"), A("metadata")):
        assert strictly_equal(exported(client, "s", A("i"))[field], imported[field])

    for field, term in ((A("value"), tensor(VARIABLE_FIELD + 1)), (A("metadata"), map_of(VARIABLE_FIELD + 1))):
        bad = {**imported, A("id"): "var_j_2", A("name"): "j", field: term}
        assert_refused_and_unchanged(
            client,
            lambda: client.call("import_variables", "s", [{**imported, A("id"): "var_k_3", A("name"): "k"}, bad]),
            too_deep("import_variables", [2, 1], VARIABLE_FIELD),
        )


def test_optimizer_ids_at_the_limit_round_trip_and_one_deeper_is_refused(client: Any) -> None:
    allowed = MAX - 6  # %Variable{optimization_status: %{optimizer_id: x}}
    assert client.call("create_session", "s")[0] is OK
    assert client.call("register_variable", "s", A("v"), A("float"), 1.0)[0] is OK
    optimizer_id, optimizer_pid = deep(allowed), deep(allowed, leaf=A("pid"))
    assert client.call("start_optimization", "s", A("v"), optimizer_id, optimizer_pid) is OK
    for variable in variable_reads(client, "s", A("v")):
        status = variable[A("optimization_status")]
        assert strictly_equal(status[A("optimizer_id")], optimizer_id)
        assert strictly_equal(status[A("optimizer_pid")], optimizer_pid)
    assert client.call("end_optimization", "s", A("v")) is OK
    assert_refused_and_unchanged(
        client,
        lambda: client.call("start_optimization", "s", A("v"), deep(allowed + 1), 1),
        too_deep("start_optimization", [3], allowed),
    )
    assert_refused_and_unchanged(
        client,
        lambda: client.call("start_optimization", "s", A("v"), 1, deep(allowed + 1)),
        too_deep("start_optimization", [4], allowed),
    )


def test_a_call_nested_past_the_limit_is_answered_to_its_id(client: Any) -> None:
    for depth in (MAX - 1, 10_000):
        assert send_raw_call(client, "ping", args_etf(deep_bytes(depth))) == FRAME_TOO_DEEP
    assert client.call("ping") is A("pong")


# ---------------------------------------------------------------------------------------------
# the hot path stays flat


def test_flat_arguments_are_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar.store import nesting

    walked: list = []
    real = codec.term_depth
    monkeypatch.setattr(nesting.codec, "term_depth", lambda term, cap=None: walked.append(term) or real(term, cap))
    client = FrameClient(compact=True)
    client.call("create_session", "s")
    client.call("register_variable", "s", A("x"), A("float"), 0.5)
    walked.clear()
    assert client.call("update_variable", "s", A("x"), 0.7) is OK
    assert client.call("update_variable", "s", "x", 1) is OK
    assert walked == []
    assert client.call("update_variable", "s", A("x"), 0.7, {"note": [1]}) is OK
    assert walked == [{"note": [1]}]


def test_deep_stack_callers_get_the_limit_not_a_recursion_error() -> None:
    # the codec counts levels itself: called with most of the Python stack used already, a term
    # at the limit still encodes and decodes
    term = deep(MAX)

    def at_depth(n: int) -> Any:
        if n:
            return at_depth(n - 1)
        return codec.decode(codec.encode(term))

    assert sys.getrecursionlimit() >= 1000
    assert strictly_equal(at_depth(300), term)
