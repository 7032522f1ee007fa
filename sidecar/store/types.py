"""The eight variable types: coercion, validation and constraint rules, with the contract's
messages.

Interface (docs/architecture.md):

    resolve_type(type_term) -> Atom                  # :float / "float" -> Atom("float")
    coerce(type_atom, value) -> value                # raises ValidationFailed(message)
    check_constraints(type_atom, value, constraints) # raises ConstraintViolation(message)
    compile_pattern(source, options="") -> PcrePattern | None   # sidecar.store.pcre, re-exported

Values are native terms (sidecar/terms.py). Python's bool subclasses int, so every number test
here excludes True/False: Elixir booleans are atoms, never numbers.

Decisions where the contract is silent (see also the module's tests):

* A binary that is not valid UTF-8 (`bytes`) is still a binary, as Elixir's `is_binary/1` says:
  :string, :choice and :module accept it unchanged; its length counts each invalid byte as one
  grapheme (as `String.length/1` does) and patterns match its raw bytes.
* Constraint maps are read by atom key only (`%{min: 0}`), like the original's `Map.get(c, :min)`:
  a string key ("min") is ignored there, so honouring it here would answer differently.
* Where the original gives an answer for an odd constraint, we give the same one. A bound that is
  nil or false is absent (Elixir `cond` truthiness); a bound that is not a number compares by
  Erlang term order (a number is smaller than any other term), so a non-numeric `min`/
  `min_length` always fails and a non-numeric `max`/`max_length` always passes. `enum` [] rejects
  every string; `choices`/`allowed_modules` [] (or nil) accept any. Membership is exact (`in`):
  the coerced value is a binary, so an atom in `choices` never matches it.
* Where the original crashed (a `pattern` that is neither a binary nor a Regex struct; an `enum`,
  `choices` or `allowed_modules` that is not a list; constraints that are not a map),
  ConstraintViolation says "invalid constraint <key>: <inspect>" / "invalid constraints: ...".
  Interpolating a Regex struct raised in Elixir; we print its source.
* An integer too large for a float (|n| > 1.8e308) is rejected by :float and :embedding with
  their usual messages (Elixir raised ArithmeticError). Python inf/nan floats (never sent by the
  BEAM) coerce to :infinity/:negative_infinity/:nan for :float.
* check_constraints coerces its value first (coercion is idempotent), so it never trips on a value
  of the wrong shape; it raises ValidationFailed for a value the type rejects.
* Integers of any size print in full in messages, as Elixir prints them (`value 2**20000 is
  above maximum 10` gives all 6,021 digits): `elixir_format.integer_text`, not `str`, which
  CPython refuses past 4300 digits. Past 100,000 digits one prints as `#Integer<N bits>`.

Patterns are PCRE (Elixir's Regex) run with the `regex` package: a pattern without the `u`
option works on bytes, as PCRE does without it (`.` is one byte; `\\w`, `\\s` and caseless
matching classify each byte as Latin-1, as OTP's PCRE character tables do). A few PCRE
spellings Python lacks are translated (`\\Q..\\E`, `\\Z`, `\\k<name>`, `\\x{hh}`, a literal
`{,n}`); a pattern neither compiles is invalid and, for `pattern`, matches literally.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import regex

from sidecar.elixir.format import format_number, join, to_string_term
from sidecar.elixir.inspect import describe, inspect
from sidecar.store.pcre import PcrePattern, compile_pattern, pattern_from_term
from sidecar.terms import Atom, ImproperList, term_equal

__all__ = [
    "TYPE_NAMES",
    "TYPE_ATOMS",
    "COERCERS_BY_ATOM",
    "ValueRejected",
    "ValidationFailed",
    "ConstraintViolation",
    "UnknownType",
    "resolve_type",
    "coerce",
    "check_constraints",
    "validate",
    "grapheme_length",
    "PcrePattern",
    "compile_pattern",
    "pattern_from_term",
]


TYPE_NAMES: tuple[str, ...] = (
    "float",
    "integer",
    "string",
    "boolean",
    "choice",
    "module",
    "embedding",
    "tensor",
)
_TYPE_ATOMS: dict[str, Atom] = {name: Atom(name) for name in TYPE_NAMES}
TYPE_ATOMS: frozenset = frozenset(_TYPE_ATOMS.values())
"""The eight type atoms (`variable.type in TYPE_ATOMS`: already resolved, no call needed)."""

INFINITY = Atom("infinity")
NEGATIVE_INFINITY = Atom("negative_infinity")
NAN = Atom("nan")
_SPECIAL_FLOATS = (INFINITY, NEGATIVE_INFINITY, NAN)
_SPECIAL_FLOAT_STRINGS = {"Infinity": INFINITY, "-Infinity": NEGATIVE_INFINITY, "NaN": NAN}


# ---------------------------------------------------------------------------------------------
# errors


class ValueRejected(Exception):
    """A value the type rules refuse; `.message` is the contract's binary message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(ValueRejected):
    """The value is not of the type (the `:validation_failed` telemetry event)."""


