"""The sidecar process: stdin → protocol → calls → protocol → stdout.

Two layers:

* `Sidecar` holds the protocol machine, the store and the settings, and turns one chunk of
  input into the list of output frames it causes (no I/O, so it is easy to test);
* `serve` is the thin loop around it: it reads stdin in large chunks into one buffer it keeps
  (`ChunkReader`: after a lone frame, polling for up to `--spin-us`, then blocking; why not
  an event loop: see `serve`), writes all frames one chunk produced with a single write, runs the
  periodic cleanup on a timer thread, writes the frames the sidecar pushes unasked (`push`:
  invalidations for other stores' writes), and returns as soon as stdin reaches end of file.

stdout carries frames only: `run` moves the real fd 1 to a private descriptor for frames and
points fd 1 and `sys.stdout` at stderr, so a stray print cannot corrupt the stream.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Sequence

from pydantic import ValidationError

from sidecar import __version__, codec
from sidecar.clock import Clock
from sidecar.elixir.inspect import describe, describe_exception
from sidecar.gcsettle import GcSettler
from sidecar.logframes import LogFrameHandler
from sidecar.options import HelloOptions, SidecarOptions, option_error_term
from sidecar.protocol import (
    A_REPLY,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Call,
    CallError,
    Hello,
    ProtocolError,
    ProtocolMachine,
    describe_event,
)
from sidecar.storage.base import (
    Change,
    Conflict,
    Storage,
    StorageError,
    StorageOpenError,
    can_watch,
    take_refreshed,
    watch_changes,
)
from sidecar.storage.factory import open_storage
from sidecar.storage.memory import MemoryStorage
from sidecar.store import calls
from sidecar.store.config import StoreConfig
from sidecar.store.replies import Replies
from sidecar.store.session_store import SessionStore, is_error
from sidecar.terms import Atom

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1 << 20
A_ERROR = Atom("error")
A_INTERNAL_ERROR = Atom("internal_error")
A_CONFLICT = Atom("conflict")
A_STORAGE_ERROR = Atom("storage_error")
A_STORAGE_UNAVAILABLE = Atom("storage_unavailable")
A_ALL = Atom("all")

CLEANUP_BATCH = 200
"""Expired sessions removed per step of the periodic cleanup: calls that arrive meanwhile wait
for one step, not for the whole cleanup (docs/reliability.md)."""


def _never(_outcome: Any) -> bool:
    return False


def _failed(outcome: tuple) -> bool:
    """A call's (result, events, reply frame) that must leave storage as it was."""
    return is_error(outcome[0])


