"""docs/contract.md stays true to the code: every call with its arities, every telemetry event,
every error reason and every validation message the code can produce is documented there, the
doc lists nothing the code does not give, and every test it cites exists.

Adding a call, an event, a reason or a message without documenting it fails here. The lists are
read from the code itself (the call table, the store's event names, the error sites in the
store and the struct parser found with `ast`, the harness's Elixir sources), not copied.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sidecar.store import calls
from sidecar.store import session_store as store

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
SIDECAR = ROOT / "sidecar"
HARNESS_LIB = ROOT / "elixir_harness" / "lib" / "snakepit_sidecar"

# `### `name(arg, arg \\ default)`` -- one heading per call
CALL_HEADING = re.compile(r"^### `([a-z_]+[?!]?)\((.*)\)`$", re.M)
PY_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
EX_TEST_REF = re.compile(r'`(elixir_harness/test/[\w/]+\.exs):"([^"]+)"`')
EX_DEF = re.compile(r"^\s*(?:def|defdelegate) ([a-z_]+[?!]?)(?=[\s(,])", re.M)


def section(title: str) -> str:
    """The text of the doc's `## title` section, up to the next `## ` heading."""
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end >= 0 else len(DOC)]


def table_rows(text: str) -> list[list[str]]:
    """The data rows of the markdown tables in `text`, as lists of cells (headers skipped)."""
    rows: list[list[str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            continue  # a header
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def documented_calls() -> dict[str, list[int]]:
    """Each heading's call name with the arities its argument list allows."""
    documented: dict[str, list[int]] = {}
    for name, params in CALL_HEADING.findall(DOC):
        args = [arg for arg in params.split(", ") if arg]
        required = sum(1 for arg in args if "\\" not in arg)
        documented[name] = list(range(required, len(args) + 1))
    return documented


def elixir_functions(path: Path) -> set[str]:
    return set(EX_DEF.findall(path.read_text(encoding="utf-8")))


def api_functions() -> set[str]:
    """The contract functions of the harness: the `name:` entries of api.ex's call table."""
    source = (HARNESS_LIB / "api.ex").read_text(encoding="utf-8")
    table = re.search(r"@calls \[(.*?)\n  \]\n", source, re.S)
    assert table is not None, "api.ex's @calls table"
    return set(re.findall(r"name: :(\w+[?!]?)", table.group(1)))


def mentions_atom(atom_name: str) -> bool:
    return re.search(rf"(?<![\w:]):{re.escape(atom_name)}(?![\w?!])", DOC) is not None


# error reasons, read from the code --------------------------------------------------------------


def _atom_name(node: ast.AST) -> str | None:
    """ "x" for a literal `A("x")` / `Atom("x")`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("A", "Atom")
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _leading_atom(node: ast.AST) -> str | None:
    """The reason atom of `A("x")` or of a tuple `(A("x"), ...)`."""
    if isinstance(node, ast.Tuple) and node.elts:
        return _atom_name(node.elts[0])
    return _atom_name(node)


def store_error_reasons() -> set[str]:
    """Every reason atom at an error site of sidecar/store/session_store.py: `_error(reason)` and the
    `(ERROR, reason)` constants."""
    reasons = set()
    for node in ast.walk(ast.parse((SIDECAR / "store" / "session_store.py").read_text(encoding="utf-8"))):
        reason = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_error" and node.args:
            reason = _leading_atom(node.args[0])
        elif (
            isinstance(node, ast.Tuple)
            and len(node.elts) == 2
            and isinstance(node.elts[0], ast.Name)
            and node.elts[0].id == "ERROR"
        ):
            reason = _leading_atom(node.elts[1])
        if reason is not None:
            reasons.add(reason)
    return reasons


def session_validation_reasons() -> set[str]:
    """Every `InvalidSession(Atom(reason))` of sidecar/store/structs.py (put_session_if, update_session)."""
    reasons = set()
    for node in ast.walk(ast.parse((SIDECAR / "store" / "structs.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "InvalidSession":
            reason = _atom_name(node.args[0]) if node.args else None
            if reason is not None:
                reasons.add(reason)
    return reasons


def dispatch_error_reasons() -> set[str]:
    """The reasons sidecar/store/calls.py answers for calls that do not fit the table."""
    return {atom.name for name, atom in vars(calls).items() if name.startswith("A_") and isinstance(atom, calls.Atom)}


def server_error_reasons() -> set[str]:
    """The reasons sidecar/server.py answers a call with by itself (conflicts given up on,
    storage that failed or never opened)."""
    from sidecar import server

    return {name.name for key, name in vars(server).items() if key in ("A_CONFLICT", "A_STORAGE_ERROR", "A_STORAGE_UNAVAILABLE")}


def transaction_error_reasons() -> set[str]:
    """The reasons the harness's update_session transaction answers by itself."""
    source = (HARNESS_LIB / "transaction.ex").read_text(encoding="utf-8")
    return set(re.findall(r"\{:error, \{?:(\w+)", source))


def code_error_reasons() -> set[str]:
    return (
        store_error_reasons()
        | session_validation_reasons()
        | dispatch_error_reasons()
        | server_error_reasons()
        | transaction_error_reasons()
    )


# validation messages, read from the code ---------------------------------------------------------


def validation_message_pieces() -> set[str]:
    """The literal text of every message sidecar/store/types.py can reject a value with (the constant
    parts of f-strings, stripped)."""
    pieces: set[str] = set()
    for node in ast.walk(ast.parse((SIDECAR / "store" / "types.py").read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        position = {"ValidationFailed": 0, "ConstraintViolation": 0, "_identifier_coercer": 0, "_member_checker": 1}
        index = position.get(node.func.id)
        if index is None or len(node.args) <= index:
            continue
        message = node.args[index]
        if isinstance(message, ast.Constant) and isinstance(message.value, str):
            parts = [message.value]
        elif isinstance(message, ast.JoinedStr):
            parts = [value.value for value in message.values if isinstance(value, ast.Constant)]
        else:
            continue  # built from a helper's argument, collected at the helper's call
        pieces.update(part.strip() for part in parts if part.strip(" :,"))
    return pieces


# the tests ---------------------------------------------------------------------------------------


def test_every_call_is_documented_with_its_arities():
    documented = documented_calls()
    for name, spec in calls.CALLS.items():
        if spec.test_only:
            assert f"`{name.name}(" in DOC, f"test-only call {name.name} is not mentioned"
            continue
        assert name.name in documented, f"{name.name} has no `### `{name.name}(...)`` heading"
        assert documented[name.name] == spec.arities, (name.name, documented[name.name], spec.arities)


def test_every_documented_call_exists():
    api = api_functions()
    known = {name.name for name, spec in calls.CALLS.items() if not spec.test_only} | api
    assert set(documented_calls()) - known == set()


def test_every_function_of_the_elixir_api_is_documented():
    api = api_functions()
    assert {"create_session", "update_session", "import_variables"} <= api  # the reader works
    assert api - set(documented_calls()) == set()
    store_functions = elixir_functions(HARNESS_LIB / "session_store.ex")
    assert {"start_link", "ping", "run_cleanup"} <= store_functions
    for name in store_functions:
        assert f"`{name}(" in DOC or f"`{name}/" in DOC, f"SnakepitSidecar.SessionStore.{name} is not documented"


def test_every_telemetry_event_is_documented_and_no_other():
    store_events = {
        "[" + ", ".join(f":{atom.name}" for atom in event) + "]" for name, event in vars(store).items() if name.startswith("EV_")
    }
    assert len(store_events) == 8
    documented = set(re.findall(r"\[:snakepit, :session_store, :\w+, :\w+\]", DOC))
    assert documented == store_events
    telemetry_ex = (HARNESS_LIB / "telemetry.ex").read_text(encoding="utf-8")
    harness_list = re.search(r"@harness_events \[(.*?)\n\s*\]", telemetry_ex, re.S)
    assert harness_list is not None
    harness_events = set(re.findall(r"\[:snakepit_sidecar, :\w+, :\w+\]", harness_list.group(1)))
    assert len(harness_events) == 4
    for event in harness_events:
        assert event in DOC, event


def test_every_error_reason_is_documented():
    reasons = code_error_reasons()
    # the readers found what they look for (they cannot silently go empty)
    assert {"not_found", "session_not_found", "invalid_id", "conflict", "invalid_variable", "invalid_pattern"} <= reasons
    assert {"not_a_session", "invalid_stats", "unknown_call", "bad_argument", "update_failed"} <= reasons
    missing = sorted(reason for reason in reasons if not mentions_atom(reason))
    assert missing == [], f"reasons not in docs/contract.md: {missing}"


def test_the_error_reason_index_lists_every_reason_and_only_reasons_the_code_gives():
    listed: set[str] = set()
    for row in table_rows(section("Error reasons")):
        listed.update(re.findall(r"`\{?:(\w+)", row[0]))
    reasons = code_error_reasons()
    assert listed - reasons == set(), "the index lists reasons no code gives"
    assert reasons - listed == set(), "reasons missing from the index"


def test_every_validation_message_is_documented():
    pieces = validation_message_pieces()
    assert {"must be a number", "cannot be nil", "must be one of the allowed modules:", "is below minimum"} <= pieces
    missing = sorted(piece for piece in pieces if piece not in DOC)
    assert missing == [], f"messages not in docs/contract.md: {missing}"


def test_every_test_the_doc_cites_exists():
    python_refs = PY_TEST_REF.findall(DOC)
    elixir_refs = EX_TEST_REF.findall(DOC)
    assert python_refs and elixir_refs
    for path, name in python_refs:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} does not exist"
    for path, name in elixir_refs:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert f'test "{name}"' in source, f'{path}: test "{name}" does not exist'


def test_every_deviation_and_decision_is_pinned_by_a_test():
    rows = table_rows(section("Beyond the original"))
    assert len(rows) >= 10
    for row in rows:
        pinned = row[-1]
        assert PY_TEST_REF.search(pinned) or EX_TEST_REF.search(pinned), f"not pinned by a test: {row[0]}"
