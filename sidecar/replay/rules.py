"""The matching rules: values that legitimately differ between a recording and its replay.

A rule applies at a place (the frame's kind and the map key the value sits under) to a recorded
value of the right form, and then decides whether the replayed value is acceptable. Everything
no rule claims is compared exactly (`===`). The rules, documented in docs/replay.md:

* generated variable ids `var_<name>_<N>` (anywhere in a sidecar frame): bound recorded ->
  actual on first sight (same name part, positive N, one actual id per recorded id and back);
  every later use must be the bound id. Implemented by `IdBindings` plus `GeneratedIdRule`.
* monotonic times (`created_at`, `last_accessed`, `last_updated_at`, `started_at` map keys
  holding integers): an integer in the replayed sidecar's clock window.
* `"updated_at"` metadata stamps: an ISO 8601 UTC stamp of the recorded one's exact shape.
* `memory_usage_bytes`: a non-negative integer.
* the welcome's `os_pid` (a positive integer) and `version` (any binary).
* `:log` frame metadata `os_pid`, `line`, `function` (positive integer, integer, binary).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from sidecar.elixir.inspect import inspect
from sidecar.terms import Atom, ImproperList

GENERATED_ID = re.compile(r"\Avar_(.*)_([1-9][0-9]*)\Z", re.DOTALL)
ISO_UTC = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)\Z")
MONOTONIC_KEYS = frozenset(Atom(k) for k in ("created_at", "last_accessed", "last_updated_at", "started_at"))
A_WELCOME = Atom("welcome")
A_LOG = Atom("log")


def is_integer(term: Any) -> bool:
    """An Elixir integer (Python bools are Elixir's true/false, not integers)."""
    return isinstance(term, int) and not isinstance(term, bool)


def generated_id_parts(term: Any) -> Optional[tuple[str, int]]:
    """`(name, N)` of a `var_<name>_<N>` binary, None for anything else."""
    if not isinstance(term, str):
        return None
    found = GENERATED_ID.match(term)
    if found is None:
        return None
    return found.group(1), int(found.group(2))


@dataclass
class ClockWindow:
    """The replayed sidecar's clock: `start` is the `monotonic_time` its hello carried (None
    when no hello set it), `elapsed()` the seconds since that hello was sent."""

    start: Optional[int] = None
    elapsed: Callable[[], float] = lambda: 0.0

    def bounds(self) -> Optional[tuple[int, int]]:
        """The smallest and largest `now` the sidecar can have reported so far."""
        if self.start is None:
            return None
        return self.start, self.start + math.ceil(self.elapsed())


class IdBindings:
    """Recorded generated ids bound one-to-one to the ids the replayed sidecar generated."""

    def __init__(self) -> None:
        self.actual_of: dict[str, str] = {}
        self.recorded_of: dict[str, str] = {}

    def bind(self, recorded: str, actual: str) -> Optional[str]:
        """Bind `recorded` -> `actual`; a reason when that contradicts an earlier binding."""
        if recorded in self.actual_of:
            bound = self.actual_of[recorded]
            if bound == actual:
                return None
            return f"{inspect(recorded)} was bound to {inspect(bound)} by an earlier frame, but this frame has {inspect(actual)}"
        if actual in self.recorded_of:
            return (
                f"{inspect(actual)} already stands for the recorded id {inspect(self.recorded_of[actual])}, "
                f"so it cannot also stand for {inspect(recorded)}"
            )
        self.actual_of[recorded] = actual
        self.recorded_of[actual] = recorded
        return None

    def note_literals(self, term: Any) -> None:
        """Ids a request names that are not bound yet were written by the client: they stand
        for themselves."""
        for text in _binaries_in(term):
            if generated_id_parts(text) is not None and text not in self.actual_of and text not in self.recorded_of:
                self.bind(text, text)

    def rewrite(self, term: Any) -> Any:
        """`term` with every bound recorded id (a whole binary, or a map key) replaced by its
        actual id. Returns the very same object when nothing changed."""
        if not self.actual_of:
            return term
        return _rewrite(term, self.actual_of)


def _binaries_in(term: Any):
    if isinstance(term, str):
        yield term
    elif isinstance(term, (list, tuple)):
        for item in term:
            yield from _binaries_in(item)
    elif isinstance(term, dict):
        for key, value in term.items():
            yield from _binaries_in(key)
            yield from _binaries_in(value)
    elif isinstance(term, ImproperList):
        yield from _binaries_in(term.items)
        yield from _binaries_in(term.tail)


def _rewrite(term: Any, mapping: dict[str, str]) -> Any:
    if isinstance(term, str):
        return mapping.get(term, term)
    if isinstance(term, list):
        new_items = [_rewrite(item, mapping) for item in term]
        return term if all(a is b for a, b in zip(new_items, term)) else new_items
    if isinstance(term, tuple) and type(term) is tuple:
        new_tuple = tuple(_rewrite(item, mapping) for item in term)
        return term if all(a is b for a, b in zip(new_tuple, term)) else new_tuple
    if isinstance(term, dict):
        new_pairs = [(_rewrite(k, mapping), _rewrite(v, mapping)) for k, v in term.items()]
        if all(nk is k and nv is v for (nk, nv), (k, v) in zip(new_pairs, term.items())):
            return term
        return dict(new_pairs)
    if isinstance(term, ImproperList):
        new_items = _rewrite(term.items, mapping)
        new_tail = _rewrite(term.tail, mapping)
        if new_items is term.items and new_tail is term.tail:
            return term
        return ImproperList(new_items, new_tail)
    return term


@dataclass(frozen=True)
class Where:
    """The place of a value: the kind of frame (`:reply`, `:telemetry`, ...) and the chain of
    map keys from the frame down to the value (None for a tuple or list step)."""

    frame_kind: Any
    keys: Sequence[Any] = field(default_factory=tuple)

    @property
    def key(self) -> Any:
        """The map key the value sits directly under, None if its parent is not a map."""
        return self.keys[-1] if self.keys else None


@dataclass
class RuleContext:
    """What rules may consult and change: the id bindings and the sidecar's clock window."""

    bindings: IdBindings
    clock: ClockWindow


class Rule(Protocol):
    """A matching rule. `check` returns None when `actual` is acceptable, else the reason."""

    name: str

    def applies(self, where: Where, expected: Any) -> bool: ...

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]: ...