class Sidecar:
    """Everything but the I/O: feed input chunks, get the frames to write back."""

    def __init__(
        self,
        options: SidecarOptions,
        log_handler: LogFrameHandler | None = None,
        clock_factory: Callable[..., Any] = Clock,
        storage: Storage | None = None,
    ) -> None:
        self.options = options
        self.log_handler = log_handler
        self.protocol = ProtocolMachine(options.max_frame_bytes)
        self.telemetry_enabled = True
        self.invalidations = False
        """Whether the harness keeps a read cache (`read_cache: true` in `:hello`): the periodic
        cleanup then sends `{:invalidate, :all}` after removing sessions (docs/protocol.md)."""
        self.pushed: list[bytes] = []
        self.push: Callable[[list[bytes]], None] = self.pushed.extend
        """Where frames sent unasked from another thread go (the invalidations of other stores'
        writes): `serve` points it at the writer, under the lock of the I/O loop; until then
        (tests) they collect in `pushed`."""
        self._stop_watching: Callable[[], None] | None = None
        self._feed_down = False
        """Watching, and the feed of others' changes is not (yet, or no longer) subscribed: every
        chunk that served a call then ends with `{:invalidate, :all}` (see `_watch_others`)."""
        self.last_chunk_frames = 0
        """How many frames (or frame errors) the last `handle_input` chunk completed: the I/O
        loop spins before its next read only after a chunk of at most one (see `ChunkReader`)."""
        self._clock_factory = clock_factory
        self.config = StoreConfig(
            default_ttl=options.default_ttl,
            global_program_ttl=options.global_program_ttl,
            cleanup_interval_ms=options.cleanup_interval,
            enable_test_calls=options.enable_test_calls,
        )
        self.clock = clock_factory(None)
        self.unavailable: str | None = None
        """Why the storage could not be opened (then the hello and every call are refused with
        it, so the harness's start fails with a clear reason instead of restarting in a loop)."""
        if storage is None:
            try:
                storage = open_storage(options.storage_spec())
            except StorageOpenError as error:
                self.unavailable = str(error)
                log.error("storage %s cannot be opened: %s", options.storage_spec().describe(), error)
                storage = MemoryStorage()
        self.store = SessionStore(self.config, self.clock, storage)
        self.replies = Replies(self.config, self.clock)
        self._served: list[int] = []
        """Ids of the calls served in the current chunk (their replies wait for its flush)."""

    @property
    def cleanup_interval_ms(self) -> int:
        """Milliseconds between periodic cleanups, as last configured."""
        return self.config.cleanup_interval_ms

    # -- input -----------------------------------------------------------------------------

    def handle_input(self, chunk: bytes) -> list[bytes]:
        """The frames answering every frame that `chunk` completes (`b""`: end of input).

        Every write the chunk's calls made is durable (`SessionStore.flush`: group commit)
        before this returns, so no reply leaves before its write is committed."""
        out: list[bytes] = []
        self._served.clear()
        calls_, consumed = self.protocol.receive_calls(chunk)
        self.last_chunk_frames = len(calls_)
        if calls_:  # the common chunk: nothing but calls (one per sequential caller's read)
            self._serve(calls_, out)
            if consumed == len(chunk):
                self._flush(out)
                if self._feed_down:
                    self._unfollowed(out)
                handler = self.log_handler
                if handler is not None and handler.has_pending():
                    self._log_pending(out)
                return out
            chunk = chunk[consumed:]
        events = self.protocol.receive_data(chunk)
        if not chunk and self.protocol.eof_inside_frame:  # fatal: the stream ends mid-frame
            log.error("stdin ended inside a frame, exiting: %s", self.protocol.eof_inside_frame)
        self.last_chunk_frames += len(events)
        for event in events:
            try:
                if type(event) is Call:
                    self._serve(((event.id, event.function, event.args),), out)
                elif type(event) is Hello:
                    try:
                        self._hello(event, out)
                    except Exception as exc:  # answered, or the harness would wait for its timeout
                        log.exception("hello failed")
                        reason = (A_INTERNAL_ERROR, describe_exception(exc))
                        out.append(self.protocol.protocol_error(reason, f"the hello could not be handled: {reason[1]}"))
                else:
                    assert isinstance(event, (CallError, ProtocolError))
                    self._log_pending(out)
                    out.append(self.protocol.answer(event))
            except Exception:  # a defect here must not stop the other frames of the chunk
                log.exception("failed to handle %s", describe_event(event))
        self._flush(out)
        if self._feed_down:
            self._unfollowed(out)
        self._log_pending(out)
        return out

    def _serve(self, calls_: Sequence[tuple[int, Atom, list]], out: list[bytes]) -> None:
        """Run `(id, function, args)` calls in order, each as one unit of work that spans its
        reply's encoding (a reply that cannot be encoded undoes the call); for each, append its
        log frames, its telemetry frames and its reply, in that order. A defect in one call is
        logged and the next one is served."""
        serve_call = self.serve_call
        served = self._served
        for call_id, function, args in calls_:
            try:
                events, frame = serve_call(call_id, function, args)
                served.append(call_id)
                if self._stop_watching is not None:
                    self._refreshed(out)
                handler = self.log_handler
                if handler is not None and handler.has_pending():
                    self._log_pending(out)
                if events and self.telemetry_enabled:
                    self._telemetry(events, out)
                out.append(frame)
            except Exception:  # a defect here must not stop the other frames of the chunk
                log.exception("failed to handle %s", describe_event(Call(call_id, function, args)))

    def serve_call(self, call_id: int, function: Atom, args: list) -> tuple[Any, bytes]:
        """One call as one unit of work that spans its reply's encoding (a reply that cannot be
        encoded undoes the call): `(its telemetry events, its reply frame)`. Not yet durable:
        that is the chunk's `_flush`."""
        if self.unavailable is not None:
            return (), self.protocol.error_reply(call_id, (A_STORAGE_UNAVAILABLE, self.unavailable))
        store = self.store
        dispatch = calls.dispatch
        renderer = self.replies.renderers.get(function)
        encode_reply = self.protocol.encode_reply

        def attempt() -> tuple:
            result, events = dispatch(store, function, args)
            if renderer is not None:
                result = renderer(result)
            return result, events, encode_reply(call_id, result)

        try:
            _, events, frame = store.transact(attempt, _failed)
            return events, frame
        except Conflict as conflict:
            log.warning("call %s (id %s) gave up: %s", function.name, describe(call_id, 40), conflict)
            return (), self.protocol.error_reply(call_id, A_CONFLICT)
        except codec.EncodeError as exc:
            log.error("reply to call %s (id %s) could not be encoded (undone): %s", function.name, describe(call_id, 40), exc)
            return (), self.protocol.error_reply(call_id, (A_INTERNAL_ERROR, f"reply could not be encoded: {exc}"))
        except StorageError as exc:
            log.error("call %s (id %s): storage failed: %s", function.name, describe(call_id, 40), exc)
            return (), self.protocol.error_reply(call_id, (A_STORAGE_ERROR, str(exc)))
        except Exception as exc:
            log.exception("call %s (id %s) failed", function.name, describe(call_id, 40))
            return (), self.protocol.error_reply(call_id, (A_INTERNAL_ERROR, describe_exception(exc)))

    def settle(self) -> None:
        """The backend's deferred work, once a chunk's replies are out (`Storage.settle`). It
        never decides a reply; a defect in it is logged, and the sidecar goes on."""
        try:
            self.store.settle()
        except Exception:
            log.exception("the backend's deferred work failed")

    def _flush(self, out: list[bytes]) -> None:
        """The chunk's durability point. If the backend cannot make the chunk's writes durable
        (it is then back at its last durable state), every reply of the chunk's calls becomes
        `{:error, {:storage_error, message}}` and their telemetry frames are dropped."""
        try:
            self.store.flush()
        except Exception as error:  # a StorageError; anything else is a defect, answered alike
            if not isinstance(error, StorageError):
                log.exception("flushing the chunk failed")
            served = set(self._served)
            reason = (A_STORAGE_ERROR, str(error))
            kept = []
            for frame in out:
                term = codec.decode(frame[4:])
                if type(term) is tuple and term[0] is A_REPLY and term[1] in served:
                    kept.append(self.protocol.error_reply(term[1], reason))
                elif not (type(term) is tuple and term[0] is Atom("telemetry")):
                    kept.append(frame)
            out[:] = kept

    def _telemetry(self, events: Any, out: list[bytes]) -> None:
        for event, measurements, metadata in events:
            try:
                out.append(self.protocol.telemetry(event, measurements, metadata))
            except Exception:
                log.exception("telemetry event %r could not be encoded", event)

    def _hello(self, hello: Hello, out: list[bytes]) -> None:
        if self.unavailable is not None:
            self._log_pending(out)
            message = f"storage unavailable: {self.unavailable}"
            out.append(self.protocol.protocol_error((A_STORAGE_UNAVAILABLE, self.unavailable), message))
            return
        try:
            options = HelloOptions.from_term(hello.options)
        except ValidationError as error:
            reason, message = option_error_term(error, hello.options)
            log.warning("hello refused: %s", message)
            self._log_pending(out)
            out.append(self.protocol.protocol_error(reason, message))
            return
        self._apply_hello(options)
        self._log_pending(out)
        out.append(self.protocol.welcome(hello.version, self.welcome_info()))

    def _apply_hello(self, options: HelloOptions) -> None:
        overrides: dict[str, Any] = {}
        if options.default_ttl is not None:
            overrides["default_ttl"] = options.default_ttl
        if options.global_program_ttl is not None:
            overrides["global_program_ttl"] = options.global_program_ttl
        if options.cleanup_interval is not None:
            overrides["cleanup_interval_ms"] = options.cleanup_interval
        if options.session_struct is not None:
            overrides["session_struct"] = options.session_struct
        if options.variable_struct is not None:
            overrides["variable_struct"] = options.variable_struct
        if options.compact_variables is not None:
            overrides["compact_variables"] = options.compact_variables
        if options.telemetry is not None:
            self.telemetry_enabled = self.store.telemetry = options.telemetry
        if options.read_cache is not None:
            self.invalidations = options.read_cache
            self._watch_others(options.read_cache)
        self.config = self.config.model_copy(update=overrides)
        if options.monotonic_time_ms is not None:
            self.clock = self._clock_factory(None, options.monotonic_time_ms, options.time_offset_ms)
        elif options.monotonic_time is not None:
            self.clock = self._clock_factory(options.monotonic_time, None, options.time_offset_ms)
        self.store.reconfigure(self.config, self.clock)
        self.replies.configure(self.config, self.clock)

    def welcome_info(self) -> dict:
        """The info map of `{:welcome, 1, info}`."""
        info = {
            Atom("implementation"): "snakepit_sidecar",
            Atom("version"): __version__,
            Atom("os_pid"): os.getpid(),
            Atom("max_frame_bytes"): self.protocol.max_frame_bytes,
            Atom("protocol_versions"): list(SUPPORTED_VERSIONS),
        }
        if self.config.compact_variables:  # only then: a harness that never asked sees no change
            info[Atom("compact_variables")] = True
        if self._stop_watching is not None:  # only then may a cache on shared storage be kept
            info[Atom("invalidations")] = True
        return info

    # -- other stores' writes ----------------------------------------------------------------

    def _watch_others(self, on: bool) -> None:
        """Follow (or stop following) the changes other stores make to a shared storage, for a
        harness that keeps a read cache (docs/harness.md, "Read cache", shared storage).

        Coherence: each change of another store is pushed as `{:invalidate, [session ids]}` once
        it is committed (the feed reports commits), so the harness forgets what it read before.
        A call that read a session afresh from the shared store (`base.take_refreshed`) may see
        a change the feed has not reported yet: its sessions' invalidation goes out before its
        reply, so once a reply carries another store's change, nothing older is served.
        The feed may miss changes while it is not subscribed (`base.watch_changes`): from the
        start until it is first subscribed, and from the moment it is noticed lost until it is
        subscribed again, every chunk that served a call ends with `{:invalidate, :all}` (so
        nothing read meanwhile stays cached), and `:all` is pushed at each loss and each
        (re)subscription."""
        if on and self._stop_watching is None and self.unavailable is None and can_watch(self.store.storage):
            self._feed_down = True
            take_refreshed(self.store.storage)  # starts the count
            self._stop_watching = watch_changes(self.store.storage, self._others_changed, self._feed_resync, self._feed_lost)
        elif not on:
            self.stop_watching()

    def stop_watching(self) -> None:
        """Stop following other stores' changes (the sidecar stops, or a harness without cache)."""
        stop, self._stop_watching = self._stop_watching, None
        self._feed_down = False
        if stop is not None:
            stop()

    def _others_changed(self, change: Change) -> None:
        """(feed thread) One commit of another store: its sessions' invalidation. A session it
        only touched changes nothing the harness keeps (a later expiry than the one it knows
        only makes it read through sooner), and global programs are not cached."""
        if self._stop_watching is None:
            return
        touched = change.touched
        session_ids = [session_id for session_id in change.sessions if session_id not in touched]
        if session_ids:
            self.push([self.protocol.invalidate(session_ids)])

    def _feed_resync(self) -> None:
        """(feed thread) Subscribed (again): every later change will be pushed; what was read
        before may be stale."""
        if self._stop_watching is None:
            return
        self._feed_down = False
        self.push([self.protocol.invalidate(A_ALL)])

    def _feed_lost(self) -> None:
        """(feed thread) The subscription is gone: changes are missed until it is back."""
        if self._stop_watching is None:
            return
        self._feed_down = True
        self.push([self.protocol.invalidate(A_ALL)])

    def _refreshed(self, out: list[bytes]) -> None:
        """Before a call's reply: the invalidation of the sessions read afresh meanwhile (by it,
        or by the periodic cleanup since the last call)."""
        session_ids = take_refreshed(self.store.storage)
        if session_ids:
            out.append(self.protocol.invalidate(session_ids))

    def _unfollowed(self, out: list[bytes]) -> None:
        """While the feed is down: a chunk that served calls ends with `{:invalidate, :all}`, so
        none of its answers stays in the harness's cache."""
        if self._served:
            out.append(self.protocol.invalidate(A_ALL))

    # -- timer -----------------------------------------------------------------------------

    def run_cleanup(self) -> list[bytes]:
        """The whole periodic cleanup at once (tests); the timer runs it step by step."""
        out: list[bytes] = []
        now = self.clock.now()
        first = True
        while True:
            frames, more = self.cleanup_step(now, first)
            out.extend(frames)
            first = False
            if not more:
                return out

    def cleanup_step(self, now: int, first: bool = False) -> tuple[list[bytes], bool]:
        """One step of the periodic cleanup at time `now`: up to `CLEANUP_BATCH` expired sessions,
        or, when none are left, the expired global programs. Each step is a unit of work of its
        own, made durable before it returns. `(frames it causes, whether more steps remain)`."""
        out: list[bytes] = []
        more = False
        if self.unavailable is None:
            store = self.store
            try:
                removed, _ = store.transact(lambda: store.cleanup_expired_sessions(now, CLEANUP_BATCH, count_run=first), _never)
                more = removed >= CLEANUP_BATCH
                if not more:
                    programs, _ = store.transact(lambda: store.cleanup_global_programs(now), _never)
                    log.debug("periodic cleanup at %d: global programs %d", now, programs)
                store.flush()
                if removed and self.invalidations:
                    # after the commit, before any later reply: the harness's cache forgets them
                    out.append(self.protocol.invalidate(A_ALL))
            except Exception:
                log.exception("periodic cleanup failed")
                more = False
        self._log_pending(out)
        return out, more

    def _log_pending(self, out: list[bytes]) -> None:
        handler = self.log_handler
        if handler is None or not handler.has_pending():
            return
        for level, message, metadata in handler.drain():
            try:
                out.append(self.protocol.log(level, message, metadata))
            except Exception:  # never log from here: it would feed itself
                pass

    def pending_log_frames(self) -> list[bytes]:
        """Frames for log records emitted outside any input (e.g. from the timer)."""
        out: list[bytes] = []
        self._log_pending(out)
        return out


