"""The sidecar's side of the read cache on Redis (docs/harness.md, "Read cache", shared storage):
a sidecar whose harness keeps a cache follows the other stores' commits and pushes their
invalidations; the feed's losses and resubscriptions clear the cache; the commit script
publishes whenever anyone besides the committing sidecar listens.

* frames pushed for other stores' writes (every kind of write), none for its own commits, for
  commits that only touched a session, or for global programs;
* a call that loads a session from Redis (first read, or after another store's change) has
  the session's invalidation before its reply, so no older value outlives a newer one served;
* nothing pushed, and no subscription of its own, without `read_cache: true`;
* the subscription lost (killed by Redis, Redis restarted, Redis silent): `:all` at the loss,
  `:all` after every chunk meanwhile, `:all` at the resubscription, then changes again;
* through a real subprocess: the pushes reach stdout, and the sidecar exits at end of input;
* publishing: also while the committing sidecar's own subscription is down, and never when
  nobody else listens.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
import redis
from client import SubprocessClient
from redis_nodes import Node, nodes
from redis_server import RedisServer, fresh_prefix, shared

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.protocol import frame
from sidecar.server import Sidecar
from sidecar.storage.base import Change, watch_changes
from sidecar.storage.redis import RedisStorage
from sidecar.terms import Atom as A

OK = A("ok")
ALL = (A("invalidate"), A("all"))
WAIT_S = 10


def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    """Poll until `predicate()` is truthy (no timing is asserted: only that it happens)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


class Caching:
    """A sidecar (in this process) on Redis whose harness said `read_cache: true`."""

    def __init__(self, url: str, prefix: str, read_cache: bool = True, **options: Any) -> None:
        self.storage = RedisStorage(url, prefix, **options)
        self.sidecar = Sidecar(SidecarOptions(enable_test_calls=True), storage=self.storage)
        out = self.handle(frame((A("hello"), 1, {A("read_cache"): read_cache})))
        self.welcome = out[0][2]
        self.ids = 0
        self.backlog: list = []

    def handle(self, data: bytes) -> list:
        return [codec.decode(f[4:]) for f in self.sidecar.handle_input(data)]

    def call(self, function: str, *args: Any) -> list:
        """Every frame one call's chunk produced (telemetry, its reply, and what follows)."""
        self.ids += 1
        return self.handle(frame((A("call"), self.ids, A(function), list(args))))

    def result(self, function: str, *args: Any) -> Any:
        """One call's result."""
        (reply,) = [term for term in self.call(function, *args) if term[0] is A("reply")]
        return reply[2]

    def _take(self) -> None:
        pushed = self.sidecar.pushed
        count = len(pushed)  # the feed's thread may append meanwhile
        self.backlog += [codec.decode(f[4:]) for f in pushed[:count]]
        del pushed[:count]

    def wait_pushed(self, expected: Any) -> list:
        """Wait until `expected` is pushed; the frames pushed up to it, in order (taken)."""

        def arrived() -> bool:
            self._take()
            return expected in self.backlog

        wait_for(arrived, f"{expected!r} pushed (so far {self.backlog!r})")
        end = self.backlog.index(expected) + 1
        seen, self.backlog = self.backlog[:end], self.backlog[end:]
        return seen

    def nothing_pushed(self) -> bool:
        self._take()
        return self.backlog == []

    def close(self) -> None:
        self.sidecar.stop_watching()
        self.storage.close()


def synced(caching: Caching, other: Node, marker: str) -> list:
    """Everything `caching` pushed until it saw `other`'s write to session `marker` (changes
    arrive in commit order on one channel: what came before the marker's came first)."""
    assert other.call("create_session", marker)[0] is OK
    seen = caching.wait_pushed((A("invalidate"), [marker]))
    assert seen[-1] == (A("invalidate"), [marker])
    return seen[:-1]


