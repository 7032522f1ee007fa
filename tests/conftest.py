"""Shared fixtures: `client` runs every contract test in-process (answering with structs, and
with compact variables expanded as the harness does) and, when the subprocess client
(tests/client.py, `SubprocessClient`) is available, against a real sidecar process too.

The subprocess sidecar is started once per test run and emptied between tests with the
test-only `__reset__` call (starting a Python process per test would cost ~0.25 s each);
it is restarted if a test left it unusable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import settings

# The machine is shared and noisy: Hypothesis properties check behaviour, never timing, so no
# per-example deadline (its default of 200 ms would turn a slow moment into a failure).
settings.register_profile("project", deadline=None)
settings.load_profile("project")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests' helper modules

from inprocess_client import Client  # noqa: E402
from sidecar.terms import Atom  # noqa: E402

try:
    from client import SubprocessClient  # type: ignore  # noqa: E402
except Exception:  # not written yet, or broken: in-process only
    SubprocessClient = None  # type: ignore

CLIENT_KINDS = ["inprocess", "compact"] + (["subprocess"] if SubprocessClient is not None else [])


class _SharedSidecar:
    """One subprocess sidecar for the whole run, reset before each test."""

    def __init__(self) -> None:
        self.client: Any = None

    def fresh(self) -> Any:
        if self.client is not None:
            try:
                if self.client.call("__reset__") is Atom("ok"):
                    self.client.take_events()
                    return self.client
            except Exception:
                pass
            self.close()
        self.client = SubprocessClient()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None


@pytest.fixture(scope="session")
def shared_sidecar() -> Iterator[_SharedSidecar]:
    shared = _SharedSidecar()
    yield shared
    shared.close()


@pytest.fixture(params=CLIENT_KINDS)
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param in ("inprocess", "compact"):
        made = Client(compact_variables=request.param == "compact")
        yield made
        made.close()
    else:
        yield request.getfixturevalue("shared_sidecar").fresh()
