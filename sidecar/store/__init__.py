"""The store layer: the SessionStore contract on top of a storage backend.

`session_store` (the contract's semantics, one unit of work per call), `calls` (the call table:
names, arities, argument checks), `types` and `pcre` (the variable types' rules and patterns),
`structs` (records as Elixir terms and back), `replies` (store results as wire terms),
`nesting` (how deep a stored term may nest), `config` (the store's settings).
"""

from sidecar.store.config import StoreConfig
from sidecar.store.session_store import SessionStore

__all__ = ["SessionStore", "StoreConfig"]
