"""Native terms printed as Elixir 1.14's `inspect/1` prints them (and, optionally, pretty).

The one inspect printer of the sidecar: messages (`sidecar.store.types`, `sidecar.store.structs`,
`to_string_term`'s fallback in `sidecar.elixir.format`) and the replay tool both use it.

`inspect(term)` gives one line, like `Kernel.inspect/1`: `:ok`, `nil`, `Snakepit.Bridge.Session`,
`"abc"`, `<<255, 0>>`, `'abc'`, `[a: 1]`, `%{:a => 1, "b" => 2}`, `%Mod{id: "s"}`, `{:ok, 1.5}`,
`[2, 3]`, `1000.0` (floats via `sidecar.elixir.format.inspect_float`).
`inspect(term, pretty=True, width=80)` breaks containers that do not fit over indented lines,
like `IO.inspect/1`. Small maps (32 keys or fewer) are printed in Erlang term order of their
keys, as the BEAM stores them, whatever order the Python dict holds; larger maps in dict order.
Pids, ports, references and funs (`terms.Opaque`) print in Elixir's `#PID<...>` style where
their bytes can be read, as `#Kind<hex>` otherwise. A `str` holding surrogate escapes
(`surrogateescape`, invalid UTF-8 bytes) prints as the bytes it stands for. A map with a
`__struct__` module prints as `%Mod{...}`, as Elixir does when that struct module is loaded.
`inspect_atom`, `inspect_key` (`a: ` / `"b" => `) and `term_order_key` (Erlang term order)
are the pieces the replay matcher uses on their own.

Integers print in full (`sidecar.elixir.format.integer_text`: no CPython digit limit; over
100,000 digits, `#Integer<N bits>`). The one-line form is written by an iterative printer (no
recursion, whatever the nesting), which can stop early: `inspect_prefix(term, n)` is
`inspect(term)[:n]` at a cost that depends on `n`, not on the term's size (what the protocol's
bad-frame echo and log lines use). `describe(term, n)` is that prefix made total: it never
raises, whatever the object.

Checked against the real `elixir` binary by tests/test_elixir_inspect.py.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Union

from sidecar.elixir.numbers import inspect_float, integer_text
from sidecar.terms import Atom, BitString, ImproperList, ListKey, MapKey, Opaque, StrictKey

__all__ = [
    "inspect",
    "inspect_prefix",
    "describe",
    "describe_exception",
    "exception_message",
    "inspect_atom",
    "inspect_key",
    "term_order_key",
]

# Operators Elixir 1.14 prints as atoms without quotes (`:+`, `:|>`), found by asking Elixir.
_UNQUOTED_OPERATORS = frozenset(
    "+ - * / ++ -- +++ --- ** .. ... <> <- -> = == != === !== =~ < > <= >= && || & | |> ! ^ "
    "@ \\\\ and or not in when <<< >>> <<~ ~>> <~ ~> <~> ||| &&& %{} {} <<>> % . ..//".split()
)
_IDENTIFIER = re.compile(r"^[^\W\d][\w@]*[?!]?$", re.UNICODE)
_ALIAS_SEGMENT = re.compile(r"^[A-Z][A-Za-z0-9_]*$")

_STRING_ESCAPES = {
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\x1b": "\\e",
    "\x07": "\\a",
    "\x08": "\\b",
    "\x0c": "\\f",
    "\x0b": "\\v",
    "\x7f": "\\d",
}
# `List.ascii_printable?/1`: the code points a list may hold to print as a charlist ('abc')
_CHARLIST_PRINTABLE = frozenset([7, 8, 9, 10, 11, 12, 13, 27, *range(0x20, 0x7F)])
_MAX_SORTED_MAP = 32


# ---------------------------------------------------------------------------------------------
# scalars


# the complement of `_printable_char`, for a scan at C speed (a binary can be 64 MB)
_NOT_PRINTABLE = re.compile("[^\x07-\x0d\x1b\x7f\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _printable_char(char: str) -> bool:
    """`String.printable?/1` for one code point (Elixir 1.14)."""
    code = ord(char)
    return (
        char in _STRING_ESCAPES
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _escape(text: str, quote: str) -> str:
    """Escape `text` for an Elixir literal delimited by `quote`."""
    out: list[str] = []
    for index, char in enumerate(text):
        if char == quote:
            out.append("\\" + quote)
        elif char == "#" and text[index + 1 : index + 2] == "{":
            out.append("\\#")
        elif char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif char == "\ufeff":  # the byte order mark: printable, but written escaped
            out.append("\\uFEFF")
        elif not _printable_char(char):
            out.append(_escape_code_point(ord(char)))
        else:
            out.append(char)
    return "".join(out)


def _escape_code_point(code: int) -> str:
    """A non-printable code point as Elixir 1.14 escapes it: `\\0`, `\\x1F`, `\\x{FFFE}`."""
    if code == 0:
        return "\\0"
    if code < 0x100:
        return "\\x%02X" % code
    return "\\x{%04X}" % code


def _utf8_bytes(text: str) -> bytes:
    """The bytes of the binary `text` stands for: surrogate escapes (`surrogateescape`) are the
    invalid bytes they replaced; other lone surrogates are encoded as they are."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _inspect_bytes(data: bytes, limit: int | None = None) -> str:
    """`<<1, 2>>`; with `limit`, at least the first `limit` characters of it (or all of it)."""
    if limit is not None and len(data) > limit:  # each byte prints as one character or more
        return "<<" + ", ".join(str(b) for b in data[:limit])
    return "<<" + ", ".join(str(b) for b in data) + ">>"


