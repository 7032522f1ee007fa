"""The benchmark's floor: a `{:packet, 4}` echo, as lean as Python can do the framing.

Run as `python3 -m sidecar.echo` (or `python3 sidecar/echo.py`) behind
`Port.open({:spawn_executable, python}, [:binary, {:packet, 4}, ...])`. What it does, exactly:

1. `os.readv(0, [buffer])` into one 1 MiB buffer kept for the process's life: one system call
   takes whatever stdin holds (up to 1 MiB), so frames that arrived together are read together,
   and the bytes read are copied out (`os.read(0, 1 MiB)` would `mmap`, `mremap` and `munmap` a
   fresh 1 MiB object on every call; the sidecar reads the same way, see
   `sidecar.server.ChunkReader`);
2. it walks the 4-byte big-endian length prefixes of what it holds and finds where the last
   *complete* frame ends;
3. it writes every complete frame back, unchanged and with its prefix, in one `os.write(1, ...)`
   (looping only on a short write); the bytes of an incomplete trailing frame are kept and the
   next read is appended to them;
4. on end of stdin (the port closed) it exits with status 0.

It never decodes a term, never allocates per frame beyond the slice it writes, imports nothing
but `os` and `sys`, and does no logging: the time a benchmark measures against it is the port,
the two pipes, the kernel's scheduling and Python's read/write loop, which every real sidecar
call also pays. It is not part of the sidecar proper and is used by `elixir_harness/bench/` only.
"""

import os
import sys

READ_CHUNK_BYTES = 1 << 20
PREFIX_BYTES = 4


def complete_frames_end(buffer: bytes) -> int:
    """The offset just past the last complete `{:packet, 4}` frame at the start of `buffer`."""
    size = len(buffer)
    position = 0
    while size - position >= PREFIX_BYTES:
        frame_end = position + PREFIX_BYTES + int.from_bytes(buffer[position : position + PREFIX_BYTES], "big")
        if frame_end > size:
            break
        position = frame_end
    return position


def write_all(fd: int, data: memoryview) -> None:
    """Writes all of `data` to `fd`, looping on short writes."""
    while data:
        data = data[os.write(fd, data) :]


def echo(in_fd: int = 0, out_fd: int = 1) -> int:
    """Echoes complete frames from `in_fd` to `out_fd` until end of input; returns 0."""
    pending = b""
    buffers = [bytearray(READ_CHUNK_BYTES)]
    view = memoryview(buffers[0])
    readv = os.readv
    while True:
        chunk = view[: readv(in_fd, buffers)].tobytes()
        if not chunk:
            return 0
        pending = pending + chunk if pending else chunk
        end = complete_frames_end(pending)
        if end:
            write_all(out_fd, memoryview(pending)[:end])
            pending = pending[end:]


if __name__ == "__main__":
    sys.exit(echo())
