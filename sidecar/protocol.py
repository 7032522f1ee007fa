"""The sidecar wire protocol (docs/protocol.md) as a pure state machine: bytes in, events out.

No I/O happens here. The server feeds whatever it read from stdin to `receive_data` and gets
back parsed events; it asks the machine for the bytes of each frame it wants to send and writes
them itself. Framing is `{:packet, 4}`: a 4-byte big-endian length, then one ETF term.

Hot path: incoming bytes are parsed straight from the chunk that was read when nothing is
buffered, and otherwise from one bytearray with a read offset that is compacted once per
`receive_data` call, so a frame's bytes are copied once (into the `bytes` handed to the
decoder) and never re-copied per frame.

A frame whose length header exceeds `max_frame_bytes` is skipped without buffering its body:
only its first `PEEK_BYTES` are kept, to read the call id from them.

Every error path is total: whatever bytes come in, `receive_data` returns events and the
answers to them encode. Client terms are only ever printed through
`elixir_inspect.inspect_prefix`/`describe` (bounded, iterative, big integers included), never
through `repr` (CPython's int-to-string limit raises on a 4301-digit integer). A frame nested
deeper than `codec.MAX_TERM_DEPTH` is answered with `{:term_too_deep, limit}` (to its call id
when that can be read, else as a protocol error). A compressed term (tag 80) may inflate to at
most `max_frame_bytes`, like an uncompressed one.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any, Union

from sidecar import codec
from sidecar.elixir.inspect import describe, exception_message, inspect_prefix
from sidecar.settings import DEFAULT_MAX_FRAME_BYTES
from sidecar.terms import Atom

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
HEADER_BYTES = 4
# enough of a frame's start to read `{:call, id, ...}`'s id: 131, tuple header (<= 5 bytes),
# the atom `call` (<= 7 bytes) and an integer of up to 255 bytes (SMALL_BIG_EXT)
PEEK_BYTES = 300
BAD_FRAME_ECHO_BYTES = 200

_HEADER = struct.Struct(">I")
_unpack_header = _HEADER.unpack_from
_decode_call = codec.decode_call
_encode_tagged_frame = codec.encode_tagged_frame
_encode_reply_frame = codec.encode_reply_frame

A_HELLO = Atom("hello")
A_CALL = Atom("call")
A_WELCOME = Atom("welcome")
A_REPLY = Atom("reply")
A_TELEMETRY = Atom("telemetry")
A_LOG = Atom("log")
A_PROTOCOL_ERROR = Atom("protocol_error")
A_INVALIDATE = Atom("invalidate")
A_ERROR = Atom("error")
A_DECODE_ERROR = Atom("decode_error")
A_BAD_FRAME = Atom("bad_frame")
A_FRAME_TOO_LARGE = Atom("frame_too_large")
A_TRUNCATED_FRAME = Atom("truncated_frame")
A_UNSUPPORTED_VERSION = Atom("unsupported_version")
A_ALREADY_WELCOMED = Atom("already_welcomed")
A_UNKNOWN_CALL = Atom("unknown_call")
A_INTERNAL_ERROR = Atom("internal_error")
A_TERM_TOO_DEEP = Atom("term_too_deep")
TERM_TOO_DEEP = (A_TERM_TOO_DEEP, codec.MAX_TERM_DEPTH)

_REPLY_HEAD = codec.tagged_head(A_REPLY, 3)
_TELEMETRY_HEAD = codec.tagged_head(A_TELEMETRY, 4)


# ---------------------------------------------------------------------------------------------
# events


@dataclass(slots=True)
class Hello:
    """`{:hello, version, opts}` with a supported version; the server answers with `welcome`."""

    version: int
    options: dict


@dataclass(slots=True)
class Call:
    """`{:call, id, function, args}`: a well-formed request."""

    id: int
    function: Atom
    args: list


@dataclass(slots=True)
class CallError:
    """A frame whose request id could be read but that cannot be run; answer `{:error, reason}`."""

    id: int
    reason: Any


@dataclass(slots=True)
class ProtocolError:
    """A frame that cannot be attributed to a request; answer with a `:protocol_error` frame."""

    reason: Any
    message: str


Event = Union[Hello, Call, CallError, ProtocolError]


# ---------------------------------------------------------------------------------------------
# helpers


def frame(term: Any) -> bytes:
    """The bytes of one frame (4-byte length + ETF) holding `term`."""
    return codec.encode_frame(term)


def _echo(term: Any, encoded_size: int) -> Any:
    """`term` itself when small, else the first bytes of its inspect output (a binary).

    A term of at most BAD_FRAME_ECHO_BYTES bytes nests at most ~100 levels (each level takes
    two bytes or more), so echoed inside an error frame it still encodes."""
    if encoded_size <= BAD_FRAME_ECHO_BYTES:
        return term
    text = _inspect(term, BAD_FRAME_ECHO_BYTES)
    return text.encode("utf-8")[:BAD_FRAME_ECHO_BYTES].decode("utf-8", "ignore")


def _inspect(term: Any, limit: int) -> str:
    """The first `limit` characters of Elixir's inspect output of `term` (only as much of the
    term is printed as that takes). Never raises: a printer defect gives the term's kind."""
    try:
        return inspect_prefix(term, limit)
    except Exception:  # a broken inspector must not break an error reply
        return f"#{type(term).__name__}<uninspectable>"