class GeneratedIdRule:
    """`var_<name>_<N>`: same name part, positive N, consistent with the bindings."""

    name = "generated variable id"

    def applies(self, where: Where, expected: Any) -> bool:
        return generated_id_parts(expected) is not None

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]:
        bound = context.bindings.actual_of.get(expected)
        if bound is not None:
            if actual == bound and isinstance(actual, str):
                return None
            return f"expected {inspect(expected)}, which an earlier frame bound to {inspect(bound)}, got {inspect(actual)}"
        expected_parts = generated_id_parts(expected)
        assert expected_parts is not None  # applies() said so
        name = expected_parts[0]
        actual_parts = generated_id_parts(actual)
        if actual_parts is None or actual_parts[0] != name:
            return f'expected a generated id of the shape "var_{name}_<N>" (recorded {inspect(expected)}), got {inspect(actual)}'
        return context.bindings.bind(expected, actual)


class MonotonicTimeRule:
    """Session and variable times: an integer within the replayed sidecar's clock window."""

    name = "monotonic time"

    def applies(self, where: Where, expected: Any) -> bool:
        return isinstance(where.key, Atom) and where.key in MONOTONIC_KEYS and is_integer(expected)

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]:
        if not is_integer(actual):
            return f"expected a monotonic time (an integer, recorded {inspect(expected)}), got {inspect(actual)}"
        bounds = context.clock.bounds()
        if bounds is None:
            return None
        low, high = bounds
        if low <= actual <= high:
            return None
        return (
            f"expected a monotonic time within the replayed clock's {low}..{high} "
            f"(recorded {inspect(expected)}), got {inspect(actual)}"
        )


def _stamp_shape(stamp: str) -> re.Pattern:
    return re.compile(r"\A" + re.sub(r"\d", r"\\d", re.escape(stamp)) + r"\Z")


def _parses_as_utc(stamp: str) -> bool:
    try:
        moment = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.utcoffset() == _dt.timedelta(0)


class UpdatedAtStampRule:
    """`"updated_at"` metadata: a valid ISO 8601 UTC stamp shaped like the recorded one."""

    name = "updated_at stamp"

    def applies(self, where: Where, expected: Any) -> bool:
        return (
            where.key == "updated_at"
            and isinstance(where.key, str)
            and isinstance(expected, str)
            and bool(ISO_UTC.match(expected))
        )

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]:
        if isinstance(actual, str) and _stamp_shape(expected).match(actual) and _parses_as_utc(actual):
            return None
        return f"expected an ISO 8601 UTC stamp shaped like {inspect(expected)}, got {inspect(actual)}"


@dataclass
class IntegerRule:
    """An integer at a given key (in given frame kinds), at least `minimum`."""

    name: str
    key: Atom
    minimum: int
    frame_kinds: Optional[frozenset] = None

    def applies(self, where: Where, expected: Any) -> bool:
        in_frame = self.frame_kinds is None or where.frame_kind in self.frame_kinds
        return in_frame and where.key is self.key and is_integer(expected)

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]:
        if is_integer(actual) and actual >= self.minimum:
            return None
        return f"expected an integer >= {self.minimum} ({self.name}), got {inspect(actual)}"


@dataclass
class AnyBinaryRule:
    """Any binary at a given key of given frame kinds."""

    name: str
    key: Atom
    frame_kinds: frozenset

    def applies(self, where: Where, expected: Any) -> bool:
        return where.frame_kind in self.frame_kinds and where.key is self.key and isinstance(expected, (str, bytes))

    def check(self, expected: Any, actual: Any, context: RuleContext) -> Optional[str]:
        if isinstance(actual, (str, bytes)):
            return None
        return f"expected a binary ({self.name}), got {inspect(actual)}"


def default_rules() -> list[Rule]:
    """The rules a replay uses, first match wins."""
    welcome = frozenset({A_WELCOME})
    log = frozenset({A_LOG})
    return [
        GeneratedIdRule(),
        MonotonicTimeRule(),
        UpdatedAtStampRule(),
        IntegerRule("memory figure", Atom("memory_usage_bytes"), 0),
        IntegerRule("the sidecar's OS pid", Atom("os_pid"), 1, welcome | log),
        AnyBinaryRule("the sidecar's version", Atom("version"), welcome),
        IntegerRule("a source line", Atom("line"), 0, log),
        AnyBinaryRule("a source function", Atom("function"), log),
    ]
