"""Scripted fake sidecar: `python -m sidecar STEP0 STEP1 ...`.

For the n-th frame it receives (0-based), it writes the frames of STEPn: hex-encoded external
term format frames separated by commas, or "-" for none (options `--name value`, such as the
storage the harness passes, are skipped). Frames past the last step get no
answer. Exits on EOF of stdin. Used only by elixir_harness tests (found through PYTHONPATH).
"""

import struct
import sys


def read_exact(stream, size):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    steps = []
    args = iter(arg for arg in sys.argv[1:] if arg not in ("-m", "sidecar"))
    for arg in args:
        if arg.startswith("--"):  # an option the harness adds (--storage URL): not a step
            next(args, None)
        else:
            steps.append(arg)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    received = 0
    while True:
        header = read_exact(stdin, 4)
        if header is None:
            return
        (size,) = struct.unpack(">I", header)
        if read_exact(stdin, size) is None:
            return
        if received < len(steps) and steps[received] != "-":
            for frame_hex in steps[received].split(","):
                frame = bytes.fromhex(frame_hex)
                stdout.write(struct.pack(">I", len(frame)) + frame)
            stdout.flush()
        received += 1


main()