def test_other_stores_writes_are_pushed_as_invalidations_and_nothing_else_is() -> None:
    prefix = fresh_prefix()
    a = Caching(shared().url, prefix)
    (b,) = nodes(1, prefix=prefix)
    recorded: list[Change] = []
    (c,) = nodes(1, prefix=prefix)  # a third store that records the raw feed
    stop = watch_changes(c.storage, recorded.append, lambda: recorded.append("resync"))
    try:
        assert a.welcome[A("invalidations")] is True
        a.wait_pushed(ALL)  # subscribed
        wait_for(lambda: "resync" in recorded, "the recorder subscribed")
        s = [(A("invalidate"), ["s"])]

        assert b.call("create_session", "s")[0] is OK
        assert synced(a, b, "m1") == s
        _, var = b.call("register_variable", "s", A("t"), A("integer"), 1)
        assert b.call("register_variable", "s", A("u"), A("integer"), 1)[0] is OK
        assert synced(a, b, "m2") == s + s
        assert b.call("update_variable", "s", A("t"), 2) is OK
        assert b.call("update_variables", "s", {A("t"): 3, A("u"): 4})[0] is OK
        assert b.call("update_variables", "s", {A("t"): 5}, [(A("atomic"), True)])[0] is OK
        assert synced(a, b, "m3") == s + s + s
        assert b.call("start_optimization", "s", A("t"), "opt", None) is OK
        assert b.call("end_optimization", "s", A("t")) is OK
        assert b.call("delete_variable", "s", A("u")) is OK
        assert synced(a, b, "m4") == s + s + s
        assert b.call("delete_session", "s") is OK
        assert synced(a, b, "m5") == s

        # its own commits: nothing
        assert a.result("create_session", "own")[0] is OK
        assert a.result("register_variable", "own", A("t"), A("integer"), 1)[0] is OK
        assert a.result("update_variable", "own", A("t"), 2) is OK
        # a read on the other store that only touches the session, and global programs: nothing
        assert b.call("create_session", "read")[0] is OK
        assert b.call("register_variable", "read", A("t"), A("integer"), 1)[0] is OK
        assert synced(a, b, "m6") == [(A("invalidate"), ["read"]), (A("invalidate"), ["read"])]
        b.clock.advance(2)
        assert b.call("get_variable", "read", A("t"))[0] is OK
        b.clock.advance(1)
        assert b.call("touch_sessions", [("read", 1003)]) == [1003 + 3600]
        assert b.call("store_global_program", "g", {A("x"): 1}) is OK
        assert b.call("delete_global_program", "g") is OK
        assert synced(a, b, "m7") == []
        # (the touches and the programs were published: the raw feed has them)
        wait_for(lambda: any(isinstance(x, Change) and x.sessions.get("m7") is not None for x in recorded), "m7 recorded")
        touches = [x for x in recorded if isinstance(x, Change) and "read" in x.touched]
        assert len(touches) == 2 and all(x.sessions == {"read": []} for x in touches)
        assert len([x for x in recorded if isinstance(x, Change) and x.global_programs == ["g"]]) == 2
        # a's own commits were published (the recorder saw them), yet a pushed nothing for them
        assert len([x for x in recorded if isinstance(x, Change) and "own" in x.sessions]) == 3
        assert a.nothing_pushed()
    finally:
        stop()
        a.close()
        b.close()
        c.close()


def test_a_session_read_afresh_is_invalidated_before_the_reply_that_carries_it() -> None:
    prefix = fresh_prefix()
    a = Caching(shared().url, prefix)
    (b,) = nodes(1, prefix=prefix)
    try:
        a.wait_pushed(ALL)
        own = a.storage.layout.changes_channel + b":" + a.storage.node_id.encode()
        client = redis.Redis.from_url(shared().url)
        wait_for(lambda: client.pubsub_numsub(own)[0][1] == 2, "both of a's subscriptions made")
        assert b.call("create_session", "s")[0] is OK
        assert b.call("register_variable", "s", A("t"), A("integer"), 1)[0] is OK
        kinds = lambda out: [term[0] for term in out if term[0] in (A("invalidate"), A("reply"))]  # noqa: E731
        # a's backend has heard of both (it drops its copies then): a marker after them
        assert b.call("create_session", "marker")[0] is OK
        wait_for(lambda: "marker" in a.storage._changed_elsewhere, "a's backend heard of b's writes")
        # a's first read of the session loads it: its invalidation, then the reply
        out = a.call("get_variable", "s", A("t"))
        assert kinds(out) == [A("invalidate"), A("reply")] and out[-1][2][1][A("value")] == 1
        assert kinds(a.call("get_variable", "s", A("t"))) == [A("reply")]  # its copy: nothing
        # b changes it; once a's backend dropped its copy, a's next read loads b's value, and
        # the invalidation goes before it, whether or not the feed's push came first
        assert b.call("update_variable", "s", A("t"), 2) is OK
        wait_for(lambda: a.storage._changed_elsewhere, "a's backend heard of it")
        out = a.call("get_variable", "s", A("t"))
        assert kinds(out) == [A("invalidate"), A("reply")] and out[-1][2][1][A("value")] == 2
        assert out[0] == (A("invalidate"), ["s"])
    finally:
        a.close()
        b.close()


def test_without_read_cache_nothing_is_followed_nor_pushed() -> None:
    prefix = fresh_prefix()
    url = shared().url
    client = redis.Redis.from_url(url)
    channel = (prefix + "changes").encode()
    a = Caching(url, prefix, read_cache=False)
    (b,) = nodes(1, prefix=prefix)
    recorded: list = []
    stop = watch_changes(b.storage, recorded.append)
    try:
        assert A("invalidations") not in a.welcome
        # a's backend keeps one subscription (its session copies), b two: no more
        wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 3, "three subscriptions")
        assert b.call("create_session", "s")[0] is OK
        assert a.result("create_session", "t")[0] is OK
        wait_for(lambda: recorded, "a's write reached b")
        assert a.call("get_session", "s")[-1][0] is A("reply")  # no :all at the end either
        assert a.sidecar.pushed == []
    finally:
        stop()
        a.close()
        b.close()