class ConstraintViolation(ValueRejected):
    """The value is of the type but breaks a constraint (the `:constraint_violation` event)."""


class UnknownType(Exception):
    """Not one of the eight types; `.type` is the type term exactly as given."""

    def __init__(self, type_term: Any) -> None:
        # inspect, not repr: repr raises for an integer of more than 4300 digits
        super().__init__(f"unknown type: {describe(type_term, 200)}")
        self.type = type_term


# ---------------------------------------------------------------------------------------------
# small predicates


def _is_number(value: Any) -> bool:
    """Elixir's is_number/1: an int or float, never a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_binary(value: Any) -> bool:
    return isinstance(value, (str, bytes))


def _is_atom(value: Any) -> bool:
    """Elixir's is_atom/1: includes nil, true and false."""
    return value is None or isinstance(value, (bool, Atom))


def _truthy(value: Any) -> bool:
    """Elixir truthiness: everything but nil and false."""
    return value is not None and value is not False


def _at_least(number: int | float, bound: Any) -> bool:
    """`number >= bound` in Erlang term order (a number is below every non-number)."""
    return number >= bound if _is_number(bound) else False


def _at_most(number: int | float, bound: Any) -> bool:
    """`number <= bound` in Erlang term order."""
    return number <= bound if _is_number(bound) else True


def _loose_equal(left: Any, right: Any) -> bool:
    """Elixir's `==`: numbers by value (1 == 1.0), containers element-wise, the rest exactly."""
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_loose_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, tuple) and isinstance(right, tuple) and type(left) is type(right):
        return len(left) == len(right) and all(_loose_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        if len(left) != len(right):
            return False
        for key, value in left.items():
            other = [k for k in right if term_equal(k, key)]
            if not other or not _loose_equal(value, right[other[0]]):
                return False
        return True
    return term_equal(left, right)


def _is_member(value: Any, items: list) -> bool:
    """`value in items` (exact match, as :lists.member/2)."""
    return any(term_equal(value, item) for item in items)


def grapheme_length(value: str | bytes) -> int:
    """`String.length/1`: extended grapheme clusters; each invalid UTF-8 byte counts as one."""
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    return len(regex.findall(r"\X", text))


# ---------------------------------------------------------------------------------------------
# resolve_type


def resolve_type(type_term: Any) -> Atom:
    """The type atom for `:float` or `"float"` (and the other seven); else raise UnknownType."""
    if type(type_term) is Atom and type_term in TYPE_ATOMS:
        return type_term
    if isinstance(type_term, Atom) and type_term.name in _TYPE_ATOMS:
        return type_term
    if isinstance(type_term, str) and type_term in _TYPE_ATOMS:
        return _TYPE_ATOMS[type_term]
    raise UnknownType(type_term)


# ---------------------------------------------------------------------------------------------
# coercion


def _coerce_float(value: Any) -> Any:
    if type(value) is float and value - value == 0.0:  # finite: the common case
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return NAN
        if math.isinf(value):
            return INFINITY if value > 0 else NEGATIVE_INFINITY
        return value
    if _is_number(value):
        try:
            return float(value)
        except OverflowError:
            raise ValidationFailed("must be a number") from None
    if isinstance(value, Atom) and value in _SPECIAL_FLOATS:
        return value
    if isinstance(value, str) and value in _SPECIAL_FLOAT_STRINGS:
        return _SPECIAL_FLOAT_STRINGS[value]
    raise ValidationFailed("must be a number")


def _coerce_integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        if value.is_integer():
            return int(value)
        raise ValidationFailed(f"must be a whole number, got {format_number(value)}")
    raise ValidationFailed("must be an integer")


def _coerce_string(value: Any) -> str | bytes:
    if _is_binary(value):
        return value
    if value is None:
        raise ValidationFailed("cannot be nil")
    if _is_atom(value):
        return to_string_term(value)
    raise ValidationFailed("must be a string")


def _coerce_boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if type(value) is int and value in (0, 1):
        return value == 1
    raise ValidationFailed("must be a boolean (true or false)")


def _identifier_coercer(message: str) -> Callable[[Any], Any]:
    """:choice and :module: a binary as is, any atom (nil too, as `""`) as its string."""

    def coerce_identifier(value: Any) -> str | bytes:
        if _is_binary(value):
            return value
        if _is_atom(value):
            return to_string_term(value)
        raise ValidationFailed(message)

    return coerce_identifier


def _coerce_embedding(value: Any) -> list[float]:
    if isinstance(value, ImproperList):
        # an improper list is a list to Elixir, but Enum.all?/2 cannot walk it
        raise ValidationFailed("must be a list of numbers")
    if not isinstance(value, list):
        raise ValidationFailed("must be a numeric list")
    if not all(_is_number(item) for item in value):
        raise ValidationFailed("must be a list of numbers")
    try:
        floats = [float(item) for item in value]
    except OverflowError:
        raise ValidationFailed("must be a list of numbers") from None
    if not all(math.isfinite(item) for item in floats):
        raise ValidationFailed("must be a list of numbers")
    return floats


def _flattened_count(items: list) -> int | None:
    """`length(List.flatten(items))`, or None when a nested element is an improper list."""
    count = 0
    stack: list[Iterator[Any]] = [iter(items)]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, ImproperList):
            return None
        else:
            count += 1
    return count


