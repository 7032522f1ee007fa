"""`sidecar.elixir.inspect`: native terms printed as Elixir 1.14's `inspect/1` prints them.

Fixed expectations (outputs read off the real `elixir` binary), the pretty printer, and a live
comparison: every term of the tables and of CASES is sent to `elixir` as ETF in one invocation
and its `inspect/1` compared with ours. The live test skips only when `elixir` is not on PATH.
The float printers themselves are tested in tests/test_elixir_format.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import terms

from sidecar import codec
from sidecar.elixir.inspect import _doc, _flat, describe, describe_exception, exception_message, inspect, inspect_prefix
from sidecar.terms import Atom, BitString, ImproperList

A = Atom
ELIXIR = shutil.which("elixir")
needs_elixir = pytest.mark.skipif(ELIXIR is None, reason="the `elixir` binary is not on PATH")

# (native term, inspect output); each is also checked live against `elixir`
INSPECT_TABLE = [
    # numbers (integral floats below 1.0e16 print as N.0, unlike to_string)
    (0, "0"),
    (-7, "-7"),
    (10**30, "1" + "0" * 30),
    (1.0, "1.0"),
    (-0.0, "-0.0"),
    (1000.0, "1000.0"),
    (1.0e15, "1000000000000000.0"),
    (1.0e16, "1.0e16"),
    (9007199254740992.0, "9007199254740992.0"),
    (1.0e-5, "1.0e-5"),
    # lists and charlists (List.ascii_printable?/1: DEL and non-ASCII print as numbers)
    ([2, 3], "[2, 3]"),
    ([2.0, 3], "[2.0, 3]"),
    ([32, 65], "' A'"),
    ([7, 65], "'\\aA'"),
    ([39, 65], "'\\'A'"),
    ([97, 98], "'ab'"),
    ([127], "[127]"),
    ([127, 65], "[127, 65]"),
    ([97, 256], "[97, 256]"),
    ([65.0, 66], "[65.0, 66]"),
    ([True], "[true]"),
    ([], "[]"),
    ([1.0, 1000.0, 1.0e-5], "[1.0, 1000.0, 1.0e-5]"),
    ([(A("a"), 1), (A("b"), 2)], "[a: 1, b: 2]"),
    ([(A("a"), 1)], "[a: 1]"),
    ([(A("a"), 1), ("b", 2)], '[{:a, 1}, {"b", 2}]'),
    ([(None, 1), (True, 2)], "[nil: 1, true: 2]"),
    ([(A("->"), 1)], "[->: 1]"),
    ([(A("a\x01"), 1)], '["a\\x01": 1]'),
    (ImproperList([1], 2), "[1 | 2]"),
    # tuples
    ((1, A("a")), "{1, :a}"),
    ((), "{}"),
    ((A("ok"), 1.0e-5), "{:ok, 1.0e-5}"),
    # atoms
    (A("ok"), ":ok"),
    (None, "nil"),
    (True, "true"),
    (A("foo bar"), ':"foo bar"'),
    (A("with space"), ':"with space"'),
    (A("Elixir.Foo.Bar"), "Foo.Bar"),
    (A("Elixir.Snakepit.Bridge.Session"), "Snakepit.Bridge.Session"),
    (A("Elixir.foo"), ':"Elixir.foo"'),
    (A("a?"), ":a?"),
    (A("a@b"), ":a@b"),
    (A("9a"), ':"9a"'),
    (A("+"), ":+"),
    (A("::"), ':"::"'),
    (A("<|>"), ':"<|>"'),
    (A("->"), ":->"),
    (A("**"), ":**"),
    (A(""), ':""'),
    (A("a\x00"), ':"a\\0"'),
    (A("a\x01"), ':"a\\x01"'),
    (A("a\x1f"), ':"a\\x1F"'),
    (A("a\x7fb"), ':"a\\db"'),
    (A("a\x9f"), ':"a\\x9F"'),
    (A("a\ufffe"), ':"a\\x{FFFE}"'),
    (A("a\ufeff"), ':"a\\uFEFF"'),
    # binaries
    ("abc", '"abc"'),
    ("é", '"é"'),
    ('say "hi"\n', '"say \\"hi\\"\\n"'),
    ('a"b\\c#{x}\n\t', '"a\\"b\\\\c\\#{x}\\n\\t"'),
    ("a\ufeff", '"a\\uFEFF"'),
    ("a\x85", "<<97, 194, 133>>"),
    (b"\xff", "<<255>>"),
    (b"\xff\x00", "<<255, 0>>"),
    ("\x00", "<<0>>"),
    (BitString(b"\xa0", 3), "<<5::size(3)>>"),
    # maps, in Erlang term order of their keys
    ({A("a"): 1, A("b"): "x"}, '%{a: 1, b: "x"}'),
    ({A("b"): 1, A("a"): 2}, "%{a: 2, b: 1}"),
    ({A("a"): 1, "b": 2}, '%{:a => 1, "b" => 2}'),
    ({"b": 1, A("a"): 2}, '%{:a => 2, "b" => 1}'),
    ({None: 1, A("a"): 2}, "%{a: 2, nil: 1}"),
    (
        {"a": 3, (1, 2): 1, A("b"): 4, 1.5: 5, 2: 6},
        '%{2 => 6, 1.5 => 5, :b => 4, {1, 2} => 1, "a" => 3}',
    ),
    ({}, "%{}"),
]

# (native term, inspect output) that cannot be checked live
OFFLINE_TABLE = [
    # Elixir prints the struct form only when the struct's module is loaded
    ({A("__struct__"): A("Elixir.Snakepit.Bridge.Session"), A("id"): "s"}, '%Snakepit.Bridge.Session{id: "s"}'),
    # a str holding surrogate escapes stands for the invalid bytes (the codec cannot encode it)
    ("\udcff", "<<255>>"),
    ("a\udcffb", "<<97, 255, 98>>"),
    # `[ | 2]` is just 2
    (ImproperList([], 2), "2"),
]  # fmt: skip

# more terms compared live only
CASES = [
    A("ok"), A("with space"), A("Elixir.Snakepit.Bridge.Session"), A("Elixir.foo bar"), A("Foo"), A("+"), A("::"),
    A("foo.bar"), A("a@b"), A("é"), A("1a"), A(""), A('a"b'), A("ok?"), A("..."), A("%{}"), A("when"),
    None, True, False, 0, -42, 2**70, 1.5, 1.0e-5, 100.0, 1.0e15, 1.0e16, -0.0, 0.1,
    "abc", 'a"b\\c\n\t#{x}é\x1b', "#a#", "\x01", "\u2028x", b"\xff\x00", "", BitString(b"\xa0", 3),
    [], [97, 98, 99], [97, 39, 10], [10, 9], [1, 300], [(A("a"), 1), (A("b c"), 2)], [(A("Elixir.Foo"), 1)],
    [(None, 1), (True, 2)], [(A("->"), 1)], ImproperList([1, 2], 3), (), (A("ok"), 1), ({},),
    {}, {A("a"): 1, "b": 2}, {"b": 2, A("a"): 1, 1: 3}, {A("with space"): 1, A("ok?"): 2},
    {A("z"): 1, A("a"): 2, A("m"): 3}, {A("Elixir.Foo"): 1}, {None: 1},
    {"k": [1, 2.5], (1, 2): {A("x"): "y"}, 1.0: None, A("a"): [A("b")]},
    codec.decode(bytes([131, 116, 0, 0, 0, 2, 104, 1, 97, 1, 100, 0, 1, 97, 108, 0, 0, 0, 1, 97, 1, 106, 100, 0, 1, 98])),
    2**20000, -(3**9000), 10**4300, 10**4301, {2**15000: [2**14285]},  # past CPython's 4300 digits
]  # fmt: skip


@pytest.mark.parametrize("term, text", INSPECT_TABLE + OFFLINE_TABLE)
def test_inspect_prints_like_elixir(term, text):
    assert inspect(term) == text


def test_pretty_breaks_long_terms_over_lines():
    term = (A("reply"), 5, (A("ok"), {A("a"): "x" * 60, A("b"): [1, 2, 3], A("c"): {A("d"): "y" * 70}}))
    text = inspect(term, pretty=True, width=80)
    assert text.splitlines()[0] == "{:reply, 5,"
    assert '    c: %{\n      d: "' in text
    assert max(len(line) for line in text.splitlines()) <= 82
    assert inspect(term) == inspect(term, pretty=True, width=10_000)


@needs_elixir
def test_inspect_agrees_with_the_real_elixir(tmp_path: Path):
    table_terms = [term for term, _ in INSPECT_TABLE]
    live_cases = table_terms + CASES
    data = tmp_path / "terms.bin"
    data.write_bytes(codec.encode(live_cases))
    script = f'File.read!("{data}") |> :erlang.binary_to_term() |> Enum.each(&IO.puts(inspect(&1)))'
    result = subprocess.run([ELIXIR, "-e", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    elixir_lines = result.stdout.split("\n")[: len(live_cases)]
    assert len(elixir_lines) == len(live_cases)
    # the fixed expectations are what elixir prints...
    table_mismatches = [(term, line, text) for (term, text), line in zip(INSPECT_TABLE, elixir_lines) if line != text]
    assert table_mismatches == []
    # ...and so is ours, for every term
    ours = [inspect(c) for c in live_cases]
    mismatches = [(c, e, o) for c, e, o in zip(live_cases, elixir_lines, ours) if e != o]
    assert mismatches == []


# ---------------------------------------------------------------------------------------------
# the one-line printer: total, iterative, stoppable (what the protocol's echo and logs use)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms, st.integers(0, 150))
def test_one_line_printer_is_the_document_printer_and_stops_where_asked(term, limit):
    full = inspect(term)
    assert full == _flat(_doc(term))  # the iterative printer and the pretty printer's documents
    assert inspect_prefix(term, limit) == full[:limit]
    described = describe(term, limit)
    assert described == (full if len(full) <= limit else full[:limit] + "...")


@pytest.mark.parametrize(
    "term",
    [
        "#{" * 300,
        "é\x00" * 300,
        b"\xff" * 700,
        "\x00" * 700,
        list(range(32, 127)) * 5,
        [(A("k"), "#{" * 100)] * 10,
        BitString(b"\xa0" * 600, 3),
        {A("__struct__"): A("Elixir.Snakepit.Bridge.Session"), A("id"): "x" * 500},
        ImproperList(["#{" * 100] * 3, "t" * 300),
        2**20000,
    ],
    ids=lambda term: type(term).__name__,  # pytest's own ids would str() the big integer
)
def test_prefixes_of_long_scalars_are_exact(term):
    full = inspect(term)
    for limit in range(0, min(len(full), 900), 13):
        assert inspect_prefix(term, limit) == full[:limit]


def test_printing_is_bounded_by_the_limit_not_by_the_term(monkeypatch):
    # a 50 MB binary and a list of a million elements: only what the prefix needs is printed
    from sidecar.elixir import inspect as elixir_inspect

    escaped: list[int] = []
    printed: list[Any] = []
    real_escape, real_pieces = elixir_inspect._escape, elixir_inspect._term_pieces
    monkeypatch.setattr(elixir_inspect, "_escape", lambda text, quote: escaped.append(len(text)) or real_escape(text, quote))
    monkeypatch.setattr(elixir_inspect, "_term_pieces", lambda term, limit: printed.append(term) or real_pieces(term, limit))
    assert inspect_prefix("a" * 50_000_000, 200) == '"' + "a" * 199
    assert escaped == [202]
    assert inspect_prefix([1] * 1_000_000 + [[2]], 200) == ("[" + ", ".join(["1"] * 100))[:200]
    assert len(printed) < 100


def test_no_nesting_exhausts_the_printer():
    term: Any = "leaf"
    for _ in range(100_000):
        term = [term]
    assert inspect_prefix(term, 10) == "[[[[[[[[[["
    assert inspect(term).count("[") == 100_000


def test_describe_never_raises():
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    assert describe(Hostile(), 50) == "#Hostile<?>"
    assert describe(2**20000, 20) == "39802768403379665923..."
    assert describe_exception(KeyError(2**20000)) == "KeyError: <message not printable>"
    assert exception_message(ValueError("x" * 1000), 10) == "x" * 10 + "..."
