"""The benchmark's floor program, `sidecar/echo.py`: frames back unchanged, nothing else."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from client import REPO_ROOT

pytestmark = pytest.mark.subprocess

ECHO = os.path.join(REPO_ROOT, "sidecar", "echo.py")


def packet(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_echo_returns_complete_frames_unchanged_and_exits_0():
    frames = [packet(b"x" * n) for n in (0, 1, 300, 70_000)]
    incomplete = packet(b"never finished")[:-3]
    result = subprocess.run([sys.executable, ECHO], input=b"".join(frames) + incomplete, capture_output=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout == b"".join(frames)  # the incomplete trailing frame is not echoed


def test_echo_answers_each_frame_as_it_arrives():
    process = subprocess.Popen([sys.executable, ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        for i in range(3):
            body = b"frame %d" % i
            half = len(body) // 2
            process.stdin.write(packet(body)[: 4 + half])  # the first half: nothing comes back yet
            process.stdin.flush()
            process.stdin.write(body[half:])
            process.stdin.flush()
            assert process.stdout.read(4 + len(body)) == packet(body)
    finally:
        process.stdin.close()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
