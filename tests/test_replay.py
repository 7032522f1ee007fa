"""Replays of real Elixir traffic (tests/recordings) through the real `replay` command, and
recordings altered on purpose to show that a replay catches the change and names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from backends import BACKENDS, storage_option

from sidecar import codec
from sidecar.replay import cli
from sidecar.replay.recording import encode_recording, read_recording
from sidecar.replay.runner import load_entries
from sidecar.terms import Atom

RECORDINGS_DIR = Path(__file__).resolve().parent / "recordings"
RECORDINGS = sorted(RECORDINGS_DIR.glob("*.rec"))

A_CALL = Atom("call")
A_REPLY = Atom("reply")
A_TELEMETRY = Atom("telemetry")
A_ERROR = Atom("error")

# every call of the contract (docs/protocol.md, "Calls") plus the extension calls
CONTRACT_CALLS = {
    "create_session", "get_session", "delete_session", "session_exists?", "list_sessions",
    "cleanup_expired_sessions", "get_stats", "store_worker_session", "store_global_program",
    "get_global_program", "delete_global_program", "store_program", "update_program", "get_program",
    "register_variable", "get_variable", "get_variable_value", "update_variable", "delete_variable",
    "has_variable?", "list_variables", "get_variables", "update_variables", "export_variables",
    "import_variables", "fetch_session_for_update", "put_session_if", "ping", "start_optimization",
    "end_optimization", "run_cleanup",
}  # fmt: skip
TELEMETRY_EVENTS = {
    ("variable", "registered"), ("variable", "get"), ("variable", "updated"), ("variable", "deleted"),
    ("variables", "batch_get"), ("variables", "batch_update"), ("variable", "validation_failed"),
    ("variable", "constraint_violation"),
}  # fmt: skip


def run_replay(capsys, *args: Any) -> tuple[int, str]:
    status = cli.main([str(a) for a in args])
    return status, capsys.readouterr().out


def rewrite_recording(source: Path, target: Path, change: Callable[[int, str, Any], Any]) -> None:
    """Copy `source` to `target`, each frame's term replaced by `change(index, direction, term)`."""
    frames = []
    for frame in read_recording(source):
        term = codec.decode(frame.body)
        new_term = change(frame.index, frame.direction, term)
        frames.append((frame.direction, frame.body if new_term is term else codec.encode(new_term)))
    target.write_bytes(encode_recording(frames))


def replace_terms(term: Any, old: Any, new: Any) -> Any:
    """`term` with every sub-term strictly equal to `old` (and dict keys) replaced by `new`."""
    if type(term) is type(old) and term == old:
        return new
    if isinstance(term, list):
        return [replace_terms(t, old, new) for t in term]
    if type(term) is tuple:
        return tuple(replace_terms(t, old, new) for t in term)
    if isinstance(term, dict):
        return {replace_terms(k, old, new): replace_terms(v, old, new) for k, v in term.items()}
    return term


def first_index(path: Path, predicate: Callable[[Any], bool]) -> int:
    return next(e.frame.index for e in load_entries(path) if predicate(e.term))


def is_call(function: str, *leading_args: Any) -> Callable[[Any], bool]:
    def check(term: Any) -> bool:
        return term[0] is A_CALL and term[2] is Atom(function) and list(term[3][: len(leading_args)]) == list(leading_args)

    return check


# ---------------------------------------------------------------------------------------------
# the checked-in recordings


def test_recordings_are_checked_in():
    assert len(RECORDINGS) >= 5, f"expected the scenario recordings in {RECORDINGS_DIR}"


