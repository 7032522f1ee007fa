"""Term-by-term comparison of a recorded frame with a replayed one, under the matching rules.

`Matcher.match(expected, actual)` walks both terms together and returns None when they match,
else the first `Mismatch`: where it is (a path of steps from the frame down), the two sub-terms
and a reason. Values a rule claims (rules.py) are checked by that rule; everything else must be
strictly equal (1 != 1.0, true != 1, "a" != :a). Generated ids bind as they are met, map keys
included, so a later frame using another id than the bound one is a mismatch. A compact variable
in a reply (docs/protocol.md) is compared as the struct it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from sidecar.elixir.inspect import inspect, inspect_key, term_order_key
from sidecar.replay.rules import ClockWindow, IdBindings, Rule, RuleContext, Where, default_rules, generated_id_parts
from sidecar.store.structs import expand_compact_variable
from sidecar.terms import Atom, ImproperList, ListKey, MapKey, StrictKey, term_equal


class _Absent:
    """No term here (a missing map key, a list that ended)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
_SHORT = 24


@dataclass(frozen=True)
class Step:
    """One step down a term: `kind` is "elem" (tuple), "index" (list), "key" (map) or "tail"
    (of an improper list); `container` is the recorded container, `position` the index or key."""

    kind: str
    container: Any
    position: Any


@dataclass
class Mismatch:
    """The first difference: its path, the recorded and the replayed sub-term, and why."""

    steps: list[Step]
    expected: Any
    actual: Any
    reason: str

    def location(self) -> str:
        """The frame with `<here>` at the difference: `{:reply, 7, {:ok, %{... value: <here>}}}`."""
        return render_location(self.steps)


def _short(term: Any) -> str:
    text = inspect(term)
    return text if len(text) <= _SHORT else "..."


def _struct_prefix(mapping: dict) -> str:
    name = mapping.get(Atom("__struct__"))
    if isinstance(name, Atom) and name.name.startswith("Elixir."):
        return "%" + inspect(name) + "{"
    return "%{"


def render_location(steps: Sequence[Step]) -> str:
    """The skeleton of the path: siblings elided, short tuple elements kept for orientation."""
    text = "<here>"
    for step in reversed(steps):
        if step.kind == "elem":
            parts = [text if i == step.position else _short(item) for i, item in enumerate(step.container)]
            text = "{" + ", ".join(parts) + "}"
        elif step.kind == "index":
            before = "..., " if step.position > 0 else ""
            after = ", ..." if step.position < len(step.container) - 1 else ""
            text = f"[{before}{text}{after}]"
        elif step.kind == "key":
            others = "... " if len(step.container) > 1 or step.position not in step.container else ""
            text = _struct_prefix(step.container) + others + inspect_key(step.position) + text + "}"
        else:  # tail
            text = f"[... | {text}]"
    return text


def _describe(term: Any) -> str:
    return "nothing" if term is ABSENT else inspect(term)


def _strict_key(key: Any) -> tuple:
    return (type(key), key)


def _unwrap(key: Any) -> Any:
    while isinstance(key, StrictKey):
        key = key.value
    if isinstance(key, ListKey):
        return list(key)
    if isinstance(key, MapKey):
        return dict(key)
    return key


def _sorted_keys(mapping: dict) -> list:
    keys = list(mapping)
    try:
        keys.sort(key=term_order_key)
    except TypeError:
        pass
    return keys


A_REPLY = Atom("reply")