_HUGE_PRODUCT = 1 << 64
"""Past this, an integer shape's product can only come back to a data count through a zero."""


def _shape_product(shape: list) -> int | float | None:
    """`Enum.reduce(shape, 1, &(&1 * &2))`, or None where Elixir would raise (a non-number).

    Multiplying out a shape of huge integers can take hours; once the product of integers is
    past `_HUGE_PRODUCT` and only integers follow, the answer is decided (zero if a zero
    follows, else larger than any list's length), and that is what is returned."""
    if not all(_is_number(dimension) for dimension in shape):
        return None
    product: int | float = 1
    for position, dimension in enumerate(shape):
        try:
            product = product * dimension
        except OverflowError:
            return None
        if type(product) is int and abs(product) > _HUGE_PRODUCT:
            rest = shape[position + 1 :]
            if all(type(item) is int for item in rest):
                return 0 if 0 in rest else _HUGE_PRODUCT + 1
    return product


def _coerce_tensor(value: Any) -> dict:
    not_tensor = ValidationFailed("must be a tensor with shape and data")
    if not isinstance(value, dict) or "shape" not in value or "data" not in value:
        raise not_tensor
    shape, data = value["shape"], value["data"]
    if not isinstance(shape, list) or not isinstance(data, list):
        raise not_tensor
    expected_size = _shape_product(shape)
    actual_size = _flattened_count(data)
    if expected_size is None or actual_size is None:
        raise not_tensor
    if expected_size != actual_size:
        raise ValidationFailed("data size doesn't match shape")
    return value


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "float": _coerce_float,
    "integer": _coerce_integer,
    "string": _coerce_string,
    "boolean": _coerce_boolean,
    "choice": _identifier_coercer("must be a string"),
    "module": _identifier_coercer("must be a module name"),
    "embedding": _coerce_embedding,
    "tensor": _coerce_tensor,
}


def coerce(type_atom: Any, value: Any) -> Any:
    """The value validated and converted to the type's stored form; raises ValidationFailed.

    `type_atom` may also be the type's string form; an unknown type raises UnknownType.
    """
    if type(type_atom) is Atom:
        coercer = COERCERS_BY_ATOM.get(type_atom)
        if coercer is not None:
            return coercer(value)
    return _COERCERS[resolve_type(type_atom).name](value)


# ---------------------------------------------------------------------------------------------
# constraints


_A_MIN = Atom("min")
_A_MAX = Atom("max")


def _constraint(constraints: dict, key: str) -> Any:
    return constraints.get(Atom(key))


def _invalid_constraint(key: str, bound: Any) -> ConstraintViolation:
    return ConstraintViolation(f"invalid constraint {key}: {inspect(bound)}")


def _check_numeric_range(value: Any, constraints: dict) -> None:
    kind = type(value)
    if kind is not float and kind is not int and value in _SPECIAL_FLOATS:
        return
    if not constraints:
        return
    minimum = constraints.get(_A_MIN)
    kind = type(minimum)
    if kind is float or kind is int:  # a plain number bound: `_at_least` without its checks
        below = not value >= minimum
    else:
        below = _truthy(minimum) and not _at_least(value, minimum)
    if below:
        raise ConstraintViolation(f"value {format_number(value)} is below minimum {to_string_term(minimum)}")
    maximum = constraints.get(_A_MAX)
    kind = type(maximum)
    if kind is float or kind is int:
        above = not value <= maximum
    else:
        above = _truthy(maximum) and not _at_most(value, maximum)
    if above:
        raise ConstraintViolation(f"value {format_number(value)} is above maximum {to_string_term(maximum)}")


