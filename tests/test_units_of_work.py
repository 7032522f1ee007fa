"""Units of work, on every backend: a call's writes commit together or not at all.

A call that answers `{:error, _}`, raises, or whose reply cannot be encoded leaves storage
exactly as it was (compared through the interface: tests/backends.py `snapshot`), and the
copying backend turns a record changed in place but never saved into a failure the memory
backend would hide.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from backends import BACKENDS, open_backend, snapshot

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import Sidecar
from sidecar.storage.base import Conflict, SessionRecord, VariableRecord
from sidecar.store.session_store import MAX_CONFLICT_RETRIES, SessionStore
from sidecar.terms import Atom as A

OK = A("ok")
ERROR = A("error")


class Served:
    """A sidecar on one backend, called the way the wire calls it."""

    def __init__(self, backend: str, directory: Any) -> None:
        self.storage = open_backend(backend, directory)
        self.sidecar = Sidecar(SidecarOptions(), clock_factory=lambda *_start: FakeClock(100), storage=self.storage)
        self.store = self.sidecar.store
        self._ids = itertools.count(1)

    def call(self, function: str, *args: Any) -> Any:
        events, frame = self.sidecar.serve_call(next(self._ids), A(function), list(args))
        self.store.flush()
        return codec.decode(frame[4:])[2]


@pytest.fixture(params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    made = Served(request.param, tmp_path)
    made.call("create_session", "s", {})
    made.call("register_variable", "s", A("t"), A("float"), 0.5, {})
    made.call("store_global_program", "g", 1)
    yield made
    made.storage.close()


def _break_after_writes(monkeypatch: pytest.MonkeyPatch, store: SessionStore) -> None:
    """Make every `session_changed` raise: each writing call fails after its first writes."""
    original = store.storage.begin

    def begin() -> Any:
        unit = original()

        def broken(*_args: Any, **_kwargs: Any) -> None:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(unit, "session_changed", broken)
        return unit

    monkeypatch.setattr(store.storage, "begin", begin)


@pytest.mark.parametrize(
    "call",
    [
        ("register_variable", "s", A("u"), A("integer"), 1),
        ("update_variable", "s", A("t"), 0.75),
        ("update_variable", "s", A("t"), 0.75, {"k": 1}),
        ("update_variables", "s", {A("t"): 0.25}),
        ("update_variables", "s", {A("t"): 0.25}, [(A("atomic"), True)]),
        ("delete_variable", "s", A("t")),
        ("store_program", "s", "p", {A("x"): 1}),
        (
            "import_variables",
            "s",
            [{A("id"): "var_i_9", A("name"): "i", A("type"): A("float"), A("value"): 1.0, A("created_at"): 5}],
        ),
        ("start_optimization", "s", A("t"), "o", None),
        ("store_worker_session", "s", "w2"),
    ],
)
def test_a_call_that_fails_after_writing_leaves_storage_as_it_was(
    served: Served, monkeypatch: pytest.MonkeyPatch, call: tuple
) -> None:
    before = snapshot(served.storage, ["g"])
    _break_after_writes(monkeypatch, served.store)
    result = served.call(*call)
    assert result[0] is ERROR and result[1][0] is A("internal_error") and "disk on fire" in result[1][1]
    monkeypatch.undo()
    assert snapshot(served.storage, ["g"]) == before


def test_a_reply_that_cannot_be_encoded_undoes_its_call(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(served.storage, ["g"])
    monkeypatch.setitem(served.sidecar.replies.renderers, A("update_variable"), lambda _result: object())
    result = served.call("update_variable", "s", A("t"), 0.75)
    assert result[0] is ERROR and result[1][0] is A("internal_error") and "could not be encoded" in result[1][1]
    assert snapshot(served.storage, ["g"]) == before
    monkeypatch.undo()
    assert served.call("update_variable", "s", A("t"), 0.75) is OK
    assert snapshot(served.storage, ["g"]) != before


def test_an_error_answer_undoes_whatever_the_call_did(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a write made before the store decided to refuse (none does today) is undone."""
    before = snapshot(served.storage, ["g"])
    store = served.store
    original = store.get_variable

    def touching_then_refusing(session_id: Any, ident: Any) -> Any:
        store.tx.touch_session(session_id, 10_000)
        store.tx.count("sessions_created", 5)
        return (ERROR, A("not_found")), []

    monkeypatch.setattr(store, "get_variable", touching_then_refusing)
    assert served.call("get_variable", "s", "t") == (ERROR, A("not_found"))
    monkeypatch.setattr(store, "get_variable", original)
    assert snapshot(served.storage, ["g"]) == before


