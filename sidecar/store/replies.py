"""Store results as wire terms: the layer between the calls and the protocol.

The store answers with plain records (`VariableRecord`, `SessionContents`); this turns them
into what Elixir expects: variable and session structs (or the compact variable tuple the
harness asked for, `structs.compact_variable`), export maps, and times on the BEAM's monotonic
clock (`structs`, with the clock's `to_beam`).

A variable's encoded form is cached, keyed by its record's stamp (a number no other record
state has had, `storage.base.new_stamp`) and checked against its id: a record never changes, so
an entry can never go stale, and a variable read again unchanged costs a lookup instead of an
encoding. The cache is bounded (`CACHE_ENTRIES` per form; when full, the older half is dropped)
and emptied when the settings it depends on change (struct module, time offset: `configure`).

Encoded on the first read, not at write time: with the harness's read cache (docs/harness.md,
"Read cache") the sidecar sees at most about one read per written state (the refill after the
write's invalidation), so encoding at write time would cost every update the encoding (more than
the rest of a plain update's store work) to save the same amount on that one read, and a state
never read would pay it for nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from sidecar.codec import encode_body
from sidecar.storage.base import SessionContents, VariableRecord
from sidecar.store.config import StoreConfig
from sidecar.store.structs import compact_variable, export_variable, render_session, render_variable
from sidecar.terms import Atom, Encoded

OK = Atom("ok")
A_FOUND = Atom("found")

CACHE_ENTRIES = 50_000
"""Encoded variables kept per form (struct, compact): about 200 bytes each for small values."""

CACHE_VALUE_BYTES = 64 * 1024
"""A variable whose encoding is larger than this is encoded again on each read (it would crowd
out the small ones; its own encoding dwarfs the lookup anyway)."""


class Replies:
    """Renders the results of the calls that answer with records; everything else unchanged."""

    def __init__(self, config: StoreConfig, clock: Any, cache_entries: int = CACHE_ENTRIES) -> None:
        self._limit = cache_entries
        self._structs: dict[int, tuple[str, Encoded]] = {}
        self._compacts: dict[int, tuple[str, Encoded]] = {}
        self.configure(config, clock)
        self.renderers: dict[Atom, Callable[[Any], Any]] = {
            Atom("create_session"): self._ok_session,
            Atom("get_session"): self._ok_session,
            Atom("put_session_if"): self._ok_session,
            Atom("fetch_session_for_update"): self._ok_session_revision,
            Atom("get_variable"): self._ok_variable,
            Atom("list_variables"): self._ok_variables,
            Atom("get_variables"): self._ok_found,
            Atom("export_variables"): self._ok_exports,
        }
        """Call name -> its renderer (`render`); calls not listed answer plain terms."""

    def configure(self, config: StoreConfig, clock: Any) -> None:
        """New settings (from `:hello`): the cached encodings depend on them, so they go."""
        self.config = config
        self.clock = clock
        self._to_beam = clock.to_beam
        self._variable_read = self.compact_term if config.compact_variables else self.struct_term
        self._structs.clear()
        self._compacts.clear()

    def render(self, function: Atom, result: Any) -> Any:
        """The wire term of `function`'s `result`."""
        renderer = self.renderers.get(function)
        return result if renderer is None else renderer(result)

    # variables ---------------------------------------------------------------------------

    def struct_term(self, variable: VariableRecord) -> Encoded:
        """The variable's struct, encoded (cached)."""
        entry = self._structs.get(variable.stamp)
        if entry is not None and entry[0] == variable.id:
            return entry[1]
        encoded = Encoded(encode_body(render_variable(variable, self.config.variable_struct, self._to_beam)))
        self._keep(self._structs, variable, encoded)
        return encoded

    def compact_term(self, variable: VariableRecord) -> Encoded:
        """The variable's compact tuple, encoded (cached)."""
        entry = self._compacts.get(variable.stamp)
        if entry is not None and entry[0] == variable.id:
            return entry[1]
        encoded = Encoded(encode_body(compact_variable(variable, self.config.variable_struct, self._to_beam)))
        self._keep(self._compacts, variable, encoded)
        return encoded

    def _keep(self, cache: dict, variable: VariableRecord, encoded: Encoded) -> None:
        if len(encoded.etf) > CACHE_VALUE_BYTES:
            return
        if len(cache) >= self._limit:
            # The older half goes at once. Deleting the first key one insert at a time made every
            # insert scan the deleted slots at the front of the dict (`next(iter(cache))` skips
            # them until the next resize): 27 us per new state at the bound instead of 7.
            kept = list(cache.items())[len(cache) // 2 :]
            cache.clear()
            cache.update(kept)
        cache[variable.stamp] = (variable.id, encoded)

    # renderers ---------------------------------------------------------------------------

    def session_term(self, contents: SessionContents) -> dict:
        config = self.config
        return render_session(contents, config.session_struct, config.variable_struct, self._to_beam, self.struct_term)

    def _ok_session(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 2 and result[0] is OK:
            return (OK, self.session_term(result[1]))
        return result

    def _ok_session_revision(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 3 and result[0] is OK:
            return (OK, self.session_term(result[1]), result[2])
        return result

    def _ok_variable(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 2 and result[0] is OK:
            return (OK, self._variable_read(result[1]))
        return result

    def _ok_variables(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 2 and result[0] is OK:
            read = self._variable_read
            return (OK, [read(variable) for variable in result[1]])
        return result

    def _ok_found(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 2 and result[0] is OK:
            answer = result[1]
            read = self._variable_read
            found = {key: read(variable) for key, variable in answer[A_FOUND].items()}
            return (OK, {**answer, A_FOUND: found})
        return result

    def _ok_exports(self, result: Any) -> Any:
        if type(result) is tuple and len(result) == 2 and result[0] is OK:
            to_beam = self._to_beam
            return (OK, [export_variable(variable, to_beam) for variable in result[1]])
        return result
