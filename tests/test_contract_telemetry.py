"""Contract rows for telemetry (docs/contract.md, "Telemetry"): all eight events, with their exact
measurements and metadata, in the order they happen, and no event where none is due."""

from __future__ import annotations

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")


def event(group: str, name: str, measurements: dict, metadata: dict) -> tuple:
    return ([A("snakepit"), A("session_store"), A(group), A(name)], measurements, metadata)


def count(n: int = 1) -> dict:
    return {A("count"): n}


def meta(sid: str = "s1", **more) -> dict:
    return {A("session_id"): sid, **{A(key): value for key, value in more.items()}}


def assert_events(client, expected: list) -> None:
    actual = client.take_events()
    assert term_equal(actual, expected), actual


def setup(client) -> None:
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "t", A("float"), 0.5, [(A("constraints"), {A("max"): 1.0})])
    client.take_events()


def test_registered(client):
    client.call("create_session", "s1")
    assert_events(client, [])
    client.call("register_variable", "s1", "n", "integer", 1)
    assert_events(client, [event("variable", "registered", count(), meta(type=A("integer")))])


def test_get_and_has_variable(client):
    setup(client)
    client.call("get_variable", "s1", "t")
    client.call("get_variable_value", "s1", "t")
    client.call("has_variable?", "s1", "t")
    get = event("variable", "get", count(), meta(cache_hit=False))
    assert_events(client, [get, get, get])
    client.call("get_variable", "s1", "missing")
    client.call("get_variable", "nope", "t")
    assert_events(client, [])


def test_updated(client):
    setup(client)
    client.call("update_variable", "s1", "t", 0.75)
    client.call("update_variable", "s1", "t", 0.25)
    assert_events(
        client,
        [
            event("variable", "updated", {A("count"): 1, A("version"): 1}, meta(type=A("float"))),
            event("variable", "updated", {A("count"): 1, A("version"): 2}, meta(type=A("float"))),
        ],
    )


def test_deleted(client):
    setup(client)
    client.call("delete_variable", "s1", "t")
    assert_events(client, [event("variable", "deleted", count(), meta())])
    client.call("delete_variable", "s1", "t")
    assert_events(client, [])


def test_validation_failed_and_constraint_violation_in_register(client):
    client.call("create_session", "s1")
    client.take_events()
    client.call("register_variable", "s1", "x", A("integer"), "nope")
    assert_events(client, [event("variable", "validation_failed", count(), meta(type=A("integer")))])
    client.call("register_variable", "s1", "x", A("integer"), 9, [(A("constraints"), {A("max"): 3})])
    assert_events(client, [event("variable", "constraint_violation", count(), meta(type=A("integer")))])


def test_validation_failed_and_constraint_violation_in_update(client):
    setup(client)
    client.call("update_variable", "s1", "t", "nope")
    client.call("update_variable", "s1", "t", 3.0)
    assert_events(
        client,
        [
            event("variable", "validation_failed", count(), meta(type=A("float"))),
            event("variable", "constraint_violation", count(), meta(type=A("float"))),
        ],
    )


def test_batch_get_counts_the_requested_identifiers(client):
    setup(client)
    client.call("get_variables", "s1", ["t", "missing", A("t")])
    assert_events(client, [event("variables", "batch_get", count(3), meta())])


def test_batch_update_non_atomic(client):
    setup(client)
    client.call("register_variable", "s1", "u", A("integer"), 1)
    client.take_events()
    client.call("update_variables", "s1", {"t": "bad", "u": 2})
    assert_events(
        client,
        [
            event("variable", "validation_failed", count(), meta(type=A("float"))),
            event("variable", "updated", {A("count"): 1, A("version"): 1}, meta(type=A("integer"))),
            event("variables", "batch_update", count(2), meta(atomic=False)),
        ],
    )


def test_batch_update_atomic_failure_emits_per_failing_entry(client):
    setup(client)
    client.call("register_variable", "s1", "u", A("integer"), 1)
    client.take_events()
    client.call("update_variables", "s1", {"t": 5.0, "u": "x", "v": 1}, [(A("atomic"), True)])
    assert_events(
        client,
        [
            event("variable", "constraint_violation", count(), meta(type=A("float"))),
            event("variable", "validation_failed", count(), meta(type=A("integer"))),
            event("variables", "batch_update", count(3), meta(atomic=True)),
        ],
    )


def test_batch_update_atomic_success(client):
    setup(client)
    client.call("update_variables", "s1", {"t": 0.1}, [(A("atomic"), True)])
    assert_events(
        client,
        [
            event("variable", "updated", {A("count"): 1, A("version"): 1}, meta(type=A("float"))),
            event("variables", "batch_update", count(1), meta(atomic=True)),
        ],
    )


def test_no_events_for_session_and_program_calls(client):
    client.call("create_session", "s1")
    client.call("get_session", "s1")
    client.call("store_program", "s1", "p", 1)
    client.call("store_global_program", "g", 1)
    client.call("list_sessions")
    client.call("get_stats")
    client.call("delete_session", "s1")
    assert_events(client, [])