def _inspect_binary(text: str, limit: int | None = None) -> str:
    """A UTF-8 binary: `"..."` when printable, else its bytes. With `limit`, at least the first
    `limit` characters of that (or all of it)."""
    if _NOT_PRINTABLE.search(text) is None:
        if limit is not None and len(text) > limit + 1:
            return '"' + _prefix_escape(text, '"', limit)
        return '"' + _escape(text, '"') + '"'
    if limit is not None and len(text) > limit:
        return _inspect_bytes(_utf8_bytes(text[: limit + 1]), limit)
    return _inspect_bytes(_utf8_bytes(text), limit)


def _prefix_escape(text: str, quote: str, limit: int) -> str:
    """At least the first `limit` characters of `_escape(text, quote)`, for a `text` longer than
    `limit + 1`: characters 0..limit each give one or more, and their escapes depend on the next
    character only (`#{`)."""
    return _escape(text[: limit + 2], quote)[: limit + 1]


def _inspect_bitstring(bits: BitString, limit: int | None = None) -> str:
    if not bits.data:
        return "<<>>"
    if limit is not None and len(bits.data) > limit + 1:
        return _inspect_bytes(bits.data[: limit + 1], limit)
    *whole, last = bits.data
    parts = [str(b) for b in whole]
    parts.append(f"{last >> (8 - bits.bits)}::size({bits.bits})")
    return "<<" + ", ".join(parts) + ">>"


def _module_alias(name: str) -> str | None:
    """`Foo.Bar` for the atom `:"Elixir.Foo.Bar"`, None when it is not a printable alias."""
    if name == "Elixir":
        return "Elixir"
    if not name.startswith("Elixir."):
        return None
    segments = name[len("Elixir.") :].split(".")
    if all(_ALIAS_SEGMENT.match(s) for s in segments):
        return ".".join(segments)
    return None


def _plain_atom_text(name: str) -> str | None:
    """The atom's text when it needs no quotes, else None."""
    if name in _UNQUOTED_OPERATORS:
        return name
    if _IDENTIFIER.match(name) and unicodedata.is_normalized("NFC", name):
        return name
    return None


def inspect_atom(atom: Any) -> str:
    """`:ok`, `:"with space"`, `nil`, `true`, `Snakepit.Bridge.Session`."""
    if atom is None:
        return "nil"
    if atom is True:
        return "true"
    if atom is False:
        return "false"
    name = atom.name
    alias = _module_alias(name)
    if alias is not None:
        return alias
    plain = _plain_atom_text(name)
    if plain is not None:
        return ":" + plain
    return ':"' + _escape(name, '"') + '"'


