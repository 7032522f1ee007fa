"""Where the Redis backend keeps what: key names, session-id escaping, the header hash's fields.

Every key starts with the store's prefix (`--redis-prefix`, default `snakepit:`), so several
independent stores can share one Redis. Keys of one session carry a hash tag built from its id,
so they all live in one Redis Cluster slot and one Lua script can change a session atomically
there too; the store-wide keys share the tag `{g}`:

    <prefix>{s:<escaped id>}:h     hash: the session header (fields below)
    <prefix>{s:<escaped id>}:v     hash: variable id -> the variable record (ETF)
    <prefix>{s:<escaped id>}:i     hash: name key (ETF) -> variable id (ETF)
    <prefix>{s:<escaped id>}:p     hash: program key (ETF of the id) -> (program id, data) (ETF)
    <prefix>{s:<escaped id>}:st    hash: "v:<variable id>" / "p:<program key>" -> stamp
    <prefix>{s:<escaped id>}:ord   sorted set: "v:..." / "p:..." by first-stored order
    <prefix>{g}:meta               hash: the store counters, session_seq, variable_number
    <prefix>{g}:sessions           sorted set: session id -> creation order
    <prefix>{g}:expiry             sorted set: session id -> last_accessed + ttl
    <prefix>{g}:globals            hash: global program id -> data (ETF)
    <prefix>{g}:gtime              sorted set: global program id -> stored_at
    <prefix>{g}:node:<node id>     string: the last commit token of one sidecar (in-doubt checks)

Session ids are arbitrary binaries: `%`, `{` and `}` are escaped (`%25`, `%7B`, `%7D`) so no id
can end or move the hash tag. The prefix may not contain `{` or `}` (`check_prefix`).

Header hash fields: `id` (raw bytes), `ca` created_at, `la` last_accessed, `ttl`, `rest` (ETF of
(last_worker_id, metadata)), `vc`/`pc`/`tu` the three counters, `rev` revision, `seq` creation
order, `oseq` the order counter of `:ord`, and three change tokens: `hv` (identity: changes on
creation, replacement and a new worker id), `ver` (any change of the header, touches included)
and `cv` (any change of variables, index or programs).
"""

from __future__ import annotations

from typing import Any

SESSION_PARTS = ("h", "v", "i", "p", "st", "ord")
"""The keys of one session, in the order the scripts expect them (KEYS offsets 1..6)."""

STORE_PARTS = ("meta", "sessions", "expiry", "globals", "gtime")
"""The store-wide keys, in the order the scripts expect them (KEYS[1..5]; KEYS[6] is the node key)."""

DEFAULT_PREFIX = "snakepit:"


def check_prefix(prefix: str) -> str:
    """The prefix, or a ValueError saying why it cannot be one."""
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("the Redis key prefix must be a non-empty string")
    if "{" in prefix or "}" in prefix:
        raise ValueError("the Redis key prefix may not contain '{' or '}' (they would move the keys' hash tag)")
    return prefix


def escape_id(raw: bytes) -> bytes:
    """A session id's bytes with `%`, `{` and `}` escaped: safe inside a hash tag."""
    if b"%" in raw or b"{" in raw or b"}" in raw:
        return raw.replace(b"%", b"%25").replace(b"{", b"%7B").replace(b"}", b"%7D")
    return raw


class Layout:
    """The key names of one store (one prefix)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)
        raw = prefix.encode()
        self._raw = raw
        self.store_keys = [raw + b"{g}:" + part.encode() for part in STORE_PARTS]
        self.changes_channel = raw + b"changes"

    def node_key(self, node_id: str) -> bytes:
        return self._raw + b"{g}:node:" + node_id.encode()

    def session_keys(self, raw_id: bytes) -> list[bytes]:
        """The six keys of the session whose id is `raw_id`, in `SESSION_PARTS` order."""
        base = self._raw + b"{s:" + escape_id(raw_id) + b"}:"
        return [base + b"h", base + b"v", base + b"i", base + b"p", base + b"st", base + b"ord"]

    def match_pattern(self) -> bytes:
        """A SCAN MATCH pattern for every key of this store (glob characters escaped)."""
        escaped = bytearray()
        for byte in self._raw:
            if byte in b"*?[]\\":
                escaped += b"\\"
            escaped.append(byte)
        return bytes(escaped) + b"*"


def decimal(value: Any) -> bytes:
    """An integer as the decimal bytes Redis keeps (anything else is a defect)."""
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return str(value).encode()