# ---------------------------------------------------------------------------------------------
# I/O


class ChunkReader:
    """Reads whatever one fd holds (up to `READ_CHUNK_BYTES`) into one buffer kept for the
    process's life, and returns it as `bytes` of the size read.

    Why not `os.read(fd, READ_CHUNK_BYTES)`: that allocates a 1 MiB object on every call, which
    glibc serves with `mmap`, shrinks with `mremap` and returns with `munmap`, plus the page
    faults of touching it. Under 16 callers that (with the TLB flushes it causes) was about 10%
    of the sidecar's CPU and ~13 µs per read; with the kept buffer a read costs the copy of the
    bytes read (docs/benchmarks.md, "Reading stdin").

    Spinning (`spin_us` > 0): the fd is made non-blocking, and `read(spin=True)` polls it
    (yielding the CPU between tries) for up to `spin_us` microseconds before it blocks. On a VM
    whose idle vCPUs halt, a process blocked in `read` on the vCPU the BEAM is not on is woken
    through the hypervisor, tens of µs per request; one still polling sees the request at once.
    Measured (docs/benchmarks.md, "Fifth pass"): sequential get_variable from 80-100 µs to
    26-30 µs, for about 2.5 points of one CPU at 1,000 sporadic calls a second, and nothing once
    idle. `serve` asks for it only after a chunk of at most one frame: a caller waiting for its
    reply. After a batch (concurrent callers) the BEAM is busy producing the next one, and
    polling would take CPU time from it when both share a vCPU (64 callers of update_variable:
    half the throughput). With one CPU to run on there is nothing to gain (the request can only
    arrive while the sidecar is not running), so it never spins. `close` makes the fd blocking
    again.
    """

    def __init__(self, fd: int, size: int = READ_CHUNK_BYTES, spin_us: int = 0) -> None:
        self.fd = fd
        self._buffers = [bytearray(size)]
        self._view = memoryview(self._buffers[0])
        self.spin_seconds = spin_us / 1e6 if spin_us > 0 and usable_cpus() > 1 else 0.0
        self._made_non_blocking = False
        if self.spin_seconds and os.get_blocking(fd):
            os.set_blocking(fd, False)
            self._made_non_blocking = True

    def read(self, spin: bool = True) -> bytes:
        """The next chunk; `b""` at end of input. OSError propagates. `spin`: poll first (when
        this reader spins at all); otherwise one non-blocking try, then block."""
        if not self.spin_seconds:
            return self._view[: os.readv(self.fd, self._buffers)].tobytes()
        fd, buffers = self.fd, self._buffers
        deadline = time.perf_counter() + self.spin_seconds if spin else 0.0
        while True:
            try:
                return self._view[: os.readv(fd, buffers)].tobytes()
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    break
                os.sched_yield()  # whoever else wants this CPU (one that will write to us, maybe)
        os.set_blocking(fd, True)  # nothing came: sleep until something does
        try:
            return self._view[: os.readv(fd, buffers)].tobytes()
        finally:
            os.set_blocking(fd, False)

    def close(self) -> None:
        """Give the fd back as it was found (blocking), e.g. for a terminal's shell."""
        if self._made_non_blocking:
            self._made_non_blocking = False
            try:
                os.set_blocking(self.fd, True)
            except OSError:
                pass