def _list_constraint(constraints: dict, key: str) -> list | None:
    """A list-valued constraint: None when absent or nil; a non-list is an invalid constraint."""
    items = _constraint(constraints, key)
    if items is None:
        return None
    if not isinstance(items, list):
        raise _invalid_constraint(key, items)
    return items


def _check_string(value: str | bytes, constraints: dict) -> None:
    length = grapheme_length(value)
    min_length = _constraint(constraints, "min_length")
    if _truthy(min_length) and not _at_least(length, min_length):
        raise ConstraintViolation(f"must be at least {to_string_term(min_length)} characters, got {length}")
    max_length = _constraint(constraints, "max_length")
    if _truthy(max_length) and not _at_most(length, max_length):
        raise ConstraintViolation(f"must be at most {to_string_term(max_length)} characters, got {length}")
    pattern_term = _constraint(constraints, "pattern")
    if _truthy(pattern_term):
        pattern = pattern_from_term(pattern_term)
        if pattern is None:
            raise _invalid_constraint("pattern", pattern_term)
        if not pattern.matches(value):
            raise ConstraintViolation(f"must match pattern: {to_string_term(pattern.source)}")
    enum = _constraint(constraints, "enum")
    if _truthy(enum):
        if not isinstance(enum, list):
            raise _invalid_constraint("enum", enum)
        if not _is_member(value, enum):
            raise ConstraintViolation(f"must be one of: {join(enum)}")


def _member_checker(key: str, prefix: str) -> Callable[[Any, dict], None]:
    """:choice / :module: `key` lists the allowed values; empty (or absent) allows any."""

    def check_member(value: Any, constraints: dict) -> None:
        allowed = _list_constraint(constraints, key)
        if allowed and not _is_member(value, allowed):
            raise ConstraintViolation(prefix + join(allowed))

    return check_member


def _check_embedding(value: list, constraints: dict) -> None:
    dimensions = _constraint(constraints, "dimensions")
    if _truthy(dimensions) and not _loose_equal(len(value), dimensions):
        raise ConstraintViolation(f"must have exactly {to_string_term(dimensions)} dimensions")


def _check_tensor(value: dict, constraints: dict) -> None:
    expected_shape = _constraint(constraints, "shape")
    if _truthy(expected_shape) and not _loose_equal(value.get("shape"), expected_shape):
        raise ConstraintViolation(f"shape must be {inspect(expected_shape)}")


def _no_constraints(value: Any, constraints: dict) -> None:
    return None


_CHECKERS: dict[str, Callable[[Any, dict], None]] = {
    "float": _check_numeric_range,
    "integer": _check_numeric_range,
    "string": _check_string,
    "boolean": _no_constraints,
    "choice": _member_checker("choices", "must be one of: "),
    "module": _member_checker("allowed_modules", "must be one of the allowed modules: "),
    "embedding": _check_embedding,
    "tensor": _check_tensor,
}


def check_constraints(type_atom: Any, value: Any, constraints: Any) -> None:
    """Check `value` against the type's constraints, in the contract's order.

    Raises ConstraintViolation with the contract's message. `constraints` is a map with atom
    keys (nil means none). The value is coerced first (idempotent), so an uncoerced value of the
    type is fine and a value not of the type raises ValidationFailed.
    """
    if type(constraints) is dict and type(type_atom) is Atom:  # the common case, same steps
        checker = _CHECKERS_BY_ATOM.get(type_atom)
        if checker is not None:
            checker(COERCERS_BY_ATOM[type_atom](value), constraints)
            return
    type_atom = resolve_type(type_atom)
    if constraints is None:
        constraints = {}
    if not isinstance(constraints, dict):
        raise ConstraintViolation(f"invalid constraints: expected a map, got {inspect(constraints)}")
    coerced = coerce(type_atom, value)
    _CHECKERS[type_atom.name](coerced, constraints)


COERCERS_BY_ATOM: dict[Atom, Callable[[Any], Any]] = {_TYPE_ATOMS[name]: fn for name, fn in _COERCERS.items()}
"""Type atom -> its coercer (`coerce(type_atom, value)` for a type atom, without the call)."""
_CHECKERS_BY_ATOM: dict[Atom, Callable[[Any, dict], None]] = {_TYPE_ATOMS[name]: fn for name, fn in _CHECKERS.items()}


def validate(type_term: Any, value: Any, constraints: Any = None) -> Any:
    """resolve_type, coerce, then check_constraints: the stored value, or the first error."""
    type_atom = resolve_type(type_term)
    coerced = coerce(type_atom, value)
    check_constraints(type_atom, coerced, constraints)
    return coerced
