"""Compact variables: what `compact_variables: true` in `:hello` changes, and what it must not.

The harness expands each compact tuple into the struct (`SnakepitSidecar.Protocol.
expand_variables/2`); tests/harness_mirror.py has that function written again in Python. The
contract suites also run through a compact in-process client (tests/conftest.py).
"""

from __future__ import annotations

import pytest
from harness_mirror import ELIXIR_DEFAULT_STATUS, OK, STRUCT, harness_expand, harness_expand_result
from hypothesis import given
from hypothesis import strategies as st

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import Sidecar
from sidecar.storage.base import NOT_OPTIMIZING, VariableRecord
from sidecar.store.config import DEFAULT_VARIABLE_STRUCT, StoreConfig
from sidecar.store.replies import Replies
from sidecar.store.session_store import SessionStore
from sidecar.store.structs import compact_variable, expand_compact_variable, render_variable
from sidecar.terms import Atom as A
from sidecar.terms import term_equal


def wire(term):
    return codec.decode(codec.encode(term))


class Answering:
    """A store with its reply layer: `raw(function, *args)` is the wire term it answers with."""

    def __init__(self, compact: bool) -> None:
        config = StoreConfig(compact_variables=compact)
        self.store = SessionStore(config, FakeClock(-576_460_000))
        self.replies = Replies(config, self.store.clock)

    def raw(self, function: str, *args):
        method = {"has_variable?": "has_variable"}.get(function, function)
        result, _events = self.store.call(method, *args)
        return self.replies.render(A(function), result)

    def reconfigure(self, config: StoreConfig) -> None:
        self.store.reconfigure(config, self.store.clock)
        self.replies.configure(config, self.store.clock)


def stores() -> tuple[Answering, Answering]:
    """Two stores fed the same calls: one answering with structs, one with compact tuples."""
    made = []
    for compact in (False, True):
        answering = Answering(compact)
        answering.raw("create_session", "s", {})
        answering.raw("register_variable", "s", A("t"), A("float"), 0.5, {A("constraints"): {A("min"): 0.0}})
        answering.raw("register_variable", "s", "n", A("integer"), 1, {A("metadata"): {"k": [1, 2.0]}})
        made.append(answering)
    return made[0], made[1]


def call(answering: Answering, function: str, *args):
    return wire(answering.raw(function, *args))


# ---------------------------------------------------------------------------------------------
# the three variable-read calls answer with tuples that expand to the structs


@pytest.mark.parametrize(
    "function, args",
    [
        ("get_variable", ("s", "t")),
        ("get_variable", ("s", "var_n_2")),
        ("get_variables", ("s", ["t", A("n"), "nope"])),
        ("list_variables", ("s",)),
        ("list_variables", ("s", "*t*")),
    ],
)
def test_read_calls_answer_with_compact_tuples_that_expand_to_the_structs(function, args):
    full, compact = stores()
    expected = call(full, function, *args)
    got = call(compact, function, *args)
    assert not term_equal(got, expected)  # really another form on the wire
    assert term_equal(harness_expand_result(function, got), expected)


def test_the_compact_tuple_is_the_module_then_the_fields_in_order():
    _, compact = stores()
    (tag, variable) = call(compact, "get_variable", "s", "t")
    assert tag is OK
    assert variable[:5] == (DEFAULT_VARIABLE_STRUCT, "var_t_1", A("t"), A("float"), 0.5)
    assert variable[5] == {A("min"): 0.0} and variable[7] == 0
    assert variable[10] is None  # the default optimization status
    assert variable[11] == []


@pytest.mark.parametrize(
    "function, args",
    [
        ("get_session", ("s",)),
        ("export_variables", ("s",)),
        ("get_variable", ("s", "missing")),
        ("get_variable", ("nope", "t")),
        ("get_variables", ("nope", ["t"])),
        ("list_variables", ("nope",)),
        ("get_variable_value", ("s", "t")),
    ],
)
def test_other_answers_do_not_change(function, args):
    full, compact = stores()
    assert term_equal(call(compact, function, *args), call(full, function, *args))