def usable_cpus() -> int:
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class FrameWriter:
    """Writes batches of frames to one fd with one write each (retrying partial writes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def write(self, frames: list[bytes]) -> None:
        if not frames or self.closed:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except BrokenPipeError:
            self.closed = True  # the BEAM is gone: nobody to talk to
            log.info("stdout closed by the peer")


def serve(sidecar: Sidecar, in_fd: int, writer: FrameWriter, spin_us: int = 0) -> None:
    """Serve until `in_fd` reaches end of file (or stdout is closed by the peer).

    The main thread blocks in `read` on stdin (after a chunk of at most one frame, it first polls
    for up to `spin_us`: `ChunkReader`); the periodic cleanup runs on a timer thread; one lock
    serializes the two, so the store only ever sees one caller at a time.

    Why a blocking read and not an event loop: a process asleep in `read` on a pipe is woken by
    the writer's "sync" wake-up, which lets the kernel run it on the CPU the BEAM is leaving;
    one asleep in `poll`/`epoll` is woken through the poll table and often lands on the other
    CPU. Measured here, interleaved against the bare echo (`sidecar/echo.py`, which also blocks
    in `read`): ping costs 1.28-1.35x the echo's round trip with this loop, and 3.2-4.8x
    (bimodal: 1.6x or 5x) on an anyio/asyncio loop with a persistent reader. See
    docs/benchmarks.md, "What was tried".
    """
    lock = threading.Lock()
    stop = threading.Event()
    interval_changed = threading.Event()

    def push(frames: list[bytes]) -> None:  # frames sent unasked, from other threads
        with lock:
            if not stop.is_set():
                writer.write(frames)

    sidecar.push = push

    def cleanup_timer() -> None:
        while not stop.is_set():
            interval_changed.clear()
            if interval_changed.wait(cleanup_wait_seconds(sidecar.cleanup_interval_ms)):
                continue  # a hello changed the interval: start counting again
            more, first = True, True
            now = sidecar.clock.now()
            while more:  # in steps: a call arriving meanwhile waits for one step, not the whole
                with lock:
                    if stop.is_set():
                        return
                    frames, more = sidecar.cleanup_step(now, first)
                    writer.write(frames)
                first = False
                if more:
                    time.sleep(0.0005)  # hand the lock over: Python's lock is not fair

    reader = ChunkReader(in_fd, spin_us=spin_us)
    settler = GcSettler()
    timer = threading.Thread(target=cleanup_timer, name="cleanup-timer", daemon=True)
    timer.start()
    interval = sidecar.cleanup_interval_ms
    try:
        while not writer.closed:
            try:
                chunk = reader.read(spin=sidecar.last_chunk_frames <= 1)
            except OSError as error:
                log.warning("reading stdin failed (%s); treating it as end of input", error)
                chunk = b""
            with lock:
                writer.write(sidecar.handle_input(chunk))
                sidecar.settle()
            settler.tick()  # after the replies are out
            if not chunk:
                break
            if sidecar.cleanup_interval_ms != interval:
                interval = sidecar.cleanup_interval_ms
                interval_changed.set()
    finally:
        with lock:  # a cleanup under way finishes first; none starts after this
            stop.set()
        interval_changed.set()
        sidecar.stop_watching()
        reader.close()


def cleanup_wait_seconds(interval_ms: int) -> float:
    """How long the timer waits for `interval_ms`: capped at what `Event.wait` accepts (a hello's
    `cleanup_interval` may be any positive integer; 2**64 ms made the wait raise OverflowError
    and ended the timer thread, so no cleanup ever ran again)."""
    return min(interval_ms, _MAX_WAIT_MS) / 1000


_MAX_WAIT_MS = int(threading.TIMEOUT_MAX) * 1000 // 2  # ~146 years: never, in practice


def take_over_stdout() -> int:
    """A private fd for frames; fd 1 and `sys.stdout` then point at stderr."""
    sys.stdout.flush()
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return frames_fd


def run(options: SidecarOptions, log_handler: LogFrameHandler | None = None) -> int:
    """Run the sidecar on this process's stdin/stdout; return the exit status."""
    frames_fd = take_over_stdout()
    sidecar = Sidecar(options, log_handler)
    writer = FrameWriter(frames_fd)
    log.debug("sidecar %s serving protocol %d (pid %d)", __version__, PROTOCOL_VERSION, os.getpid())
    try:
        serve(sidecar, 0, writer, options.spin_us)
    finally:
        try:
            sidecar.store.storage.close()
        except Exception:
            log.exception("closing the storage failed")
        os.close(frames_fd)
    return 0