class Matcher:
    """Compares recorded frames with replayed ones; holds the id bindings across frames."""

    def __init__(
        self,
        rules: Optional[list[Rule]] = None,
        bindings: Optional[IdBindings] = None,
        clock: Optional[ClockWindow] = None,
    ) -> None:
        self.rules = default_rules() if rules is None else rules
        self.context = RuleContext(bindings or IdBindings(), clock or ClockWindow())

    @property
    def bindings(self) -> IdBindings:
        return self.context.bindings

    def match(self, expected: Any, actual: Any) -> Optional[Mismatch]:
        """None when `actual` matches the recorded frame `expected`, else the first Mismatch."""
        frame_kind = expected[0] if isinstance(expected, tuple) and expected else None
        return self._match(expected, actual, [], Where(frame_kind, ()))

    # -----------------------------------------------------------------------------------------

    def _match(self, expected: Any, actual: Any, steps: list[Step], where: Where) -> Optional[Mismatch]:
        for rule in self.rules:
            if rule.applies(where, expected):
                reason = rule.check(expected, actual, self.context)
                return None if reason is None else Mismatch(list(steps), expected, actual, reason)
        if type(expected) is tuple and type(actual) is tuple and where.frame_kind is A_REPLY:
            # compact variables are compared as the structs they stand for, so the rules for
            # struct fields (times, ids) apply to them as well
            expected_struct = expand_compact_variable(expected)
            actual_struct = None if expected_struct is None else expand_compact_variable(actual)
            if expected_struct is not None and actual_struct is not None:
                return self._match_map(expected_struct, actual_struct, steps, where)
        if isinstance(expected, tuple) and type(expected) is tuple and type(actual) is tuple:
            return self._match_sequence(expected, actual, steps, where, "elem")
        if isinstance(expected, list) and type(actual) is list:
            return self._match_sequence(expected, actual, steps, where, "index")
        if isinstance(expected, ImproperList) and isinstance(actual, ImproperList):
            return self._match_improper(expected, actual, steps, where)
        if isinstance(expected, dict) and isinstance(actual, dict):
            return self._match_map(expected, actual, steps, where)
        if _scalar_equal(expected, actual):
            return None
        return Mismatch(list(steps), expected, actual, f"expected {_describe(expected)}, got {_describe(actual)}")

    def _match_sequence(self, expected, actual, steps, where, kind) -> Optional[Mismatch]:
        if kind == "elem" and len(expected) != len(actual):
            return Mismatch(
                list(steps),
                expected,
                actual,
                f"expected a tuple of {len(expected)} elements, got {len(actual)}: {inspect(actual)}",
            )
        inner = Where(where.frame_kind, (*where.keys, None))
        for index in range(max(len(expected), len(actual))):
            step = Step(kind, expected, index)
            if index >= len(expected):
                return Mismatch(
                    [*steps, Step(kind, actual, index)],
                    ABSENT,
                    actual[index],
                    f"expected the list to end after {len(expected)} elements, got more: {inspect(actual[index])}",
                )
            if index >= len(actual):
                return Mismatch(
                    [*steps, step],
                    expected[index],
                    ABSENT,
                    f"expected {inspect(expected[index])}, got nothing (the list ended after {len(actual)} elements)",
                )
            found = self._match(expected[index], actual[index], [*steps, step], inner)
            if found is not None:
                return found
        return None

    def _match_improper(self, expected, actual, steps, where) -> Optional[Mismatch]:
        found = self._match_sequence(expected.items, actual.items, steps, where, "index")
        if found is not None:
            return found
        return self._match(
            expected.tail, actual.tail, [*steps, Step("tail", expected, None)], Where(where.frame_kind, (*where.keys, None))
        )

    def _match_map(self, expected: dict, actual: dict, steps, where) -> Optional[Mismatch]:
        pairs = self._pair_keys(expected, actual)
        for expected_key, actual_key in pairs:
            step = Step("key", expected, expected_key)
            if actual_key is ABSENT:
                return Mismatch(
                    [*steps, step],
                    expected[expected_key],
                    ABSENT,
                    f"expected the key {inspect(_unwrap(expected_key))} with {inspect(expected[expected_key])}, got no such key",
                )
            if expected_key is not actual_key and generated_id_parts(expected_key) is not None:
                reason = self.bindings.bind(expected_key, actual_key)
                if reason is not None:
                    return Mismatch([*steps, step], expected_key, actual_key, f"map key: {reason}")
            inner = Where(where.frame_kind, (*where.keys, expected_key))
            found = self._match(expected[expected_key], actual[actual_key], [*steps, step], inner)
            if found is not None:
                return found
        paired = {id(a) for _, a in pairs}
        for key in _sorted_keys(actual):
            if id(key) not in paired:
                return Mismatch(
                    [*steps, Step("key", actual, key)],
                    ABSENT,
                    actual[key],
                    f"expected no key {inspect(_unwrap(key))}, got it with {inspect(actual[key])}",
                )
        return None

    def _pair_keys(self, expected: dict, actual: dict) -> list[tuple[Any, Any]]:
        """Each recorded key with its replayed key (ABSENT if none). Bound ids are looked up
        as their actual id; unbound generated ids pair, by ascending N, with leftover actual
        ids of the same name part."""
        by_strict = {_strict_key(k): k for k in actual}
        pairs: dict[int, tuple[Any, Any]] = {}
        order = _sorted_keys(expected)
        unbound: list[Any] = []
        taken: set[int] = set()
        for key in order:
            lookup = self.bindings.actual_of.get(key, key) if isinstance(key, str) else key
            if isinstance(key, str) and generated_id_parts(key) is not None and key not in self.bindings.actual_of:
                unbound.append(key)
                continue
            candidate = by_strict.get(_strict_key(lookup), ABSENT)
            if candidate is not ABSENT and not term_equal(_unwrap(candidate), _unwrap(lookup)):
                candidate = ABSENT
            if candidate is not ABSENT:
                taken.add(id(candidate))
            pairs[id(key)] = (key, candidate)
        if unbound:
            leftovers = [
                k
                for k in actual
                if id(k) not in taken and generated_id_parts(k) is not None and k not in self.bindings.recorded_of
            ]
            for key in sorted(unbound, key=lambda k: _id_parts(k)[1]):
                name = _id_parts(key)[0]
                same_name = sorted((k for k in leftovers if _id_parts(k)[0] == name), key=lambda k: _id_parts(k)[1])
                match = same_name[0] if same_name else ABSENT
                if match is not ABSENT:
                    leftovers.remove(match)
                pairs[id(key)] = (key, match)
        return [pairs[id(k)] for k in order]


def _scalar_equal(expected: Any, actual: Any) -> bool:
    """Strict (===) equality of two terms that are not containers of the same kind."""
    return type(expected) is type(actual) and term_equal(expected, actual)


def _id_parts(term: Any) -> tuple[str, int]:
    """`generated_id_parts` of a term known to be a generated id."""
    parts = generated_id_parts(term)
    assert parts is not None
    return parts
