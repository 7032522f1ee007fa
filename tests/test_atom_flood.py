"""A flood of distinct atom names cannot grow the sidecar's memory without bound.

The BEAM never frees an atom; the sidecar cannot afford to keep every atom name a peer ever
sent (one 64 MB frame can hold six million). `terms.Atom` interns weakly, and the codec's atom
caches (decode: bytes -> atom, encode: atom -> bytes) are emptied when full, so after a flood
only what is still referred to, plus at most one cache's worth, remains (decisions written in
terms.Atom's and codec's docstrings).
"""

from __future__ import annotations

import gc

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.server import Sidecar
from sidecar.terms import Atom

A = Atom


def atom_list_etf(names: list[str]) -> bytes:
    """A list of atoms as ETF (no version byte), written without creating the atoms here."""
    parts = [bytes((119, len(name.encode()))) + name.encode() for name in names]
    return bytes((108,)) + len(names).to_bytes(4, "big") + b"".join(parts) + bytes((106,))


def call_frame(call_id: int, function: str, args_etf: bytes) -> bytes:
    body = (
        b"\x83\x68\x04\x77\x04call"
        + bytes((98,))
        + call_id.to_bytes(4, "big")
        + bytes((119, len(function)))
        + function.encode()
        + args_etf
    )
    return len(body).to_bytes(4, "big") + body


def test_atoms_are_interned_while_alive_and_dropped_after() -> None:
    first = A("only_in_this_test_91f2")
    assert A("only_in_this_test_91f2") is first
    count = Atom.interned_count()
    del first
    gc.collect()
    assert Atom.interned_count() == count - 1
    again = A("only_in_this_test_91f2")
    assert again is A("only_in_this_test_91f2") and again.name == "only_in_this_test_91f2"


def test_a_flood_of_new_atoms_leaves_at_most_one_cache_of_them() -> None:
    sidecar = Sidecar(SidecarOptions(spin_us=0))
    sidecar.handle_input(codec.encode_frame((A("hello"), 1, {})))
    sidecar.handle_input(codec.encode_frame((A("call"), 1, A("create_session"), ["s"])))
    gc.collect()
    baseline = Atom.interned_count()
    for flood in range(4):
        names = [f"flood_{flood}_{i}" for i in range(100_000)]
        # decoded as arguments (a bad arity: nothing is stored), echoed back by
        # get_variable_value's default (encoded), and sent as a bad frame (echoed by inspect)
        out = sidecar.handle_input(call_frame(2, "ping", atom_list_etf(names[:50_000])))
        assert codec.decode(out[-1][4:])[2][1][0] is A("bad_arity")
        out = sidecar.handle_input(
            call_frame(
                3,
                "get_variable_value",
                bytes((108, 0, 0, 0, 3))
                + codec.encode("s")[1:]
                + codec.encode("x")[1:]
                + atom_list_etf(names[50_000:])
                + bytes((106,)),
            )
        )
        assert len(codec.decode(out[-1][4:])[2]) == 50_000
        assert sidecar.handle_input(codec.encode_frame((A("call"), 4, A("ping"), [])))
        gc.collect()
        assert len(codec._ATOM_TERMS) <= codec._ATOM_CACHE_LIMIT
        assert len(codec._ATOM_ENCODINGS) <= codec._ATOM_CACHE_LIMIT
        # what can remain: the two caches' worth, nothing more (400,000 names were sent)
        assert Atom.interned_count() - baseline <= 2 * codec._ATOM_CACHE_LIMIT
    # the store still works, and its own atoms are the same objects as ever
    out = sidecar.handle_input(codec.encode_frame((A("call"), 5, A("session_exists?"), ["s"])))
    assert codec.decode(out[-1][4:]) == (A("reply"), 5, True)