def test_a_non_default_optimization_status_travels_as_its_map():
    full, compact = stores()
    for store in (full, compact):
        assert store.raw("start_optimization", "s", "t", "opt-1", None) is OK
    (_, variable) = call(compact, "get_variable", "s", "t")
    status = variable[10]
    assert status[A("optimizing")] is True and status[A("optimizer_id")] == "opt-1"
    assert term_equal(harness_expand_result("get_variable", (OK, variable)), call(full, "get_variable", "s", "t"))
    for store in (full, compact):
        assert store.raw("end_optimization", "s", "t") is OK
    (_, variable) = call(compact, "get_variable", "s", "t")
    assert variable[10] is None or term_equal(variable[10], ELIXIR_DEFAULT_STATUS)
    assert term_equal(harness_expand_result("get_variable", (OK, variable)), call(full, "get_variable", "s", "t"))


@pytest.mark.parametrize(
    "status",
    [
        {A("optimizing"): 0, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None},
        {A("optimizing"): 0.0, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None},
        {"optimizing": False, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None},
        {A("optimizing"): False, A("optimizer_id"): None, A("optimizer_pid"): None},
        {A("optimizing"): False, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None, A("x"): 1},
        {A("optimizing"): False, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): False},
    ],
)
def test_only_exactly_the_default_status_is_sent_as_nil(status):
    """`0 == False` in Python; the BEAM would get `false` back for an `optimizing: 0`."""
    record = VariableRecord("var_x_1", A("x"), A("float"), 1.0, optimization_status=status)
    assert compact_variable(record, DEFAULT_VARIABLE_STRUCT)[10] is status
    equal_default = dict(NOT_OPTIMIZING)
    record = VariableRecord("var_x_1", A("x"), A("float"), 1.0, optimization_status=equal_default)
    assert compact_variable(record, DEFAULT_VARIABLE_STRUCT)[10] is None


def test_the_compact_cache_follows_every_change():
    _, compact = stores()
    first = compact.raw("get_variable", "s", "t")[1]
    assert compact.raw("get_variable", "s", "t")[1] is first  # cached
    compact.raw("update_variable", "s", "t", 0.75, {})
    updated = wire(compact.raw("get_variable", "s", "t")[1])
    assert updated[4] == 0.75 and updated[7] == 1
    compact.raw("start_optimization", "s", "t", "o", None)
    assert wire(compact.raw("get_variable", "s", "t")[1])[10][A("optimizing")] is True
    compact.reconfigure(compact.store.config.model_copy(update={"variable_struct": A("Elixir.My.Var")}))
    assert wire(compact.raw("get_variable", "s", "t")[1])[0] is A("Elixir.My.Var")


def test_both_forms_are_cached_side_by_side():
    """A session struct (always full) and a compact read of the same variable do not evict each other."""
    _, compact = stores()
    variable = compact.raw("get_variable", "s", "t")[1]
    session = wire(compact.raw("get_session", "s")[1])
    assert session[A("variables")]["var_t_1"][STRUCT] is DEFAULT_VARIABLE_STRUCT
    assert compact.raw("get_variable", "s", "t")[1] is variable


# ---------------------------------------------------------------------------------------------
# any variable: the tuple expands to exactly the struct

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from([A("a"), A("float"), A("Elixir.X")]),
)
terms = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.sampled_from([A("k"), A("optimizing")])), inner, max_size=3),
    ),
    max_leaves=8,
)
statuses = st.one_of(
    st.just(NOT_OPTIMIZING),
    st.just(dict(NOT_OPTIMIZING)),
    st.fixed_dictionaries({A("optimizing"): terms, A("optimizer_id"): terms, A("optimizer_pid"): terms, A("started_at"): terms}),
    st.dictionaries(st.sampled_from([A("optimizing"), A("started_at"), "x"]), terms, max_size=3),
)


