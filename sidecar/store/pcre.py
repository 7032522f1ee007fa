"""Patterns as the BEAM's PCRE reads them, on Python's `regex` module: the `pattern`
constraint of `:string` variables (a binary or a `%Regex{}` struct) and `list_variables`'s
name patterns.

* `compile_pattern(source, options="") -> PcrePattern | None` -- None for a pattern PCRE would
  refuse (the caller decides: the `pattern` constraint matches an invalid one literally,
  `list_variables` answers `{:invalid_pattern, p}`);
* `pattern_from_term(term) -> PcrePattern | None` -- a `pattern` constraint's value;
* `PcrePattern.matches(subject)` -- `Regex.match?/2` (unanchored), bounded by `MATCH_SECONDS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import regex

from sidecar.terms import Atom

__all__ = ["MATCH_SECONDS", "PcrePattern", "compile_pattern", "pattern_from_term"]

_REGEX_STRUCT = Atom("Elixir.Regex")

logger = logging.getLogger(__name__)


def _as_bytes(value: str | bytes) -> bytes:
    """The binary's bytes; escaped invalid bytes (surrogateescape) come back as themselves."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


MATCH_SECONDS = 0.1
"""How long one pattern match may run before it counts as no match (`PcrePattern.matches`)."""


@dataclass(frozen=True)
class PcrePattern:
    """A compiled pattern; `matches(subject)` is Elixir's `Regex.match?/2` (unanchored).

    `source` is the pattern as given; `literal` patterns (invalid regexes used as text) match
    where the source occurs as a substring.
    """

    source: str | bytes
    compiled: Any = None
    unicode: bool = False
    literal: bool = False

    def matches(self, subject: str | bytes) -> bool:
        """Whether the pattern matches `subject`. A match that takes longer than
        `MATCH_SECONDS` is no match, as PCRE on the BEAM answers `:nomatch` past its match
        limit: catastrophic backtracking (`(a|aa)+$` on a long subject) would otherwise hold the
        sidecar, and every caller behind it, for as long as it runs."""
        try:
            if self.literal:
                return _as_bytes(self.source) in _as_bytes(subject)
            if self.unicode:
                if isinstance(subject, bytes):
                    return False  # PCRE in UTF mode refuses invalid UTF-8: no match
                return self.compiled.search(subject, timeout=MATCH_SECONDS) is not None
            return self.compiled.search(_as_bytes(subject).decode("latin-1"), timeout=MATCH_SECONDS) is not None
        except TimeoutError:
            return False


_OPTION_FLAGS = {
    "i": regex.IGNORECASE,
    "m": regex.MULTILINE,
    "s": regex.DOTALL,
    "x": regex.VERBOSE,
}
_OPTION_ATOMS = {
    "caseless": "i",
    "multiline": "m",
    "dotall": "s",
    "extended": "x",
    "unicode": "u",
    "ucp": "u",
}


def _translate_pcre(source: str, unicode: bool) -> str:
    """Rewrite the PCRE spellings Python's `regex` lacks or reads differently."""
    out: list[str] = []
    index = 0
    in_class = False
    length = len(source)
    while index < length:
        char = source[index]
        if char == "\\" and index + 1 < length:
            escape = source[index + 1]
            if escape == "Q":
                end = source.find("\\E", index + 2)
                end = length if end < 0 else end
                out.append(regex.escape(source[index + 2 : end]))
                index = end + 2
                continue
            if escape == "Z" and not in_class:
                out.append(r"(?=\n?\Z)")
            elif escape == "z" and not in_class:
                out.append(r"\Z")
            elif escape == "k" and index + 2 < length and source[index + 2] in "<'{":
                closer = {"<": ">", "'": "'", "{": "}"}[source[index + 2]]
                end = source.find(closer, index + 3)
                if end < 0:
                    raise ValueError("unterminated group name")
                out.append(f"(?P={source[index + 3 : end]})")
                index = end + 1
                continue
            elif escape == "x" and index + 2 < length and source[index + 2] == "{":
                end = source.find("}", index + 3)
                if end < 0:
                    raise ValueError("unterminated \\x{")
                code = int(source[index + 3 : end], 16)
                if code > (0x10FFFF if unicode else 0xFF):
                    raise ValueError("character code point value in \\x{} is too large")
                out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\U{code:08x}")
                index = end + 1
                continue
            else:
                out.append(source[index : index + 2])
            index += 2
            continue
        if in_class:
            if char == "[" and source.startswith("[:", index):
                end = source.find(":]", index + 2)
                if end >= 0:
                    out.append(source[index : end + 2])
                    index = end + 2
                    continue
            if char == "]":
                in_class = False
            out.append(char)
            index += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            index += 1
            # a `]` (after an optional `^`) right at the start is a literal member in PCRE
            if source.startswith("^", index):
                out.append("^")
                index += 1
            if source.startswith("]", index):
                out.append("\\]")
                index += 1
            continue
        if char == "{" and regex.match(r"\{,\d*\}", source[index:]):
            out.append("\\{")  # PCRE 8 reads `{,n}` as text, Python as a quantifier
            index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def compile_pattern(source: str | bytes, options: str = "") -> PcrePattern | None:
    """Compile a PCRE source as Elixir's `Regex.compile(source, options)` would; None if invalid.

    Options are Elixir's letters: i, m, s, x, u (others are ignored). Without `u` the pattern
    runs on bytes (UTF-8 of the subject), as PCRE does.
    """
    if not isinstance(source, (str, bytes)) or not isinstance(options, str):
        return None
    unicode = "u" in options
    flags = 0
    for letter in options:
        flags |= _OPTION_FLAGS.get(letter, 0)
    try:
        if unicode:
            if isinstance(source, bytes):
                return None  # invalid UTF-8 in a UTF pattern: PCRE refuses it
            text = source
        else:
            # byte mode: one char per byte, classified by Latin-1 as OTP's PCRE tables do
            text = _as_bytes(source).decode("latin-1")
        compiled = regex.compile(_translate_pcre(text, unicode), flags | regex.V0)
    except (regex.error, ValueError, OverflowError, RecursionError, UnicodeError) as error:
        logger.debug("pattern %r does not compile: %s", source, error)
        return None
    return PcrePattern(source=source, compiled=compiled, unicode=unicode)


def _regex_struct_options(opts: Any) -> str:
    if isinstance(opts, str):
        return opts
    if isinstance(opts, list):
        return "".join(_OPTION_ATOMS.get(o.name, "") for o in opts if isinstance(o, Atom))
    return ""


def pattern_from_term(term: Any) -> PcrePattern | None:
    """A `pattern` constraint: a binary (an invalid one matches literally) or a `%Regex{}` map.

    None for anything else.
    """
    if isinstance(term, (str, bytes)):
        compiled = compile_pattern(term)
        return compiled if compiled is not None else PcrePattern(source=term, literal=True)
    if isinstance(term, dict) and term.get(Atom("__struct__")) is _REGEX_STRUCT:
        source = term.get(Atom("source"))
        if not isinstance(source, (str, bytes)):
            return None
        compiled = compile_pattern(source, _regex_struct_options(term.get(Atom("opts"))))
        return compiled if compiled is not None else PcrePattern(source=source, literal=True)
    return None