def describe_event(event: Any, limit: int = 200) -> str:
    """One line naming an event for a log message, never raising and never longer than about
    `limit` characters, whatever the terms it carries (huge integers, deep nesting)."""
    try:
        if isinstance(event, Call):
            return f"call {describe(event.function, 80)} (id {describe(event.id, 40)}) with {describe(event.args, limit)}"
        if isinstance(event, CallError):
            return f"call id {describe(event.id, 40)}: {describe(event.reason, limit)}"
        if isinstance(event, ProtocolError):
            return f"protocol error {describe(event.reason, limit)}"
        if isinstance(event, Hello):
            return f"hello {describe(event.version, 40)} {describe(event.options, limit)}"
    except Exception:  # pragma: no cover - describe never raises; belt and braces for a log line
        pass
    return f"#{type(event).__name__}<?>"


def _is_non_negative_int(value: Any) -> bool:
    return type(value) is int and value >= 0


def _peek_id(prefix: bytes) -> int | None:
    try:
        call_id = codec.peek_call_id(prefix)
    except Exception:  # a peek must never take the machine down
        return None
    return call_id if _is_non_negative_int(call_id) else None


# an event name (a list of atoms, the store's module constants) -> the telemetry frame's head
# with it encoded: (the list itself, a copy to see it was not changed since, the head bytes)
_TELEMETRY_HEADS: dict[int, tuple[list, list, bytes]] = {}
_TELEMETRY_HEADS_LIMIT = 256


def _telemetry_head(event: Any) -> bytes | None:
    """`{:telemetry, event, ` encoded, for an event name seen before; None when not cached.

    Keyed by the list's identity (the entry holds the list, so the id cannot be reused) and
    checked against a copy, so a list changed in place is never answered from the cache; only
    lists of atoms are cached (atoms compare by identity, so the copy's check is exact)."""
    entry = _TELEMETRY_HEADS.get(id(event))
    if entry is not None and entry[0] is event and entry[1] == event:
        return entry[2]
    if type(event) is not list or not event or len(_TELEMETRY_HEADS) >= _TELEMETRY_HEADS_LIMIT:
        return None
    if not all(type(item) is Atom for item in event):
        return None
    head = _TELEMETRY_HEAD + codec.encode_body(event)
    _TELEMETRY_HEADS[id(event)] = (event, list(event), head)
    return head


# ---------------------------------------------------------------------------------------------
# the machine