def test_a_killed_subscription_clears_everything_and_changes_flow_again_after_the_resync() -> None:
    server = RedisServer()
    prefix = fresh_prefix()
    a = Caching(server.url, prefix)
    b = Node(server.url, prefix)
    try:
        a.wait_pushed(ALL)
        assert b.call("create_session", "s")[0] is OK
        assert a.wait_pushed((A("invalidate"), ["s"])) == [(A("invalidate"), ["s"])]
        assert redis.Redis.from_url(server.url).client_kill_filter(_type="pubsub") >= 1  # a's feed among them
        assert a.wait_pushed(ALL) == [ALL]  # lost
        assert a.wait_pushed(ALL) == [ALL]  # subscribed again
        assert b.call("register_variable", "s", A("t"), A("integer"), 1)[0] is OK
        assert a.wait_pushed((A("invalidate"), ["s"])) == [(A("invalidate"), ["s"])]
    finally:
        a.close()
        b.close()
        server.close()


def test_redis_restarted_clears_everything_while_down_and_at_the_resubscription() -> None:
    server = RedisServer()
    prefix = fresh_prefix()
    a = Caching(server.url, prefix, timeout_ms=300)
    b = Node(server.url, prefix)
    try:
        a.wait_pushed(ALL)
        assert b.call("create_session", "s")[0] is OK
        a.wait_pushed((A("invalidate"), ["s"]))
        assert a.call("get_session", "s")[-1][0] is A("reply")  # subscribed: no :all after it
        server.stop()
        a.wait_pushed(ALL)  # the loss
        # while down: every chunk that served a call ends with :all
        out = a.call("get_session", "s")
        assert out[0][2][0] is A("error") and out[-1] == ALL
        server.start()
        a.wait_pushed(ALL)  # resubscribed
        assert a.call("get_session", "s")[-1][0] is A("reply")
        assert b.call("create_session", "after")[0] is OK
        a.wait_pushed((A("invalidate"), ["after"]))
    finally:
        a.close()
        b.close()
        server.close()


def test_a_subscription_redis_stops_answering_is_noticed_and_made_again() -> None:
    server = RedisServer()
    prefix = fresh_prefix()
    a = Caching(server.url, prefix, timeout_ms=200)
    try:
        a.wait_pushed(ALL)
        # Redis answers nothing (the connection stays open): only the feed's ping notices
        redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", "3000", "ALL")
        a.wait_pushed(ALL)  # lost
        assert a.sidecar._feed_down
        a.wait_pushed(ALL)  # made again once Redis answers
        wait_for(lambda: not a.sidecar._feed_down, "the feed is up")
    finally:
        a.close()
        server.close()


@pytest.mark.subprocess
def test_a_sidecar_process_pushes_invalidations_to_stdout_and_exits_at_end_of_input() -> None:
    prefix = fresh_prefix()
    url = shared().url
    (b,) = nodes(1, prefix=prefix)
    client = SubprocessClient("--storage", url, "--redis-prefix", prefix, hello_options={A("read_cache"): True})
    try:
        assert client.welcome[A("invalidations")] is True
        while client.read_frame() != ALL:
            pass
        assert b.call("create_session", "s")[0] is OK
        while (term := client.read_frame()) != (A("invalidate"), ["s"]):
            assert term[0] in (A("log"), A("invalidate")), term
        client.close_stdin()
        assert client.wait_exit() == 0
    finally:
        client.close()
        b.close()


# publishing ------------------------------------------------------------------------------------


def _publishes(client: redis.Redis) -> int:
    stats = client.execute_command("INFO", "commandstats").get("cmdstat_publish")
    return int(stats["calls"]) if stats else 0


def test_a_commit_is_published_to_others_also_while_its_own_subscription_is_down() -> None:
    prefix = fresh_prefix()
    # b follows nothing: only a's subscription listens (the script used to want two)
    (b,) = nodes(1, prefix=prefix, follow_changes=False)
    a = RedisStorage(shared().url, prefix, follow_changes=False)
    seen: list = []
    up = threading.Event()
    stop = watch_changes(a, seen.append, up.set)
    try:
        assert up.wait(WAIT_S)
        assert b.call("create_session", "s")[0] is OK
        wait_for(lambda: seen, "b's commit reached a")
        assert seen[0].sessions == {"s": []} and seen[0].touched == frozenset()
    finally:
        stop()
        a.close()
        b.close()


def test_a_store_alone_publishes_nothing_even_with_two_subscriptions() -> None:
    server = RedisServer()
    try:
        client = redis.Redis.from_url(server.url)
        a = Caching(server.url, fresh_prefix())  # its backend's subscription and its cache's
        a.wait_pushed(ALL)
        before = _publishes(client)
        assert a.result("create_session", "s")[0] is OK
        assert a.result("register_variable", "s", A("t"), A("integer"), 1)[0] is OK
        assert _publishes(client) == before
        other = Node(server.url, a.storage.layout.prefix)
        assert other.call("update_variable", "s", A("t"), 2) is OK
        assert _publishes(client) == before + 1  # now someone else listens
        a.wait_pushed((A("invalidate"), ["s"]))
        other.close()
        a.close()
    finally:
        server.close()