def _keyword_key(atom: Any) -> str:
    """An atom as a keyword key, with its colon: `a: `, `"with space": `, `nil: `."""
    if atom is None or atom is True or atom is False:
        return f"{inspect_atom(atom)}: "
    plain = _plain_atom_text(atom.name)
    if plain is not None:
        return f"{plain}: "
    return '"' + _escape(atom.name, '"') + '": '


def _is_keyword_key(term: Any) -> bool:
    """An atom Elixir would print in keyword style (not a module alias `Elixir.X`)."""
    if term is None or term is True or term is False:
        return True
    return isinstance(term, Atom) and not term.name.startswith("Elixir.")


# ---------------------------------------------------------------------------------------------
# opaque terms


def _read_etf_atom(data: bytes, pos: int) -> tuple[str, int]:
    tag = data[pos]
    if tag in (100, 118):  # ATOM_EXT, ATOM_UTF8_EXT
        (length,) = struct.unpack(">H", data[pos + 1 : pos + 3])
        return data[pos + 3 : pos + 3 + length].decode("utf-8", "replace"), pos + 3 + length
    if tag in (115, 119):  # SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT
        length = data[pos + 1]
        return data[pos + 2 : pos + 2 + length].decode("utf-8", "replace"), pos + 2 + length
    raise ValueError("not an atom")


def _inspect_opaque(opaque: Opaque) -> str:
    data = opaque.etf[1:] if opaque.etf[:1] == b"\x83" else opaque.etf
    try:
        tag = data[0]
        if tag in (103, 88):  # PID_EXT, NEW_PID_EXT
            _node, pos = _read_etf_atom(data, 1)
            number, serial = struct.unpack(">II", data[pos : pos + 8])
            return f"#PID<0.{number}.{serial}>"
        if tag in (102, 89):  # PORT_EXT, NEW_PORT_EXT
            _node, pos = _read_etf_atom(data, 1)
            (number,) = struct.unpack(">I", data[pos : pos + 4])
            return f"#Port<0.{number}>"
        if tag in (114, 90):  # NEW_REFERENCE_EXT, NEWER_REFERENCE_EXT
            (count,) = struct.unpack(">H", data[1:3])
            _node, pos = _read_etf_atom(data, 3)
            pos += 1 if tag == 114 else 4
            words = struct.unpack(f">{count}I", data[pos : pos + 4 * count])
            return "#Reference<0." + ".".join(str(w) for w in reversed(words)) + ">"
    except (IndexError, ValueError, struct.error):
        pass
    kind = {"pid": "PID", "port": "Port", "ref": "Reference", "reference": "Reference", "fun": "Function"}
    return f"#{kind.get(opaque.kind, opaque.kind.capitalize())}<{data.hex()}>"


# ---------------------------------------------------------------------------------------------
# term order (for printing small maps the way the BEAM stores them)


def _unwrap_key(term: Any) -> Any:
    """A dict key without its hashing wrapper (ListKey -> list, MapKey -> dict, StrictKey)."""
    while isinstance(term, StrictKey):
        term = term.value
    if isinstance(term, ListKey):
        return list(term)
    if isinstance(term, MapKey):
        return dict(term)
    return term


def _binary_bytes(term: Any) -> bytes:
    if isinstance(term, str):
        return _utf8_bytes(term)
    if isinstance(term, BitString):
        return term.data
    return bytes(term)