class ProtocolMachine:
    """Incremental parser of incoming frames and builder of outgoing ones.

    `receive_data(chunk)` returns the events of every frame completed by `chunk`;
    `receive_data(b"")` signals end of input and reports a frame left incomplete.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self.welcomed = False
        self.negotiated_version: int | None = None
        self._buffer = bytearray()
        self._eof = False
        self.eof_inside_frame: str | None = None
        """After end of input: None, or what was left incomplete (a frame being read or
        skipped), for the one line the server logs before it exits."""
        # skipping an oversized frame
        self._skip_remaining = 0
        self._skip_size = 0
        self._skip_peek: bytearray | None = None  # None: no longer collecting a prefix
        self._skip_peek_want = 0

    # -- input -----------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete frame (an oversized frame's body is never held)."""
        return len(self._buffer) + (len(self._skip_peek) if self._skip_peek is not None else 0)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the peer; return the events of the frames they complete."""
        events: list[Event] = []
        if not data:
            self._receive_eof(events)
            return events
        if self._eof:
            raise RuntimeError("data received after end of input")
        with memoryview(data) as view:
            start = 0
            if self._skip_remaining:
                start = self._skip(view, 0, events)
                if start == len(view):
                    return events
            buffer = self._buffer
            if not buffer:  # the common case: parse straight from the chunk, keep the tail
                consumed = self._parse(view, start, events)
                if consumed < len(view):
                    buffer += view[consumed:]
                return events
            buffer += view[start:]
        with memoryview(buffer) as buffered:
            consumed = self._parse(buffered, 0, events)
        if consumed:
            del buffer[:consumed]
        return events

    def receive_calls(self, data: bytes) -> tuple[list[tuple[int, Atom, list]], int]:
        """`(calls, consumed)`: the call frames at the start of `data` as `(id, function, args)`,
        and the bytes they took. What `receive_data(data)` would return for them as `Call`
        events, without building the events (a chunk of 16 callers' requests is mostly calls).

        Only when `data` is bytes and nothing is pending (no buffered bytes, no frame being
        skipped, not after end of input); it stops before the first frame that is incomplete,
        over the limit, or anything but a well-formed call. `data[consumed:]` has not been
        consumed: hand it to `receive_data` (all of `data` when `consumed` is 0)."""
        calls: list[tuple[int, Atom, list]] = []
        if type(data) is not bytes or self._buffer or self._skip_remaining or self._eof:
            return calls, 0
        end = len(data)
        limit = self.max_frame_bytes
        offset = 0
        while end - offset > HEADER_BYTES:
            size = _unpack_header(data, offset)[0]
            body_end = offset + HEADER_BYTES + size
            if size > limit or body_end > end:
                break
            call = _decode_call(data[offset + HEADER_BYTES : body_end])
            if call is None:
                break
            calls.append(call)
            offset = body_end
        return calls, offset

    def _parse(self, view: memoryview, offset: int, events: list[Event]) -> int:
        """Parse whole frames from `view[offset:]`; return the offset after the last one."""
        end = len(view)
        limit = self.max_frame_bytes
        while end - offset >= HEADER_BYTES:
            (size,) = _unpack_header(view, offset)
            body_start = offset + HEADER_BYTES
            if size > limit:
                self._start_skip(size)
                offset = self._skip(view, body_start, events)
                if self._skip_remaining:
                    return end
                continue
            body_end = body_start + size
            if body_end > end:
                break
            events.append(self._frame_event(view[body_start:body_end].tobytes()))
            offset = body_end
        return offset

    def _start_skip(self, size: int) -> None:
        log.info("skipping a frame of %d bytes (over the limit of %d bytes)", size, self.max_frame_bytes)
        self._skip_size = size
        self._skip_remaining = size
        self._skip_peek = bytearray()
        self._skip_peek_want = min(size, PEEK_BYTES)

    def _skip(self, view: memoryview, offset: int, events: list[Event]) -> int:
        """Discard an oversized frame's bytes from `view[offset:]`, keeping only its prefix."""
        available = len(view) - offset
        take = min(available, self._skip_remaining)
        peek = self._skip_peek
        if peek is not None:
            peek += view[offset : offset + min(take, self._skip_peek_want - len(peek))]
            if len(peek) >= self._skip_peek_want:
                events.append(self._too_large_event(bytes(peek)))
                self._skip_peek = None
        self._skip_remaining -= take
        return offset + take

    def _too_large_event(self, prefix: bytes) -> Event:
        reason = (A_FRAME_TOO_LARGE, self._skip_size, self.max_frame_bytes)
        call_id = _peek_id(prefix)
        if call_id is not None:
            return CallError(call_id, reason)
        return ProtocolError(
            reason, f"frame of {self._skip_size} bytes is over the limit of {self.max_frame_bytes} bytes; skipped"
        )

    def _receive_eof(self, events: list[Event]) -> None:
        if self._eof:
            return
        self._eof = True
        if self._skip_remaining:
            self.eof_inside_frame = (
                f"input ended inside a frame of {self._skip_size} bytes that was being skipped "
                f"(over the limit of {self.max_frame_bytes} bytes; {self._skip_size - self._skip_remaining} bytes received)"
            )
            if self._skip_peek is not None:  # never got enough bytes to decide on the id
                events.append(self._too_large_event(bytes(self._skip_peek)))
                self._skip_peek = None
            self._skip_remaining = 0
            return
        pending = len(self._buffer)
        if pending:
            expected = _unpack_header(self._buffer, 0)[0] if pending >= HEADER_BYTES else None
            received = pending - HEADER_BYTES if expected is not None else 0
            self._buffer.clear()
            reason = (A_TRUNCATED_FRAME, expected, received)
            message = (
                f"input ended inside a frame: {received} of {expected} body bytes received"
                if expected is not None
                else f"input ended inside a frame header ({pending} of {HEADER_BYTES} bytes)"
            )
            self.eof_inside_frame = message
            events.append(ProtocolError(reason, message))

    # -- one frame's term ------------------------------------------------------------------

    def _frame_event(self, body: bytes) -> Event:
        call = _decode_call(body)  # the common frame, without building and re-reading a tuple
        if call is not None:
            return Call(*call)
        try:
            # a compressed term may not inflate past the frame limit: compression must not buy
            # a peer more than an uncompressed frame may hold
            term = codec.decode(body, max_uncompressed_size=self.max_frame_bytes)
        except codec.DecodeTooDeep:
            call_id = _peek_id(body[:PEEK_BYTES])
            if call_id is not None:
                return CallError(call_id, TERM_TOO_DEEP)
            return ProtocolError(TERM_TOO_DEEP, f"frame of {len(body)} bytes nests deeper than {codec.MAX_TERM_DEPTH} levels")
        except Exception as exc:  # DecodeError, or anything a broken decoder lets through
            call_id = _peek_id(body[:PEEK_BYTES])
            if call_id is not None:
                return CallError(call_id, A_DECODE_ERROR)
            return ProtocolError(
                A_DECODE_ERROR, f"frame of {len(body)} bytes is not a valid external term: {exception_message(exc)}"
            )
        if type(term) is tuple:
            if len(term) == 4 and term[0] is A_CALL:
                return self._call_event(term, len(body))
            if len(term) == 3 and term[0] is A_HELLO:
                return self._hello_event(term, len(body))
        return self._bad_frame(term, len(body))

    def _call_event(self, term: tuple, size: int) -> Event:
        _, call_id, function, args = term
        if not _is_non_negative_int(call_id):
            return self._bad_frame(term, size)
        if type(function) is not Atom:
            if function is None or type(function) is bool:  # nil, true, false: atoms in Elixir
                return CallError(call_id, (A_UNKNOWN_CALL, function))
            return CallError(call_id, (A_BAD_FRAME, _echo(term, size)))
        if type(args) is not list:
            return CallError(call_id, (A_BAD_FRAME, _echo(term, size)))
        return Call(call_id, function, args)

    def _hello_event(self, term: tuple, size: int) -> Event:
        _, version, options = term
        if type(version) is not int or type(options) is not dict:
            return self._bad_frame(term, size)
        if version not in SUPPORTED_VERSIONS:
            return ProtocolError(
                (A_UNSUPPORTED_VERSION, version, list(SUPPORTED_VERSIONS)),
                f"protocol version {describe(version, 60)} is not supported; this sidecar speaks {list(SUPPORTED_VERSIONS)}",
            )
        if self.welcomed:
            return ProtocolError(A_ALREADY_WELCOMED, "a hello was already accepted; this one is ignored")
        return Hello(version, options)

    def _bad_frame(self, term: Any, size: int) -> ProtocolError:
        return ProtocolError(
            (A_BAD_FRAME, _echo(term, size)),
            "not a frame of this protocol: expected {:hello, version, opts} or {:call, id, function, args}",
        )

    # -- output ----------------------------------------------------------------------------

    def welcome(self, version: int, info: dict) -> bytes:
        """`{:welcome, version, info}`; marks the handshake done."""
        data = frame((A_WELCOME, version, info))
        self.welcomed = True
        self.negotiated_version = version
        return data

    def encode_reply(self, call_id: int, result: Any) -> bytes:
        """`{:reply, id, result}`; raises `codec.EncodeError` when `result` cannot be encoded
        (the server then undoes the call and answers an error)."""
        return _encode_reply_frame(_REPLY_HEAD, call_id, result)

    def reply(self, call_id: int, result: Any) -> bytes:
        """`{:reply, id, result}`; a result that cannot be encoded becomes an internal error."""
        try:
            return _encode_reply_frame(_REPLY_HEAD, call_id, result)
        except Exception as exc:
            text = exception_message(exc)
            log.error("reply to call %s could not be encoded: %s", describe(call_id, 40), text)
            return frame((A_REPLY, call_id, (A_ERROR, (A_INTERNAL_ERROR, f"reply could not be encoded: {text}"))))

    def error_reply(self, call_id: int, reason: Any) -> bytes:
        """`{:reply, id, {:error, reason}}`."""
        return self.reply(call_id, (A_ERROR, reason))

    def telemetry(self, event: Any, measurements: Any, metadata: Any) -> bytes:
        """`{:telemetry, event, measurements, metadata}`."""
        head = _telemetry_head(event)
        if head is not None:
            return _encode_tagged_frame(head, measurements, metadata)
        return _encode_tagged_frame(_TELEMETRY_HEAD, event, measurements, metadata)

    def log(self, level: Atom, message: str, metadata: dict) -> bytes:
        """`{:log, level, message, metadata}`."""
        return frame((A_LOG, level, message, metadata))

    def invalidate(self, scope: Any) -> bytes:
        """`{:invalidate, scope}` (`:all`, or a list of session ids): what the harness's read
        cache must drop because the store changed without a call of its own (docs/protocol.md)."""
        return frame((A_INVALIDATE, scope))

    def protocol_error(self, reason: Any, message: str) -> bytes:
        """`{:protocol_error, reason, message}`; a reason that cannot be encoded becomes
        `:internal_error` (the message says why), so every bad frame gets its one answer."""
        try:
            return frame((A_PROTOCOL_ERROR, reason, message))
        except Exception as exc:
            text = exception_message(exc)
            log.error("protocol error could not be encoded: %s", text)
            return frame((A_PROTOCOL_ERROR, A_INTERNAL_ERROR, f"{message} (its reason could not be encoded: {text})"))

    def answer(self, event: CallError | ProtocolError) -> bytes:
        """The frame that answers an error event."""
        if isinstance(event, CallError):
            return self.error_reply(event.id, event.reason)
        return self.protocol_error(event.reason, event.message)
