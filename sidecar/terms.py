"""Native Python representation of Elixir terms, shared by the codec and the store.

The mapping, chosen so that every Elixir term survives a round trip exactly:

    Elixir                      Python
    ------                      ------
    nil / true / false          None / True / False
    other atoms (:ok)           Atom("ok")       (interned: compare with `is` or ==)
    binary, valid UTF-8         str
    binary, not UTF-8           bytes
    bitstring (not whole bytes) BitString(data, bits)
    integer (any size)          int
    float                       float
    tuple                       tuple
    proper list (incl. '')      list
    improper list [a | b]       ImproperList(items, tail)
    map                         dict (unhashable keys wrapped: ListKey, MapKey; a key that
                                Python would merge with another, 1 vs 1.0 vs true: StrictKey)
    pid, port, ref, fun         Opaque(kind, etf_bytes) -- carried verbatim

`Atom` deliberately does not subclass `str`: `%{:a => 1, "a" => 2}` has two keys and
must stay that way in a Python dict.
"""

from __future__ import annotations

from _weakref import _remove_dead_weakref  # type: ignore[attr-defined]  # what weakref.WeakValueDictionary uses
from typing import Any, Iterable
from weakref import KeyedRef


def _forget_atom(ref: "KeyedRef") -> None:
    """Weak reference callback: drop the table entry of an atom nothing refers to any more
    (only if the entry is still that dead reference, atomically)."""
    _remove_dead_weakref(_ATOM_TABLE, ref.key)


_ATOM_TABLE: dict[str, "KeyedRef"] = {}


class Atom:
    """An Elixir atom other than nil/true/false. Interned: Atom("x") is Atom("x").

    Interned weakly: the table holds a weak reference to each atom, so an atom that nothing
    refers to any more (a name that came in one frame and was not stored) is freed, and a flood
    of distinct atom names from a peer costs memory only while they are in use. The BEAM keeps
    every atom for ever (and stops at its atom limit); a process serving untrusted frames
    cannot. Identity still holds: while any `Atom("x")` is alive, `Atom("x")` returns it."""

    __slots__ = ("name", "__weakref__")
    name: str

    def __new__(cls, name: str) -> "Atom":
        ref = _ATOM_TABLE.get(name)
        if ref is not None:
            atom = ref()
            if atom is not None:
                return atom
        if not isinstance(name, str):
            raise TypeError(f"atom name must be str, got {type(name).__name__}")
        atom = object.__new__(cls)
        object.__setattr__(atom, "name", name)
        _ATOM_TABLE[name] = KeyedRef(atom, _forget_atom, name)
        return atom

    @staticmethod
    def interned_count() -> int:
        """How many atoms the interning table holds (live ones, and dead ones not yet dropped)."""
        return len(_ATOM_TABLE)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Atom is immutable")

    def __repr__(self) -> str:
        return f"Atom({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return (Atom, (self.name,))

    def __copy__(self) -> "Atom":
        return self

    def __deepcopy__(self, memo) -> "Atom":
        return self

    def __lt__(self, other: "Atom") -> bool:
        if not isinstance(other, Atom):
            return NotImplemented
        return self.name < other.name

    # identity equality and hashing (object defaults) are exactly right for interned atoms


class BitString:
    """A bitstring whose last byte holds `bits` (1..7) significant bits."""

    __slots__ = ("data", "bits")

    def __init__(self, data: bytes, bits: int) -> None:
        self.data = bytes(data)
        self.bits = bits

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BitString) and (self.data, self.bits) == (other.data, other.bits)

    def __hash__(self) -> int:
        return hash(("bitstring", self.data, self.bits))

    def __repr__(self) -> str:
        return f"BitString({self.data!r}, {self.bits})"


class ImproperList:
    """`[a, b | tail]` where tail is not a list."""

    __slots__ = ("items", "tail")

    def __init__(self, items: Iterable[Any], tail: Any) -> None:
        self.items = list(items)
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImproperList) and term_equal(self.items, other.items) and term_equal(self.tail, other.tail)

    def __hash__(self) -> int:
        return hash(("improper", len(self.items)))

    def __repr__(self) -> str:
        return f"ImproperList({self.items!r}, {self.tail!r})"


class Opaque:
    """A pid, port, reference or fun: kept as its exact ETF encoding (without version byte)."""

    __slots__ = ("kind", "etf")

    def __init__(self, kind: str, etf: bytes) -> None:
        self.kind = kind
        self.etf = bytes(etf)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and self.etf == other.etf

    def __hash__(self) -> int:
        return hash(("opaque", self.etf))

    def __repr__(self) -> str:
        return f"Opaque({self.kind!r}, {self.etf.hex()})"


class Encoded:
    """A term already in the external term format (`etf`, without the version byte 131).

    The encoder writes it verbatim, so a reply can carry a cached encoding (a variable's struct
    is encoded once per version, not once per read); decoding the reply gives the term back.
    """

    __slots__ = ("etf",)

    def __init__(self, etf: bytes) -> None:
        self.etf = etf

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Encoded) and self.etf == other.etf

    def __hash__(self) -> int:
        return hash(("encoded", self.etf))

    def __repr__(self) -> str:
        return f"Encoded({self.etf.hex()})"


class ListKey(tuple):
    """A list used as a map key (Python lists are unhashable). Encodes back as a list."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ListKey({list(self)!r})"


class MapKey(tuple):
    """A map used as a map key: a tuple of (key, value) pairs. Encodes back as a map."""

    __slots__ = ()

    def as_dict(self) -> dict:
        return dict(self)

    def __repr__(self) -> str:
        return f"MapKey({dict(self)!r})"


class StrictKey:
    """A map key kept apart from a Python-equal key of another type (1, 1.0, True)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StrictKey) and type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("strict", type(self.value).__name__, self.value))

    def __repr__(self) -> str:
        return f"StrictKey({self.value!r})"


def hashable_key(term: Any) -> Any:
    """Return `term` in a form usable as a dict key, wrapping lists and maps."""
    if isinstance(term, list):
        return ListKey(hashable_key(t) for t in term)
    if isinstance(term, dict):
        return MapKey((hashable_key(k), hashable_key(v)) for k, v in term.items())
    if isinstance(term, tuple) and not isinstance(term, (ListKey, MapKey)):
        return tuple(hashable_key(t) for t in term)
    return term


_MISSING = object()


def term_equal(a: Any, b: Any) -> bool:
    """Exact (===) equality of two native terms: 1 != 1.0, True != 1, "a" != Atom("a")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(term_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for k, v in a.items():
            # keys: look up by an equal key of the same type
            if k not in b:
                return False
            other_key = next((kk for kk in b if kk == k and type(kk) is type(k)), _MISSING)
            if other_key is _MISSING or not term_equal(v, b[other_key]):
                return False
        return True
    if isinstance(a, float):
        # Elixir floats compare by value; NaN cannot be sent by the BEAM anyway
        return a == b or (a != a and b != b)
    return a == b


NIL = None
OK = Atom("ok")
ERROR = Atom("error")


def atom(name: str) -> Atom:
    """Shorthand for Atom(name)."""
    return Atom(name)


def is_identifier(term: Any) -> bool:
    """An atom (including nil/true/false) or a binary."""
    return isinstance(term, (str, Atom, bytes, bool)) or term is None
