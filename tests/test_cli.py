"""The command line: --help, option validation (exit 2 with a message), the replay slot."""

from __future__ import annotations

import subprocess

import pytest
from client import REPO_ROOT, sidecar_command, sidecar_env

from sidecar import cli


def run_sidecar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        sidecar_command(*args, test_calls=False),
        cwd=str(REPO_ROOT),
        env=sidecar_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )


def test_help_lists_the_options_and_the_replay_subcommand():
    result = run_sidecar("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in (
        "--default-ttl",
        "--global-program-ttl",
        "--cleanup-interval",
        "--max-frame-bytes",
        "--log-level",
        "--enable-test-calls",
        "--spin-us",
        "replay",
    ):
        assert option in text


@pytest.mark.parametrize(
    "args, named",
    [
        (["--default-ttl", "-5"], "--default-ttl"),
        (["--default-ttl", "soon"], "--default-ttl"),
        (["--cleanup-interval", "0"], "--cleanup-interval"),
        (["--max-frame-bytes", "1.5"], "--max-frame-bytes"),
        (["--log-level", "loud"], "--log-level"),
        (["--spin-us", "-1"], "--spin-us"),
        (["--spin-us", "2000000"], "--spin-us"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_option_values_exit_2_with_a_message(args, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_bad_option_through_the_real_command_exits_2():
    result = run_sidecar("--global-program-ttl", "forever")
    assert result.returncode == 2
    assert b"--global-program-ttl" in result.stderr
    assert result.stdout == b""


def test_options_are_validated_into_the_model():
    options = cli.parse_options(
        [
            "--default-ttl",
            "10",
            "--cleanup-interval",
            "250",
            "--max-frame-bytes",
            "5000",
            "--log-level",
            "debug",
            "--enable-test-calls",
            "--spin-us",
            "0",
        ]
    )
    assert (options.default_ttl, options.cleanup_interval, options.max_frame_bytes) == (10, 250, 5000)
    assert options.spin_us == 0 and cli.parse_options([]).spin_us == 50
    assert options.log_level == "debug" and options.enable_test_calls is True
    defaults = cli.parse_options([])
    assert defaults.max_frame_bytes >= 5 * 1024 * 1024 + 100_000 * 9  # a 5 MB binary, 100k floats
    assert defaults.enable_test_calls is False


def test_replay_subcommand_is_wired_or_explains_its_absence(monkeypatch, capsys):
    import sys
    import types

    calls = []
    fake = types.ModuleType("sidecar.replay.cli")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "sidecar.replay.cli", fake)
    assert cli.main(["replay", "a.etf", "b.etf"]) == 0
    assert calls == [["a.etf", "b.etf"]]

    monkeypatch.setitem(sys.modules, "sidecar.replay.cli", None)  # import of it fails
    assert cli.main(["replay", "a.etf"]) == 2
    assert "replay" in capsys.readouterr().err
