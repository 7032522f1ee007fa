"""`term_depth`: how deeply a native term nests, counted as the codec counts it (`MAX_TERM_DEPTH`)."""

from __future__ import annotations

from typing import Any

from sidecar.codec.decode import (
    _dec_new_fun,
)
from sidecar.codec.etf import (
    MAX_TERM_DEPTH,
    NEW_FUN_EXT,
    _too_deep,
)
from sidecar.terms import Atom, BitString, Encoded, ImproperList, ListKey, MapKey, Opaque, StrictKey

# ---------------------------------------------------------------------------------------------
# term_depth
# ---------------------------------------------------------------------------------------------

SCALAR_TYPES = frozenset((str, bytes, int, float, bool, type(None), Atom, BitString, Encoded))
"""Types whose values have depth 0 (`term_depth`) without looking inside: a type test is all a
caller needs for the commonest arguments."""


def _children(term: Any) -> tuple[bool, Any]:
    """`(is_level, parts)`: whether `term` is one level of nesting, and the terms inside it
    (None for a leaf). `[]` is a leaf; a StrictKey and an improper list without items are not
    levels of their own (their one part is at their level)."""
    kind = type(term)
    if kind is list or kind is ListKey:
        return (True, term) if term else (False, None)
    if kind is dict:
        return True, [part for pair in term.items() for part in pair]
    if kind is tuple:
        return True, term
    if kind is MapKey:
        return True, [part for pair in term for part in pair]
    if kind is StrictKey:
        return False, (term.value,)
    if kind is ImproperList:
        if not term.items:
            return False, (term.tail,)
        return True, [*term.items, term.tail]
    if kind is Opaque:
        free = _fun_free_variables(term)
        return (True, free) if free else (False, None)
    if isinstance(term, (list, tuple, dict)):  # subclasses: as the encoder writes them
        return _children(list(term) if isinstance(term, list) else tuple(term) if isinstance(term, tuple) else dict(term))
    return False, None


def _fun_free_variables(term: Opaque) -> list:
    """The free variables of a NEW_FUN_EXT fun (an empty list for any other opaque term)."""
    etf = term.etf
    if term.kind != "fun" or not etf or etf[0] != NEW_FUN_EXT:
        return []
    try:
        return _dec_new_fun(etf, 0, 0)[2]
    except Exception:  # not a fun this codec can read: it has no parts it can see
        return []


def term_depth(term: Any, cap: int | None = None) -> int:
    """The nesting depth of a native term, as decode and encode count it (module docstring).

    With `cap`, stops as soon as the depth is known to be over it and returns `cap + 1`, so
    `term_depth(t, n) > n` asks "deeper than n?" (the dispatch layer's check): a walk that
    recurses at most `cap + 1` levels, for speed (scalars are skipped by a type test, only
    containers cost a call). Without `cap`, an iterative walk that measures any depth. A
    `terms.Encoded` counts as 0 (its bytes are not read)."""
    if type(term) in SCALAR_TYPES:
        return 0
    if cap is not None:
        try:
            return _capped_depth(term, cap)
        except _DeeperThanCap:
            return cap + 1
    deepest = 0
    stack: list[tuple[Any, int]] = [(term, 0)]
    pop, push = stack.pop, stack.append
    scalars = SCALAR_TYPES
    while stack:
        item, level = pop()
        is_level, parts = _children(item)
        if is_level:
            level += 1
            if level > deepest:
                deepest = level
        if parts:
            for part in parts:
                if type(part) not in scalars:
                    push((part, level))
    return deepest


class _DeeperThanCap(Exception):
    """Raised out of `_capped_depth` as soon as a container is met with no levels left."""


def _capped_depth(term: Any, budget: int) -> int:
    """The depth of `term` (not a scalar), or _DeeperThanCap when it is over `budget`."""
    kind = type(term)
    scalars = SCALAR_TYPES
    deepest = 0
    if kind is dict:
        if budget <= 0:
            raise _DeeperThanCap
        for key, value in term.items():
            if type(key) not in scalars:
                depth = _capped_depth(key, budget - 1)
                if depth > deepest:
                    deepest = depth
            if type(value) not in scalars:
                depth = _capped_depth(value, budget - 1)
                if depth > deepest:
                    deepest = depth
        return deepest + 1
    if kind is list or kind is tuple:
        if not term and kind is list:
            return 0
        if budget <= 0:
            raise _DeeperThanCap
        for part in term:
            if type(part) not in scalars:
                depth = _capped_depth(part, budget - 1)
                if depth > deepest:
                    deepest = depth
        return deepest + 1
    is_level, parts = _children(term)  # wrappers, improper lists, funs, subclasses
    inner = budget - 1 if is_level else budget
    if is_level and budget <= 0:
        raise _DeeperThanCap
    for part in parts or ():
        if type(part) not in scalars:
            depth = _capped_depth(part, inner)
            if depth > deepest:
                deepest = depth
    return deepest + 1 if is_level else deepest


def _check_depth_for_decode(term: Any) -> Any:
    if term_depth(term, MAX_TERM_DEPTH) > MAX_TERM_DEPTH:
        raise _too_deep()
    return term
