"""The recording file format of docs/replay.md: read, write, validate.

    b"snakepit-sidecar-recording 1\n"            header: magic word, format version, newline
    then, per frame, in the order frames crossed the port:
    direction  1 byte   b">" Elixir -> sidecar, b"<" sidecar -> Elixir
    length     4 bytes  big-endian unsigned
    body       length bytes: the frame's external-term-format bytes exactly as on the wire

Anything else (wrong magic, another version, an unknown direction byte, a truncated entry) is
a `RecordingError` naming the byte offset, so a damaged file is never half-replayed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

MAGIC = b"snakepit-sidecar-recording"
FORMAT_VERSION = 1
HEADER = MAGIC + b" %d\n" % FORMAT_VERSION
TO_SIDECAR = ">"
FROM_SIDECAR = "<"
DIRECTIONS = (TO_SIDECAR, FROM_SIDECAR)
_MAX_HEADER_LINE = 64
_LENGTH = struct.Struct(">I")


class RecordingError(ValueError):
    """The file is not a readable recording (bad header, unknown direction, truncated)."""


@dataclass(frozen=True)
class RecordedFrame:
    """One frame of a recording: its position, direction and ETF body."""

    index: int
    direction: str
    body: bytes
    offset: int

    @property
    def to_sidecar(self) -> bool:
        return self.direction == TO_SIDECAR


def _parse_header(data: bytes) -> int:
    """Check the header line; return the offset of the first entry."""
    newline = data.find(b"\n", 0, _MAX_HEADER_LINE)
    if newline < 0 or not data.startswith(MAGIC + b" "):
        raise RecordingError(f"not a recording: the file does not start with {HEADER!r}")
    version_text = data[len(MAGIC) + 1 : newline]
    if not version_text.isdigit():
        raise RecordingError(f"bad header line {data[: newline + 1]!r}")
    version = int(version_text)
    if version != FORMAT_VERSION:
        raise RecordingError(f"recording format version {version} is not supported (this tool reads {FORMAT_VERSION})")
    return newline + 1


def parse_recording(data: bytes) -> list[RecordedFrame]:
    """All frames of a recording held in `data`."""
    position = _parse_header(data)
    frames: list[RecordedFrame] = []
    while position < len(data):
        entry_offset = position
        direction = data[position : position + 1].decode("latin-1")
        if direction not in DIRECTIONS:
            raise RecordingError(
                f"byte {entry_offset}: unknown direction byte {data[position : position + 1]!r} (expected b'>' or b'<')"
            )
        if position + 1 + _LENGTH.size > len(data):
            raise RecordingError(f"byte {entry_offset}: truncated entry (its length is cut off)")
        (length,) = _LENGTH.unpack_from(data, position + 1)
        body_start = position + 1 + _LENGTH.size
        if body_start + length > len(data):
            raise RecordingError(
                f"byte {entry_offset}: truncated entry (frame of {length} bytes, {len(data) - body_start} present)"
            )
        frames.append(RecordedFrame(len(frames), direction, data[body_start : body_start + length], entry_offset))
        position = body_start + length
    return frames


def read_recording(path: Union[str, Path]) -> list[RecordedFrame]:
    """Read and parse the recording at `path` (OSError if it cannot be read)."""
    return parse_recording(Path(path).read_bytes())


def encode_entry(direction: str, body: bytes) -> bytes:
    """The bytes of one entry."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    return direction.encode("ascii") + _LENGTH.pack(len(body)) + body


def encode_recording(frames: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole recording: the header, then one entry per `(direction, body)`."""
    return HEADER + b"".join(encode_entry(direction, body) for direction, body in frames)


def write_recording(path: Union[str, Path], frames: Iterable[tuple[str, bytes]]) -> None:
    """Write a recording of `frames` to `path`."""
    Path(path).write_bytes(encode_recording(frames))
