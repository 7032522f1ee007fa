"""What the sidecar pushes to a caching harness about other stores' writes, on any storage that
reports them (`storage.base.watch_changes`), here a stand-in that reports what the test says:

* only after `read_cache: true` in `:hello`, and only on a storage that can be watched: then the
  welcome says `invalidations: true` (and not otherwise);
* each change of another store is pushed as `{:invalidate, [session ids]}`, except sessions it
  only touched, and nothing for a change of global programs alone;
* the feed's state: until it is subscribed, and from a loss to the next resync, every chunk that
  served a call ends with `{:invalidate, :all}`; each loss and each resync pushes `:all`;
* a call that read sessions afresh from the shared store (`take_refreshed`) has their
  invalidation before its reply;
* watching stops when `serve` ends, and nothing is pushed after it.

Redis itself (the real feed, its loss and resubscription): tests/test_redis_invalidations.py.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Any, Callable, Optional

from sidecar import codec, server
from sidecar.cli import SidecarOptions
from sidecar.protocol import frame
from sidecar.storage.base import Change, can_watch, watch_changes
from sidecar.storage.memory import MemoryStorage
from sidecar.terms import Atom

A = Atom
ALL = (A("invalidate"), A("all"))


class WatchedStorage(MemoryStorage):
    """Memory storage that claims other stores write it: the test plays their feed."""

    def __init__(self) -> None:
        super().__init__()
        self.callback: Optional[Callable[[Change], None]] = None
        self.on_resync: Optional[Callable[[], None]] = None
        self.on_lost: Optional[Callable[[], None]] = None
        self.watches = 0
        self.stopped = 0
        self.refreshed: list = []
        self.counting = False

    def take_refreshed(self) -> list:
        self.counting = True
        refreshed, self.refreshed = self.refreshed, []
        return refreshed

    def watch(self, callback: Callable[[Change], None], on_resync: Any = None, on_lost: Any = None) -> Callable[[], None]:
        self.callback, self.on_resync, self.on_lost = callback, on_resync, on_lost
        self.watches += 1

        def stop() -> None:
            self.stopped += 1

        return stop


def change(sessions: dict, global_programs: tuple = (), touched: frozenset = frozenset()) -> Change:
    return Change(sessions, list(global_programs), "other", touched)


def terms(frames: list[bytes]) -> list[Any]:
    return [codec.decode(f[4:]) for f in frames]


def hello(sidecar: server.Sidecar, options: dict) -> dict:
    (welcome,) = [t for t in terms(sidecar.handle_input(frame((A("hello"), 1, options)))) if t[0] is A("welcome")]
    return welcome[2]


def call(sidecar: server.Sidecar, call_id: int, function: str, *args: Any) -> list[Any]:
    return terms(sidecar.handle_input(frame((A("call"), call_id, A(function), list(args)))))


def caching_sidecar() -> tuple[server.Sidecar, WatchedStorage]:
    storage = WatchedStorage()
    sidecar = server.Sidecar(SidecarOptions(), storage=storage)
    assert hello(sidecar, {A("read_cache"): True})[A("invalidations")] is True
    return sidecar, storage


def test_only_a_caching_harness_on_a_watched_storage_gets_invalidations() -> None:
    assert can_watch(WatchedStorage()) and not can_watch(MemoryStorage())
    for options in ({}, {A("read_cache"): False}):
        storage = WatchedStorage()
        sidecar = server.Sidecar(SidecarOptions(), storage=storage)
        assert A("invalidations") not in hello(sidecar, options)
        assert storage.watches == 0
    # a storage nobody else writes: nothing to watch, nothing announced
    sidecar = server.Sidecar(SidecarOptions())
    assert A("invalidations") not in hello(sidecar, {A("read_cache"): True})
    assert call(sidecar, 1, "create_session", "s", [])[-1][0] is A("reply")  # no :all after it
    assert watch_changes(MemoryStorage(), lambda _change: None, lambda: None, lambda: None)() is None


def test_each_change_of_another_store_is_pushed_as_its_sessions_invalidation() -> None:
    sidecar, storage = caching_sidecar()
    assert storage.watches == 1
    storage.on_resync()
    assert terms(sidecar.pushed) == [ALL]
    sidecar.pushed.clear()
    storage.callback(change({"s": ["var_t_1"], b"\xff": []}))
    storage.callback(change({"t": []}))  # a header change, a delete: listed without variables
    assert terms(sidecar.pushed) == [(A("invalidate"), ["s", b"\xff"]), (A("invalidate"), ["t"])]
    sidecar.pushed.clear()
    # a commit that only touched sessions, or only changed global programs: nothing cached moves
    storage.callback(change({"s": [], "t": []}, touched=frozenset({"s", "t"})))
    storage.callback(change({}, global_programs=["g"]))
    assert sidecar.pushed == []
    # touched and changed in one commit: only the changed one
    storage.callback(change({"s": [], "t": ["var_x_2"]}, touched=frozenset({"s"})))
    assert terms(sidecar.pushed) == [(A("invalidate"), ["t"])]


def test_while_the_feed_is_down_every_chunk_that_served_a_call_ends_with_invalidate_all() -> None:
    sidecar, storage = caching_sidecar()
    # before the first subscription: changes may be missed, so nothing read may stay cached
    replies = call(sidecar, 1, "create_session", "s", [])
    assert replies[0][0] is A("reply") and replies[-1] == ALL
    storage.on_resync()
    assert terms(sidecar.pushed) == [ALL]
    assert call(sidecar, 2, "get_session", "s")[-1][0] is A("reply")  # subscribed: no :all
    storage.on_lost()
    assert terms(sidecar.pushed) == [ALL, ALL]
    # two calls in one chunk: their replies, then one :all
    chunk = frame((A("call"), 3, A("session_exists?"), ["s"])) + frame((A("call"), 4, A("session_exists?"), ["x"]))
    out = terms(sidecar.handle_input(chunk))
    assert [t[0] for t in out] == [A("reply"), A("reply"), A("invalidate")] and out[-1] == ALL
    # a chunk that served no call (a frame that is not one) ends as always
    assert ALL not in terms(sidecar.handle_input(frame((A("nonsense"),))))
    storage.on_resync()
    assert terms(sidecar.pushed) == [ALL, ALL, ALL]
    assert call(sidecar, 5, "get_session", "s")[-1][0] is A("reply")


def test_sessions_read_afresh_are_invalidated_before_the_reply_of_the_call() -> None:
    sidecar, storage = caching_sidecar()
    assert storage.counting  # started with the watch
    storage.on_resync()
    storage.refreshed = ["s", "t"]  # what the call (or a cleanup before it) read from the store
    out = call(sidecar, 1, "create_session", "s", [])
    assert out[0] == (A("invalidate"), ["s", "t"]) and out[-1][0] is A("reply")
    assert [t for t in call(sidecar, 2, "get_session", "s") if t[0] is A("invalidate")] == []
    # not watching: nobody asks
    plain = WatchedStorage()
    sidecar = server.Sidecar(SidecarOptions(), storage=plain)
    hello(sidecar, {})
    plain.refreshed = ["s"]
    assert [t[0] for t in call(sidecar, 1, "create_session", "s", [])] == [A("reply")]
    assert not plain.counting


def test_stopping_the_watch_stops_the_pushes() -> None:
    sidecar, storage = caching_sidecar()
    storage.on_resync()
    sidecar.stop_watching()
    assert storage.stopped == 1
    sidecar.pushed.clear()
    storage.callback(change({"s": ["v"]}))
    storage.on_lost()
    storage.on_resync()
    assert sidecar.pushed == []
    assert call(sidecar, 1, "create_session", "s", [])[-1][0] is A("reply")
    assert A("invalidations") not in sidecar.welcome_info()


def test_serve_writes_pushed_frames_under_its_lock_and_stops_watching_at_the_end() -> None:
    storage = WatchedStorage()
    sidecar = server.Sidecar(SidecarOptions(), storage=storage)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    done = threading.Event()

    def run() -> None:
        server.serve(sidecar, in_read, server.FrameWriter(out_write))
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    os.write(in_write, frame((A("hello"), 1, {A("read_cache"): True})))
    reader = FrameReader(out_read)
    assert reader.next()[0] is A("welcome")
    storage.on_resync()  # from this thread, as the feed's thread would
    assert reader.next() == ALL
    storage.callback(change({"s": ["v"]}))
    assert reader.next() == (A("invalidate"), ["s"])
    os.close(in_write)  # end of input: serve returns
    assert done.wait(10)
    assert storage.stopped == 1
    storage.callback(change({"late": ["v"]}))  # after the end: dropped, not written
    os.close(out_write)
    assert reader.rest() == []
    os.close(in_read)
    os.close(out_read)


class FrameReader:
    """Frames from a pipe, one at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def next(self) -> Any:
        while True:
            if len(self.buffer) >= 4:
                size = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) >= 4 + size:
                    body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                    return codec.decode(body)
            assert select.select([self.fd], [], [], 10)[0], "no frame within 10 s"
            data = os.read(self.fd, 65536)
            assert data, "the pipe closed"
            self.buffer += data

    def rest(self) -> list[Any]:
        """Every frame until the writer closed the pipe."""
        while True:
            assert select.select([self.fd], [], [], 10)[0], "the pipe stayed open"
            data = os.read(self.fd, 65536)
            if not data:
                break
            self.buffer += data
        out = []
        while self.buffer:
            out.append(self.next())
        return out