def term_order_key(term: Any) -> tuple:
    """A sort key following Erlang's term order (number < atom < ref < fun < port < pid <
    tuple < map < list < bitstring); integers sort before floats, as map keys do."""
    term = _unwrap_key(term)
    if term is None or term is True or term is False:
        return (1, inspect_atom(term))
    if isinstance(term, (int, float)):
        return (0, 0 if isinstance(term, int) else 1, term)
    if isinstance(term, Atom):
        return (1, term.name)
    if isinstance(term, Opaque):
        rank = {"ref": 2, "reference": 2, "fun": 3, "port": 4, "pid": 5}.get(opaque_kind := term.kind, 3)
        return (rank, opaque_kind, term.etf)
    if isinstance(term, tuple):
        return (6, len(term), tuple(term_order_key(t) for t in term))
    if isinstance(term, dict):
        keys = sorted(term, key=term_order_key)
        return (
            7,
            len(term),
            tuple(term_order_key(k) for k in keys),
            tuple(term_order_key(term[k]) for k in keys),
        )
    if isinstance(term, list):
        return (8, tuple(term_order_key(t) for t in term))
    if isinstance(term, ImproperList):
        return (8, tuple(term_order_key(t) for t in term.items), term_order_key(term.tail))
    if isinstance(term, (str, bytes, BitString)):
        return (9, _binary_bytes(term))
    return (10, repr(term))


def _ordered_items(mapping: dict) -> list[tuple[Any, Any]]:
    items = list(mapping.items())
    if len(items) <= _MAX_SORTED_MAP:
        try:
            items.sort(key=lambda kv: term_order_key(kv[0]))
        except TypeError:  # keys whose order keys do not compare: keep dict order
            pass
    return items


# ---------------------------------------------------------------------------------------------
# documents: one-line or broken over lines


@dataclass
class _Container:
    """`open item, item close`, broken one item a line when it does not fit."""

    open: str
    items: list["_Doc"]
    close: str


@dataclass
class _Seq:
    """Documents printed one after the other (a key and its value, `a | tail`)."""

    parts: list["_Doc"] = field(default_factory=list)


_Doc = Union[str, _Container, _Seq]


def _flat(doc: _Doc) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, _Seq):
        return "".join(_flat(p) for p in doc.parts)
    return doc.open + ", ".join(_flat(i) for i in doc.items) + doc.close


def _render(doc: _Doc, indent: int, column: int, width: int) -> str:
    """`doc` starting at `column`, continuation lines indented by `indent`."""
    flat = _flat(doc)
    if column + len(flat) <= width or isinstance(doc, str):
        return flat
    if isinstance(doc, _Seq):
        out = ""
        for part in doc.parts:
            piece = _render(part, indent, column, width)
            out += piece
            column = len(piece.rsplit("\n", 1)[-1]) if "\n" in piece else column + len(piece)
        return out
    if not doc.items:
        return flat
    if doc.open in ("{", "["):
        return _render_fill(doc, indent, column, width)
    inner = indent + 2
    lines = [" " * inner + _render(item, inner, inner, width) for item in doc.items]
    return doc.open + "\n" + ",\n".join(lines) + "\n" + " " * indent + doc.close


def _render_fill(doc: _Container, indent: int, column: int, width: int) -> str:
    """Tuples and lists as Elixir's pretty printer breaks them: items fill each line, and
    continuation lines align just inside the opening bracket."""
    inner = indent + len(doc.open)
    out = doc.open
    column += len(doc.open)
    last = len(doc.items) - 1
    for index, item in enumerate(doc.items):
        suffix = doc.close if index == last else ","
        if index > 0:
            if column + 1 + len(_flat(item)) + len(suffix) <= width:
                out += " "
                column += 1
            else:
                out += "\n" + " " * inner
                column = inner
        piece = _render(item, inner, column, width) + suffix
        out += piece
        column = len(piece.rsplit("\n", 1)[-1]) if "\n" in piece else column + len(piece)
    return out


def _doc(term: Any) -> _Doc:
    term = _unwrap_key(term)
    if term is None or term is True or term is False or isinstance(term, Atom):
        return inspect_atom(term)
    if isinstance(term, int):
        return integer_text(term)
    if isinstance(term, float):
        return inspect_float(term)
    if isinstance(term, str):
        return _inspect_binary(term)
    if isinstance(term, bytes):
        return _inspect_bytes(term)
    if isinstance(term, BitString):
        return _inspect_bitstring(term)
    if isinstance(term, tuple):
        return _Container("{", [_doc(t) for t in term], "}")
    if isinstance(term, list):
        return _list_doc(term)
    if isinstance(term, ImproperList):
        if not term.items:  # `[ | tail]` is just the tail
            return _doc(term.tail)
        items = [_doc(t) for t in term.items]
        items[-1] = _Seq([items[-1], " | ", _doc(term.tail)])
        return _Container("[", items, "]")
    if isinstance(term, dict):
        return _map_doc(term)
    if isinstance(term, Opaque):
        return _inspect_opaque(term)
    return repr(term)


