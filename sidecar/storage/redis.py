"""The Redis backend: several sidecars (on several nodes) share one store on one Redis.

`--storage redis://[:password@]host:port/db` (or `rediss://`, `unix://`), `--redis-prefix`.
Everything lives in Redis under the prefix (`redis_layout`); each sidecar keeps a copy of the
sessions it works on (`redis_cache`) that is never trusted: a unit of work (`redis_unit`) reads
from it, remembers what it read, and commits with ONE Lua script (`redis_lua`) that checks those
reads and applies the writes atomically, or changes nothing and makes the call run again
(`base.Conflict`). A session created by two sidecars at once is created once (the script decides),
and the loser answers with the winner's session.

Connection: one connection for calls (calls are served one at a time), with connect and read
timeouts (`--redis-timeout-ms`, default 1000): when Redis cannot be reached, every call answers
`{:error, {:storage_error, message}}` within about two timeouts, the process keeps serving, and
the next call after Redis is back reconnects. A commit whose answer is lost is resolved by
reading this sidecar's node key (the token of its last commit): applied means the call
succeeded; not applied after a lost connection means it is sent once more; after a read timeout
(Redis may still run it) the call answers that the outcome is unknown.

Change feed (`watch`): every commit publishes, on `<prefix>changes`, the sessions, variable ids
and global programs it changed (and which sessions it only touched) and which sidecar made it,
whenever a subscriber other than that sidecar's own listens. `watch(callback)` calls `callback`
with a `base.Change` for every commit of another sidecar, and reports when its subscription is
(re)made or lost (`base.watch_changes`); the backend itself uses it to drop its copies of
sessions others changed, so it seldom has to learn it through a conflict.

Variable ids: numbers are handed out from blocks of `NUMBER_BLOCK` reserved in Redis, so ids are
unique across sidecars without a round trip per id (`VariableNumbers`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Collection, Optional
from urllib.parse import urlsplit

try:
    import redis as redis_client
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError:  # the optional extra is not installed
    redis_client = None  # type: ignore[assignment]

from sidecar.codec import decode, encode
from sidecar.storage.base import Change, StorageError, StorageOpenError
from sidecar.storage.redis_cache import SessionCache
from sidecar.storage.redis_layout import DEFAULT_PREFIX, Layout
from sidecar.storage.redis_lua import COMMIT, NUMBERS, READ
from sidecar.storage.redis_unit import RedisUnit, canonical_id
from sidecar.terms import Atom

log = logging.getLogger(__name__)

NUMBER_BLOCK = 1000
"""Variable numbers reserved in Redis at a time by one sidecar."""

DEFAULT_TIMEOUT_MS = 1000
DEFAULT_CACHE_MB = 64

A_CHANGES = Atom("changes")
A_TOUCHED = Atom("touched")

HEARTBEAT_S = 1.0
"""A subscription pings Redis after this long without hearing from it; no answer within the
timeout after that counts as lost (a connection dead without a word is noticed too)."""


def redacted(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


class VariableNumbers:
    """Variable numbers from blocks reserved in Redis: `next()` hands out the next one (reserving
    a block when none is left), `reserve(n)` skips past `n`; `state`/`restore` undo a unit's use
    (a block reserved meanwhile is kept, from its start: nobody else can have its numbers)."""

    def __init__(self, reserve_block: Callable[[int], tuple[int, int]]) -> None:
        self._reserve_block = reserve_block
        self.next_number = 1
        self.end = 0
        self.block_start = 1
        self.floor = 0

    def state(self) -> tuple:
        return (self.next_number, self.end, self.block_start, self.floor)

    def restore(self, state: tuple) -> None:
        next_number, end, block_start, floor = state
        if self.block_start == block_start:
            self.next_number, self.end = next_number, end
        else:  # a block reserved during the unit: keep it, nothing of it was handed out
            self.next_number = self.block_start
        self.floor = floor

    def next(self) -> int:
        if self.next_number > self.end:
            self.block_start, self.end = self._reserve_block(self.floor)
            self.next_number = self.block_start
        number = self.next_number
        self.next_number += 1
        return number

    def reserve(self, number: int) -> bool:
        """Never hand out `number` or below; True when Redis must learn it (past this block)."""
        if number > self.floor:
            self.floor = number
        if number < self.next_number:
            return False
        if number < self.end:
            self.next_number = number + 1
            return False
        self.next_number, self.end = 1, 0  # the next number comes from a new block above it
        return True

    def reset(self) -> None:
        self.next_number, self.end, self.block_start, self.floor = 1, 0, 1, 0


class RedisStorage:
    """Sessions, programs and counters in one Redis, shared by every sidecar using it."""

    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        cache_mb: int = DEFAULT_CACHE_MB,
        follow_changes: bool = True,
    ) -> None:
        if redis_client is None:
            raise StorageOpenError(
                "the redis storage needs the Python packages redis and hiredis: pip install 'snakepit-sidecar[redis]'"
            )
        try:
            self.layout = Layout(prefix)
        except ValueError as error:
            raise StorageOpenError(str(error)) from None
        self.url = url
        self.where = redacted(url)
        self.timeout = timeout_ms / 1000
        self.node_id = os.urandom(6).hex()
        self.node_key = self.layout.node_key(self.node_id)
        self.cache = SessionCache(cache_mb * 1024 * 1024)
        self.suspect: set = set()
        """Sessions a conflict showed to be changed elsewhere: never assumed absent, loaded."""
        self.numbers = VariableNumbers(self._reserve_block)
        self.round_trips = 0
        """Commands sent to Redis (the benchmark and the tests read it)."""
        self.conflicts = 0
        self.script_seq = 0
        self._tokens = 0
        self._changed_elsewhere: deque = deque()
        self._refreshed: Optional[set] = None
        """Sessions loaded from Redis since `take_refreshed` (None: nobody asked yet)."""
        self._watchers: list[Callable[[], None]] = []
        try:
            self.client = self._connect()
            self.client.ping()
            self._read_sha = self.client.script_load(READ)
            self._commit_sha = self.client.script_load(COMMIT)
            self._numbers_sha = self.client.script_load(NUMBERS)
        except ValueError as error:  # a malformed URL
            raise StorageOpenError(f"cannot use {self.where}: {error}") from None
        except RedisError as error:
            raise StorageOpenError(f"cannot reach Redis at {self.where}: {error}") from None
        if follow_changes:
            self._watchers.append(self.watch(self._forget_changed))

    def _connect(self) -> Any:
        return redis_client.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            single_connection_client=True,
        )

    # units of work -------------------------------------------------------------------------

    def begin(self) -> RedisUnit:
        changed = self._changed_elsewhere
        while changed:
            try:
                self.cache.drop(changed.popleft())
            except IndexError:  # pragma: no cover - emptied by another thread
                break
        return RedisUnit(self)

    def take_refreshed(self) -> list:
        """The sessions units loaded from Redis since the last call (`base.take_refreshed`);
        the first call starts counting."""
        refreshed, self._refreshed = self._refreshed, set()
        return list(refreshed) if refreshed else []

    def new_token(self) -> bytes:
        self._tokens += 1
        return f"{self.node_id}:{self._tokens}".encode()

    def flush(self) -> None:
        """Every commit is already in Redis (durable as its persistence settings make it)."""

    def settle(self) -> None:
        """Nothing waits for a quiet moment."""

    def reset(self) -> None:
        """Delete every key of this store (the test-only `__reset__`): its sessions' keys, found
        through the session index, and the store-wide keys."""
        layout = self.layout
        try:
            session_ids = self.client.zrange(layout.store_keys[1], 0, -1)
            for start in range(0, len(session_ids), 100):
                keys = [key for raw in session_ids[start : start + 100] for key in layout.session_keys(raw)]
                self.round_trips += 1
                self.client.unlink(*keys)
            self.round_trips += 1
            self.client.unlink(*layout.store_keys)
        except RedisError as error:
            raise StorageError(self._describe(error)) from None
        self.cache.clear()
        self.suspect.clear()
        self.numbers.reset()

    def uncached_view(self) -> "RedisStorage":
        """Another storage on the same store that holds no copies (each `begin` reads Redis) and
        shares this one's variable numbers: what Redis holds, as a new sidecar would see it."""
        view = getattr(self, "_view", None)
        if view is None:
            view = self._view = RedisStorage(
                self.url, self.layout.prefix, int(self.timeout * 1000), cache_mb=0, follow_changes=False
            )
            view.numbers = self.numbers
        view.cache.clear()
        return view

    def close(self) -> None:
        view = getattr(self, "_view", None)
        if view is not None:
            view.close()
        for stop in self._watchers:
            stop()
        self._watchers.clear()
        try:
            self.client.close()
        except RedisError:
            pass

    # running scripts -----------------------------------------------------------------------

    def _describe(self, error: Exception) -> str:
        if isinstance(error, RedisTimeoutError):
            return f"Redis at {self.where} did not answer within {self.timeout:g} s ({error})"
        if isinstance(error, RedisConnectionError):
            return f"Redis at {self.where} is unreachable: {error}"
        return f"Redis at {self.where}: {error}"

    def _eval(self, sha: str, source: str, keys: list, argv: list) -> Any:
        self.round_trips += 1
        try:
            return self.client.evalsha(sha, len(keys), *keys, *argv)
        except NoScriptError:  # Redis restarted (or SCRIPT FLUSH): load it again
            self.round_trips += 2
            self.client.script_load(source)
            return self.client.evalsha(sha, len(keys), *keys, *argv)

    def run_read(self, keys: list, argv: list) -> tuple[list, int]:
        """The read script's answer, and its number (reads are retried once on a lost
        connection: a connection Redis dropped is noticed only when used)."""
        self.script_seq += 1
        seq = self.script_seq
        try:
            try:
                return self._eval(self._read_sha, READ, keys, argv), seq
            except RedisConnectionError:
                return self._eval(self._read_sha, READ, keys, argv), seq
        except RedisError as error:
            raise StorageError(self._describe(error)) from None

    def run_commit(self, keys: list, argv: list, token: bytes) -> Optional[list]:
        """The commit script's answer; None when it was applied but its answer was lost."""
        try:
            return self._eval(self._commit_sha, COMMIT, keys, argv)
        except (RedisConnectionError, RedisTimeoutError) as error:
            lost = error
        except RedisError as error:
            raise StorageError(self._describe(error)) from None
        try:
            self.round_trips += 1
            applied = self.client.get(self.node_key) == token
        except RedisError:
            raise StorageError(f"{self._describe(lost)}; whether the call's write was applied is unknown") from None
        if applied:
            log.warning("a commit's answer was lost (%s), but it was applied", lost)
            return None
        if isinstance(lost, RedisTimeoutError):
            raise StorageError(f"{self._describe(lost)}; the write may still be applied")
        try:  # the connection was lost before Redis ran it: send it once more
            return self._eval(self._commit_sha, COMMIT, keys, argv)
        except RedisError as error:
            raise StorageError(self._describe(error)) from None

    def _reserve_block(self, floor: int) -> tuple[int, int]:
        """Reserve the next NUMBER_BLOCK variable numbers above `floor` and above every number
        reserved before: (first, last). Compare-and-set in Python arithmetic (numbers of
        imported ids may exceed Redis's integers)."""
        key = self.layout.store_keys[0]
        seen = b""
        for _ in range(100):
            current = int(seen) if seen else 0
            start = max(current, floor) + 1
            end = start + NUMBER_BLOCK - 1
            try:
                self.round_trips += 1
                done, value = self.client.evalsha(self._numbers_sha, 1, key, seen, str(end))
            except NoScriptError:
                self._numbers_sha = self.client.script_load(NUMBERS)
                continue
            except RedisError as error:
                raise StorageError(self._describe(error)) from None
            if done == 1:
                return start, end
            seen = value or b""
        raise StorageError("could not reserve variable numbers (too much contention)")

    # the change feed -----------------------------------------------------------------------

    def change_message(
        self, sessions: Collection, variables: dict, global_programs: list, touched: Any = ()
    ) -> tuple[bytes, bytes]:
        """The channel and message announcing one commit (`Change`, encoded). A session in
        `touched` (only its `last_accessed` moved) is listed as `(id, :touched)` instead of
        `(id, variable ids)`; readers that only look at the ids take it as any change."""
        if not sessions and not global_programs:
            return b"", b""
        changed = [(session_id, A_TOUCHED if session_id in touched else variables.get(session_id, [])) for session_id in sessions]
        return self.layout.changes_channel, encode((A_CHANGES, self.node_id, changed, global_programs))

    def watch(
        self,
        callback: Callable[[Change], None],
        on_resync: Optional[Callable[[], None]] = None,
        on_lost: Optional[Callable[[], None]] = None,
    ) -> Callable[[], None]:
        """Call `callback(change)` from a thread of its own for every commit of another sidecar
        on this store, until the returned function is called. Best effort: a message published
        while the subscription is down (Redis restarting) is missed; `on_resync()` is called each
        time the subscription is made (Redis has it: every later commit reaches `callback`),
        `on_lost()` when a subscription that was made is noticed gone (`base.watch_changes`)."""
        stop = threading.Event()
        args = (callback, stop, on_resync, on_lost)
        thread = threading.Thread(target=self._follow, args=args, name="redis-changes", daemon=True)
        thread.start()

        def stopping() -> None:
            stop.set()  # the thread ends within its next poll (0.2 s); nobody waits for it

        return stopping

    def _follow(
        self,
        callback: Callable[[Change], None],
        stop: threading.Event,
        on_resync: Optional[Callable[[], None]] = None,
        on_lost: Optional[Callable[[], None]] = None,
    ) -> None:
        channel = self.layout.changes_channel
        # This sidecar's own channel, subscribed with the shared one in one command: the commit
        # script publishes when the shared channel has more subscribers than this one (someone
        # besides the committing sidecar listens, whether its own subscription is up or not).
        own = channel + b":" + self.node_id.encode()
        reported = False
        while not stop.is_set():
            client = None
            subscribed = False
            try:
                client = self._connect()
                pubsub = client.pubsub()
                pubsub.subscribe(channel, own)
                heard = pinged = time.monotonic()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    now = time.monotonic()
                    if message is None:
                        if now - heard > HEARTBEAT_S + self.timeout:
                            raise RedisConnectionError(f"no answer to a ping within {self.timeout:g} s")
                        if now - heard > HEARTBEAT_S and now - pinged > HEARTBEAT_S:
                            pubsub.ping()
                            pinged = now
                        continue
                    heard = now
                    kind = message.get("type")
                    if kind == "subscribe" and message.get("channel") == channel and not subscribed:
                        subscribed = True  # Redis has the subscription: nothing is missed from here
                        if reported:
                            log.info("following changes on %s again", self.where)
                            reported = False
                        _notify(on_resync)
                    if kind != "message":
                        continue
                    change = self._parse_change(message["data"])
                    if change is not None:
                        try:
                            callback(change)
                        except Exception:
                            log.exception("a change callback failed")
            except RedisError as error:
                if not reported and not stop.is_set():
                    log.warning("not following changes on %s for now: %s", self.where, error)
                    reported = True
                if subscribed and not stop.is_set():
                    _notify(on_lost)
                stop.wait(0.5)
            finally:
                if client is not None:
                    try:
                        client.close()
                    except RedisError:
                        pass

    def _parse_change(self, data: bytes) -> Optional[Change]:
        try:
            tag, node_id, sessions, global_programs = decode(data)
            if tag is not A_CHANGES or node_id == self.node_id:
                return None
            changed: dict = {}
            touched = set()
            for session_id, variable_ids in sessions:
                if variable_ids is A_TOUCHED:
                    touched.add(session_id)
                    variable_ids = []
                changed[session_id] = variable_ids
            return Change(changed, list(global_programs), node_id, frozenset(touched))
        except Exception:
            log.warning("an unreadable change message on %s", self.where)
            return None

    def _forget_changed(self, change: Change) -> None:
        for session_id in change.sessions:
            self._changed_elsewhere.append(canonical_id(session_id))


def _notify(callback: Optional[Callable[[], None]]) -> None:
    """Call a watch's state callback, if any; its failure is logged, not the watch's end."""
    if callback is None:
        return
    try:
        callback()
    except Exception:
        log.exception("a change feed state callback failed")