@given(
    name=st.one_of(st.sampled_from([A("t"), A("nil_name")]), st.text(min_size=1, max_size=6)),
    value=terms,
    constraints=st.dictionaries(st.sampled_from([A("min"), A("max")]), terms, max_size=2),
    metadata=st.dictionaries(st.text(max_size=4), terms, max_size=3),
    version=st.integers(min_value=0),
    times=st.tuples(st.integers(), st.integers()),
    status=statuses,
    access_rules=st.lists(terms, max_size=2),
    module=st.sampled_from([DEFAULT_VARIABLE_STRUCT, A("Elixir.My.Var")]),
)
def test_any_compact_variable_expands_to_its_struct(
    name, value, constraints, metadata, version, times, status, access_rules, module
):
    record = VariableRecord(
        "var_x_1", name, A("float"), value, constraints, metadata, version, times[0], times[1], status, access_rules
    )
    struct = wire(render_variable(record, module))
    compact = wire(compact_variable(record, module))
    assert term_equal(harness_expand(compact), struct)
    assert term_equal(expand_compact_variable(compact), struct)  # the replay matcher's reading


def test_expand_compact_variable_refuses_other_shapes():
    record = VariableRecord("var_x_1", A("x"), A("float"), 1.0)
    compact = wire(compact_variable(record, DEFAULT_VARIABLE_STRUCT))
    assert expand_compact_variable(compact) is not None
    assert expand_compact_variable(compact[:-1]) is None
    assert expand_compact_variable((A("ok"),) + compact[1:]) is None  # not an Elixir module
    assert expand_compact_variable(list(compact)) is None


# ---------------------------------------------------------------------------------------------
# the hello option


def _hello(sidecar: Sidecar, options: dict) -> tuple:
    frames = sidecar.handle_input(codec.encode_frame((A("hello"), 1, options)))
    return codec.decode(frames[-1][4:])


def _get(sidecar: Sidecar, call_id: int, *args):
    frames = sidecar.handle_input(codec.encode_frame((A("call"), call_id, A("get_variable"), list(args))))
    return codec.decode(frames[-1][4:])[2]


def test_hello_turns_compact_variables_on_and_the_welcome_says_so():
    sidecar = Sidecar(SidecarOptions())
    welcome = _hello(sidecar, {A("compact_variables"): True, A("telemetry"): False})
    assert welcome[2][A("compact_variables")] is True
    sidecar.handle_input(codec.encode_frame((A("call"), 1, A("create_session"), ["s"])))
    sidecar.handle_input(codec.encode_frame((A("call"), 2, A("register_variable"), ["s", A("x"), A("float"), 1.0])))
    assert type(_get(sidecar, 3, "s", A("x"))[1]) is tuple


@pytest.mark.parametrize("options", [{}, {A("compact_variables"): False}, {"compact_variables": None}])
def test_without_the_option_nothing_changes_and_the_welcome_does_not_mention_it(options):
    sidecar = Sidecar(SidecarOptions())
    welcome = _hello(sidecar, {**options, A("telemetry"): False})
    assert A("compact_variables") not in welcome[2]
    sidecar.handle_input(codec.encode_frame((A("call"), 1, A("create_session"), ["s"])))
    sidecar.handle_input(codec.encode_frame((A("call"), 2, A("register_variable"), ["s", A("x"), A("float"), 1.0])))
    assert _get(sidecar, 3, "s", A("x"))[1][STRUCT] is DEFAULT_VARIABLE_STRUCT


@pytest.mark.parametrize("value", [1, "true", A("true_ish"), [True]])
def test_a_compact_variables_option_that_is_not_a_boolean_is_refused(value):
    sidecar = Sidecar(SidecarOptions())
    answer = _hello(sidecar, {A("compact_variables"): value})
    assert answer[0] is A("protocol_error")
    assert answer[1][:2] == (A("invalid_option"), A("compact_variables"))
