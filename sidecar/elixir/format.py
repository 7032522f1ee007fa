"""Terms printed as Elixir's `to_string/1` and string interpolation print them, for messages.

* `to_string_term(term)` -- `to_string/1` (`String.Chars`) as string interpolation uses it:
  numbers as `sidecar.elixir.numbers` prints them, atoms by name, nil as "", binaries as
  themselves (a non-UTF-8 binary with its invalid bytes replaced: a Python str cannot hold
  them), char lists as text. Elixir raises for tuples, maps and the like; we print their
  `inspect` form instead (`sidecar.elixir.inspect.inspect`). The one `to_string` of the package.
* `join(items, separator)` -- `Enum.join/2`: each item through `to_string_term`.

The number printers live in `sidecar.elixir.numbers` (re-exported here).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from sidecar.elixir.inspect import inspect
from sidecar.elixir.numbers import (
    MAX_INTEGER_TEXT_DIGITS,
    _is_number,
    format_float,
    format_number,
    inspect_float,
    integer_text,
)
from sidecar.terms import Atom

__all__ = [
    "MAX_INTEGER_TEXT_DIGITS",
    "integer_text",
    "format_number",
    "format_float",
    "inspect_float",
    "join",
    "to_string_term",
]


def _chardata_to_string(items: list) -> str | None:
    """`List.to_string/1` of chardata (code points, binaries, nested lists), or None if invalid."""
    parts: list[str] = []
    stack: list[Iterator[Any]] = [iter(items)]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, bool):
            return None
        if isinstance(item, int):
            if not (0 <= item <= 0x10FFFF) or 0xD800 <= item <= 0xDFFF:
                return None
            parts.append(chr(item))
        elif isinstance(item, str):
            parts.append(item)
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            return None
    return "".join(parts)


def to_string_term(term: Any) -> str:
    """What `"#{term}"` prints. Tuples, maps, pids... (an error in Elixir) print as inspect."""
    if term is None:
        return ""
    if term is True:
        return "true"
    if term is False:
        return "false"
    if _is_number(term):
        return format_number(term)
    if isinstance(term, Atom):
        return term.name
    if isinstance(term, str):
        return term
    if isinstance(term, bytes):
        # a non-UTF-8 binary interpolates its raw bytes; a Python str cannot hold them
        return term.decode("utf-8", "replace")
    if isinstance(term, list):
        text = _chardata_to_string(term)
        if text is not None:
            return text
    return inspect(term)


def join(items: Iterable[Any], separator: str = ", ") -> str:
    """`Enum.join(items, separator)`: each item through `to_string/1`."""
    return separator.join(to_string_term(item) for item in items)