def test_deletions_undone_put_everything_back_in_its_place(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("b", "c"):
        served.call("register_variable", "s", A(name), A("float"), 1.0)
    served.call("create_session", "s2", {})
    served.call("create_session", "s3", {})
    before = snapshot(served.storage, ["g"])
    store = served.store

    def delete_then_fail() -> Any:
        tx = store.tx
        tx.delete_variable("s", "var_b_2", "b")
        tx.delete_session("s2")
        tx.delete_global_program("g")
        raise RuntimeError("after the deletes")

    monkeypatch.setattr(store, "ping", delete_then_fail)
    assert served.call("ping")[0] is ERROR
    assert snapshot(served.storage, ["g"]) == before
    assert served.call("list_sessions") == ["s", "s2", "s3"]
    assert [variable[A("name")] for variable in served.call("list_variables", "s")[1]] == [A("t"), A("b"), A("c")]


def test_conflicts_run_the_call_again_and_give_up_in_the_end() -> None:
    store = SessionStore(clock=FakeClock())
    attempts = []

    def conflicting() -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise Conflict("someone else wrote")
        return OK, []

    assert store.transact(conflicting, lambda outcome: False) == (OK, [])
    assert len(attempts) == 3
    attempts.clear()

    def always() -> Any:
        attempts.append(1)
        raise Conflict("someone else wrote")

    with pytest.raises(Conflict):
        store.transact(always, lambda outcome: False)
    assert len(attempts) == MAX_CONFLICT_RETRIES


def _in_place_plain_update(self: SessionStore, session_id: Any, ident: Any, value: Any) -> Any:
    """A defective plain update: changes the record it read instead of storing a new one."""
    variable = self.tx.find_variable(session_id, ident.name if isinstance(ident, A) else ident)
    if variable is None or variable.type is not A("float"):
        return None
    variable.value = float(value)
    variable.version += 1
    return OK, []


@pytest.mark.parametrize("backend", ["memory", "copying"])
def test_the_copying_backend_catches_a_change_never_saved(backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SessionStore, "_plain_update", _in_place_plain_update)
    served = Served(backend, tmp_path)
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    assert served.call("update_variable", "s", A("t"), 0.75) is OK
    value = served.call("get_variable_value", "s", A("t"))
    if backend == "memory":
        assert value == 0.75  # the live record was changed: the defect goes unseen here
    else:
        assert value == 0.5  # only what is saved is kept: the contract suite fails on this


def test_records_handed_out_by_the_copying_backend_are_copies(tmp_path: Any) -> None:
    storage = open_backend("copying", tmp_path)
    tx = storage.begin()
    tx.insert_session(SessionRecord("s", 1, 1, 10, metadata={"k": [1]}))
    variable = VariableRecord("var_a_1", A("a"), A("float"), 1.0, metadata={"m": 1})
    tx.put_variable("s", variable, "a")
    tx.commit()
    variable.metadata["m"] = 2  # the store's object, after it was saved
    got = storage.get_variable("s", "var_a_1")
    assert got is not variable and got.metadata == {"m": 1}
    got.metadata["m"] = 3
    assert storage.get_variable("s", "var_a_1").metadata == {"m": 1}
    storage.get_session("s").metadata["k"].append(2)
    assert storage.get_session("s").metadata == {"k": [1]}