def _charlist_text(items: list) -> str | None:
    """The text of a printable charlist (`List.ascii_printable?/1`: no DEL, no non-ASCII), else None."""
    if not items or not all(type(i) is int and i in _CHARLIST_PRINTABLE for i in items):
        return None
    return "".join(chr(i) for i in items)


def _list_doc(items: list) -> _Doc:
    text = _charlist_text(items)
    if text is not None:
        return "'" + _escape(text, "'") + "'"
    if items and all(isinstance(i, tuple) and len(i) == 2 and _is_keyword_key(i[0]) for i in items):
        return _Container("[", [_Seq([_keyword_key(k), _doc(v)]) for k, v in items], "]")
    return _Container("[", [_doc(i) for i in items], "]")


def _map_doc(mapping: dict) -> _Doc:
    struct_name = mapping.get(Atom("__struct__"))
    if isinstance(struct_name, Atom) and _module_alias(struct_name.name) not in (None, "Elixir"):
        fields = [(k, v) for k, v in _ordered_items(mapping) if k is not Atom("__struct__")]
        if all(_is_keyword_key(k) for k, _ in fields):
            opener = "%" + str(_module_alias(struct_name.name)) + "{"
            return _Container(opener, [_Seq([_keyword_key(k), _doc(v)]) for k, v in fields], "}")
    items = _ordered_items(mapping)
    if items and all(_is_keyword_key(_unwrap_key(k)) for k, _ in items):
        return _Container("%{", [_Seq([_keyword_key(k), _doc(v)]) for k, v in items], "}")
    return _Container("%{", [_Seq([_doc(k), " => ", _doc(v)]) for k, v in items], "}")


def inspect_key(key: Any) -> str:
    """A map key as it prints before its value: `a: ` or `"b" => `."""
    key = _unwrap_key(key)
    if _is_keyword_key(key):
        return _keyword_key(key)
    return _flat(_doc(key)) + " => "


def inspect(term: Any, *, pretty: bool = False, width: int = 80, indent: int = 0) -> str:
    """`term` as Elixir's `inspect/2` prints it; `pretty=True` breaks it over lines at `width`
    (continuation lines indented by `indent` more spaces)."""
    if not pretty:
        return _one_line(term, None)
    return _render(_doc(term), indent, indent, width)


def inspect_prefix(term: Any, limit: int) -> str:
    """`inspect(term)[:limit]`, without printing more of the term than that takes."""
    return _one_line(term, max(0, limit))[:limit]


def describe(term: Any, limit: int = 200) -> str:
    """`inspect_prefix(term, limit)`, with `...` when cut; never raises (for logs and errors
    about terms a peer sent: a printer defect must not turn into a second error)."""
    try:
        text = _one_line(term, limit + 1)
    except Exception:  # a defect or an object with no Elixir form: name its type only
        return f"#{type(term).__name__}<?>"
    return text if len(text) <= limit else text[:limit] + "..."


def exception_message(exc: BaseException, limit: int = 300) -> str:
    """`str(exc)` cut to `limit` characters; never raises (the `str` of a KeyError holding a
    huge integer raises ValueError itself)."""
    try:
        text = str(exc)
    except Exception:
        text = "<message not printable>"
    return text if len(text) <= limit else text[:limit] + "..."


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """`"ValueError: message"`, as `exception_message`."""
    return f"{type(exc).__name__}: {exception_message(exc, limit)}"


# ---------------------------------------------------------------------------------------------
# the one-line printer: an explicit stack of piece iterators, so neither the nesting nor the
# size of a term can exhaust the Python stack, and printing can stop after `limit` characters.
# It writes exactly what `_flat(_doc(term))` writes (tests/test_elixir_inspect.py checks it).


