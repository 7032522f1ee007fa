"""`sidecar.elixir_inspect`: native terms printed as Elixir's inspect prints them. Fixed
expectations, plus a live comparison with the real `elixir` binary when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sidecar import codec
from sidecar.elixir_inspect import inspect
from sidecar.terms import Atom, BitString, ImproperList

A = Atom

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
    {A("__struct__"): A("Elixir.Foo.Bar"), A("a"): 1},
    codec.decode(bytes([131, 116, 0, 0, 0, 2, 104, 1, 97, 1, 100, 0, 1, 97, 108, 0, 0, 0, 1, 97, 1, 106, 100, 0, 1, 98])),
]  # fmt: skip


@pytest.mark.parametrize(
    "term, text",
    [
        (A("ok"), ":ok"),
        (A("with space"), ':"with space"'),
        (A("Elixir.Snakepit.Bridge.Session"), "Snakepit.Bridge.Session"),
        (None, "nil"),
        (True, "true"),
        ("abc", '"abc"'),
        ('say "hi"\n', '"say \\"hi\\"\\n"'),
        (b"\xff\x00", "<<255, 0>>"),
        ({A("a"): 1, "b": 2}, '%{:a => 1, "b" => 2}'),
        ({A("b"): 1, A("a"): 2}, "%{a: 2, b: 1}"),
        ({A("__struct__"): A("Elixir.Snakepit.Bridge.Session"), A("id"): "s"}, '%Snakepit.Bridge.Session{id: "s"}'),
        ((A("ok"), 1.0e-5), "{:ok, 1.0e-5}"),
        ([97, 98], "'ab'"),
        ([(A("a"), 1)], "[a: 1]"),
        (ImproperList([1], 2), "[1 | 2]"),
        (1.0e15, "1000000000000000.0"),
    ],
)
def test_inspect_prints_like_elixir(term, text):
    assert inspect(term) == text


def test_pretty_breaks_long_terms_over_lines():
    term = (A("reply"), 5, (A("ok"), {A("a"): "x" * 60, A("b"): [1, 2, 3], A("c"): {A("d"): "y" * 70}}))
    text = inspect(term, pretty=True, width=80)
    assert text.splitlines()[0] == "{:reply, 5,"
    assert '    c: %{\n      d: "' in text
    assert max(len(line) for line in text.splitlines()) <= 82
    assert inspect(term) == inspect(term, pretty=True, width=10_000)


@pytest.mark.skipif(shutil.which("elixir") is None, reason="elixir is not installed")
def test_inspect_agrees_with_the_real_elixir(tmp_path: Path):
    live_cases = [c for c in CASES if not (isinstance(c, dict) and A("__struct__") in c)]
    data = tmp_path / "terms.bin"
    data.write_bytes(codec.encode(live_cases))
    script = f'File.read!("{data}") |> :erlang.binary_to_term() |> Enum.each(&IO.puts(inspect(&1)))'
    result = subprocess.run(["elixir", "-e", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    elixir_lines = result.stdout.split("\n")[: len(live_cases)]
    ours = [inspect(c) for c in live_cases]
    mismatches = [(e, o) for e, o in zip(elixir_lines, ours) if e != o]
    assert mismatches == []