@pytest.mark.parametrize("storage", BACKENDS)
@pytest.mark.parametrize("recording", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_recording_replays_cleanly(recording: Path, storage: str, capsys):
    if storage == "redis":
        storage = storage_option("redis")  # the run's redis-server (a fresh prefix per recording)
    status, out = run_replay(capsys, "--storage", storage, recording)
    assert status == 0, out
    assert f"ok   {recording}" in out


def test_recordings_cover_the_contract_and_every_telemetry_event():
    calls: set[str] = set()
    events: set[tuple[str, ...]] = set()
    error_reasons: set[str] = set()
    for recording in RECORDINGS:
        for entry in load_entries(recording):
            term = entry.term
            if entry.kind is A_CALL:
                calls.add(term[2].name)
            elif entry.kind is A_TELEMETRY:
                events.add(tuple(a.name for a in term[1][2:]))
            elif entry.kind is A_REPLY and type(term[2]) is tuple and term[2][0] is A_ERROR:
                reason = term[2][1]
                error_reasons.add(reason.name if isinstance(reason, Atom) else repr(reason))
    assert CONTRACT_CALLS - calls == set()
    assert TELEMETRY_EVENTS - events == set()
    for reason in ("session_not_found", "not_found", "invalid_id", "invalid_ttl", "invalid_metadata",
                   "invalid_programs", "variable_locked_for_optimization", "already_optimizing"):  # fmt: skip
        assert reason in error_reasons
    joined = " ".join(error_reasons)
    for fragment in ("unknown_type", "validation_failed", "unknown_call", "bad_arity",
                     "bad_argument", "invalid_variable", "must be a number", "is above maximum"):  # fmt: skip
        assert fragment in joined


# ---------------------------------------------------------------------------------------------
# altered recordings fail, naming the change


def test_an_altered_value_fails_with_a_diff_naming_it(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "variables.rec"
    target = tmp_path / "altered.rec"
    reply_index = first_index(source, is_call("get_variable", "vars")) + 2  # after its :get telemetry
    rewrite_recording(source, target, lambda i, d, t: replace_terms(t, 0.7, 0.75) if i == reply_index else t)
    status, out = run_replay(capsys, target)
    assert status == 1
    assert f"frame {reply_index}, reply to request" in out
    assert 'request:\n    {:call, 6, :get_variable, ["vars", "var_temperature_1"]}' in out
    assert "value: <here>" in out
    assert "expected 0.75, got 0.7" in out


def test_an_altered_error_message_fails_with_a_diff_naming_it(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "types.rec"
    target = tmp_path / "altered.rec"
    rewrite_recording(source, target, lambda i, d, t: replace_terms(t, "must be a boolean (true or false)", "must be a bool"))
    status, out = run_replay(capsys, target)
    assert status == 1
    assert (
        "at {:reply, " in out and '{:error, <here>}}: expected "must be a bool", got "must be a boolean (true or false)"' in out
    )


def test_an_integer_recorded_as_a_float_is_a_mismatch(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "types.rec"
    target = tmp_path / "altered.rec"
    # {:ok, 3} for :i_whole (3.0 coerced to an integer) recorded as 3.0 instead
    index = first_index(source, is_call("get_variable_value", "types")) + 2
    first_reply = load_entries(source)[index].term
    assert first_reply[2] == 1.0
    rewrite_recording(source, target, lambda i, d, t: (t[0], t[1], 1) if i == index else t)
    status, out = run_replay(capsys, target)
    assert status == 1
    assert "expected 1, got 1.0" in out


def test_other_generated_ids_in_the_recording_still_match(tmp_path: Path, capsys):
    """As if the recorded sidecar had generated var_temperature_41: ids bind by shape, and the
    later requests are sent with the replayed sidecar's id."""
    source = RECORDINGS_DIR / "variables.rec"
    target = tmp_path / "renumbered.rec"
    rewrite_recording(source, target, lambda i, d, t: replace_terms(t, "var_temperature_1", "var_temperature_41"))
    status, out = run_replay(capsys, target)
    assert status == 0, out


def test_a_later_reply_using_another_id_than_the_bound_one_fails(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "variables.rec"
    target = tmp_path / "inconsistent.rec"
    reply_index = first_index(source, is_call("get_variable", "vars")) + 2
    rewrite_recording(
        source, target, lambda i, d, t: replace_terms(t, "var_temperature_1", "var_temperature_7") if i == reply_index else t
    )
    status, out = run_replay(capsys, target)
    assert status == 1
    assert "id: <here>" in out
    assert '"var_temperature_1" already stands for the recorded id "var_temperature_1"' in out


def test_a_later_request_using_an_inconsistent_id_fails(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "variables.rec"
    target = tmp_path / "inconsistent.rec"
    request_index = first_index(source, is_call("get_variable", "vars"))
    rewrite_recording(
        source, target, lambda i, d, t: replace_terms(t, "var_temperature_1", "var_temperature_2") if i == request_index else t
    )
    status, out = run_replay(capsys, target)
    assert status == 1
    # the request went out with the id as altered; the sidecar found no such variable, so the
    # first mismatch is the :get telemetry that the recording has before the reply
    assert '{:call, 6, :get_variable, ["vars", "var_temperature_2"]}' in out
    assert f"frame {request_index + 1}, :telemetry frame" in out
    assert "the sidecar sent no such frame" in out


def test_a_telemetry_frame_the_sidecar_never_sends_fails_without_waiting(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "programs.rec"
    target = tmp_path / "extra_telemetry.rec"
    frames = [(f.direction, f.body) for f in read_recording(source)]
    bogus = (A_TELEMETRY, [Atom("snakepit"), Atom("bogus")], {Atom("count"): 1}, {})
    frames.insert(4, ("<", codec.encode(bogus)))  # after the first request's reply
    target.write_bytes(encode_recording(frames))
    status, out = run_replay(capsys, target, "--timeout", "60")
    assert status == 1
    assert ":telemetry frame, does not match" in out
    assert "the sidecar sent no such frame" in out


def test_a_frame_missing_from_the_recording_is_an_unexpected_frame(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "variables.rec"
    target = tmp_path / "missing_telemetry.rec"
    frames = [f for f in read_recording(source)]
    last_telemetry = max(f.index for f in frames if codec.decode(f.body)[0] is A_TELEMETRY)
    target.write_bytes(encode_recording((f.direction, f.body) for f in frames if f.index != last_telemetry))
    status, out = run_replay(capsys, target)
    assert status == 1
    assert "frame after the end of the recording" in out or ":telemetry frame" in out
    assert "{:telemetry, [:snakepit, :session_store" in out


# ---------------------------------------------------------------------------------------------
# files that are not recordings, usage


def test_a_bad_header_exits_2(tmp_path: Path, capsys):
    target = tmp_path / "bad.rec"
    target.write_bytes(b"not-a-recording 1\n")
    assert cli.main([str(target)]) == 2
    assert "not a recording" in capsys.readouterr().err


def test_another_format_version_exits_2(tmp_path: Path, capsys):
    target = tmp_path / "v9.rec"
    target.write_bytes(b"snakepit-sidecar-recording 9\n")
    assert cli.main([str(target)]) == 2
    assert "version 9" in capsys.readouterr().err


def test_a_truncated_file_exits_2(tmp_path: Path, capsys):
    data = (RECORDINGS_DIR / "protocol_errors.rec").read_bytes()
    target = tmp_path / "truncated.rec"
    target.write_bytes(data[:-3])
    assert cli.main([str(target)]) == 2
    assert "truncated entry" in capsys.readouterr().err


def test_a_sidecar_frame_that_is_not_a_term_exits_2(tmp_path: Path, capsys):
    target = tmp_path / "garbage.rec"
    target.write_bytes(encode_recording([("<", b"\x83\xff\xff")]))
    assert cli.main([str(target)]) == 2
    assert "not a valid term" in capsys.readouterr().err


def test_a_missing_file_and_no_arguments_exit_2(tmp_path: Path, capsys):
    assert cli.main([str(tmp_path / "nope.rec")]) == 2
    assert cli.main([]) == 2


def test_one_failing_file_among_passing_ones_exits_1(tmp_path: Path, capsys):
    source = RECORDINGS_DIR / "protocol_errors.rec"
    target = tmp_path / "altered.rec"
    rewrite_recording(source, target, lambda i, d, t: replace_terms(t, Atom("pong"), Atom("ping")))
    status, out = run_replay(capsys, source, target)
    assert status == 1
    assert f"ok   {source}" in out
    assert f"FAIL {target}" in out and "expected :ping, got :pong" in out


def test_the_snakepit_sidecar_command_runs_the_replay(capsys):
    from sidecar import cli as sidecar_cli

    assert sidecar_cli.main(["replay", str(RECORDINGS_DIR / "protocol_errors.rec")]) == 0
    assert "ok   " in capsys.readouterr().out