class _Sub:
    """A piece that is a term to print in place (pushed as its own iterator of pieces)."""

    __slots__ = ("term",)

    def __init__(self, term: Any) -> None:
        self.term = term


def _one_line(term: Any, limit: int | None) -> str:
    out: list[str] = []
    size = 0
    stack = [_term_pieces(term, limit)]
    while stack:
        piece = next(stack[-1], None)
        if piece is None:
            stack.pop()
        elif type(piece) is str:
            out.append(piece)
            size += len(piece)
            if limit is not None and size >= limit:
                break
        else:
            stack.append(_term_pieces(piece.term, None if limit is None else limit - size))
    return "".join(out)


def _term_pieces(term: Any, limit: int | None) -> Any:
    """An iterator of the pieces of `term`'s one-line text: strings, and `_Sub` terms."""
    term = _unwrap_key(term)
    if term is None or term is True or term is False or isinstance(term, Atom):
        return iter((inspect_atom(term),))
    if isinstance(term, int):
        return iter((integer_text(term),))
    if isinstance(term, float):
        return iter((inspect_float(term),))
    if isinstance(term, str):
        return iter((_inspect_binary(term, limit),))
    if isinstance(term, bytes):
        return iter((_inspect_bytes(term, limit),))
    if isinstance(term, BitString):
        return iter((_inspect_bitstring(term, limit),))
    if isinstance(term, tuple):
        return _container_pieces("{", map(_Sub, term), "}")
    if isinstance(term, list):
        return _list_pieces(term, limit)
    if isinstance(term, ImproperList):
        if not term.items:
            return iter((_Sub(term.tail),))
        return _improper_pieces(term)
    if isinstance(term, dict):
        return _map_pieces(term)
    if isinstance(term, Opaque):
        return iter((_inspect_opaque(term),))
    return iter((repr(term),))


def _container_pieces(open_: str, items: Any, close: str) -> Any:
    """`open item, item close`, each item an iterator of pieces or a piece."""
    yield open_
    first = True
    for item in items:
        if not first:
            yield ", "
        first = False
        if type(item) is tuple:  # several pieces for one item (a key and its value)
            yield from item
        else:
            yield item
    yield close


def _list_pieces(items: list, limit: int | None) -> Any:
    text = _charlist_text(items)
    if text is not None:
        if limit is not None and len(text) > limit + 1:
            return iter(("'" + _prefix_escape(text, "'", limit),))
        return iter(("'" + _escape(text, "'") + "'",))
    if items and all(isinstance(i, tuple) and len(i) == 2 and _is_keyword_key(i[0]) for i in items):
        return _container_pieces("[", ((_keyword_key(k), _Sub(v)) for k, v in items), "]")
    return _container_pieces("[", map(_Sub, items), "]")


def _improper_pieces(term: ImproperList) -> Any:
    last = len(term.items) - 1
    parts = ((_Sub(t), " | ", _Sub(term.tail)) if n == last else _Sub(t) for n, t in enumerate(term.items))
    return _container_pieces("[", parts, "]")


def _map_pieces(mapping: dict) -> Any:
    struct_name = mapping.get(Atom("__struct__"))
    if isinstance(struct_name, Atom) and _module_alias(struct_name.name) not in (None, "Elixir"):
        fields = [(k, v) for k, v in _ordered_items(mapping) if k is not Atom("__struct__")]
        if all(_is_keyword_key(k) for k, _ in fields):
            opener = "%" + str(_module_alias(struct_name.name)) + "{"
            return _container_pieces(opener, ((_keyword_key(k), _Sub(v)) for k, v in fields), "}")
    items = _ordered_items(mapping)
    if items and all(_is_keyword_key(_unwrap_key(k)) for k, _ in items):
        return _container_pieces("%{", ((_keyword_key(k), _Sub(v)) for k, v in items), "}")
    return _container_pieces("%{", ((_Sub(k), " => ", _Sub(v)) for k, v in items), "}")
