"""Adoption, tested the way a user adopts the project, with nothing of this checkout at run time:

* the Python package built as a wheel (`pip wheel .`), installed into a fresh venv (its
  dependencies from the package index), `snakepit-sidecar --help`, and the harness talking to
  that installed sidecar (`sidecar_path: nil`);
* a tiny Elixir application with the harness as a `path:` dependency, built with
  `MIX_ENV=prod mix release`, copied to another directory, its project deleted, and run there
  with `bin/tiny eval`: with no option naming a path, the store finds the sidecar installed in
  the venv's Python (given by `$SNAKEPIT_SIDECAR_PYTHON`) and does real work.

Slow (a wheel build, a venv, pip, a release build: well under two minutes together) and needs
pip's package index. The Elixir parts need `mix` (scripts/setup installs Debian's elixir); they
skip when it is not on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "elixir_harness"

needs_mix = pytest.mark.skipif(shutil.which("mix") is None, reason="`mix` is not on PATH (scripts/setup installs elixir)")

# What a user's shell would not have: anything pointing into this checkout or its environment.
_DROPPED_ENV = ("PYTHONPATH", "SNAKEPIT_SIDECAR_PYTHON", "MIX_ENV", "VIRTUAL_ENV", "PYTHONHOME")


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _DROPPED_ENV}
    env.update(extra)
    return env


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{command} exited with {result.returncode}\n"
        f"--- stdout (end)\n{result.stdout[-4000:]}\n--- stderr (end)\n{result.stderr[-4000:]}"
    )
    return result.stdout


def _results(stdout: str) -> dict[str, str]:
    """The `ADOPTION key=value` lines the Elixir side prints (values are `inspect/1` output)."""
    pairs = [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("ADOPTION ")]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("adoption")
    # `pip wheel .` on a copy of the source, so that the build leaves nothing in the checkout.
    source = work / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            "elixir_harness",
            "tests",
            "tmp",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
        ),
    )
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "."], cwd=source)
    [wheel] = wheels.glob("snakepit_sidecar-*.whl")

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)], cwd=work)
    shutil.rmtree(source)
    return python


def test_the_wheel_installs_into_a_fresh_venv_with_its_command(venv_python: Path) -> None:
    command = venv_python.parent / "snakepit-sidecar"
    help_text = _run([str(command), "--help"], cwd=venv_python.parent)
    assert help_text.startswith("usage: snakepit-sidecar")
    assert "--default-ttl" in help_text

    # From the harness's directory (where the store starts it), `sidecar` is the wheel's.
    module_file = _run([str(venv_python), "-c", "import sidecar; print(sidecar.__file__)"], cwd=HARNESS).strip()
    assert Path(module_file).is_relative_to(venv_python.parent.parent), module_file


# Run by `mix run` in the harness project: a store on the venv's Python with no sidecar path.
_TALK_TO_INSTALLED = r"""
alias SnakepitSidecar.SessionStore, as: Store
python = System.fetch_env!("ADOPTION_PYTHON")
{:ok, store} = Store.start_link(name: nil, python: python, sidecar_path: nil)
{:ok, _} = Store.create_session(store, "adopted")
constraints = %{min: 0.0, max: 2.0}
{:ok, _} = Store.register_variable(store, "adopted", :temperature, :float, 0.7, constraints: constraints)
:ok = Store.update_variable(store, "adopted", :temperature, 1.25)
info = Store.sidecar_info(store)
environ = File.read!("/proc/#{info.os_pid}/environ") |> String.split(<<0>>)
cmdline = File.read!("/proc/#{info.os_pid}/cmdline") |> String.split(<<0>>, trim: true)
IO.puts("ADOPTION value=" <> inspect(Store.get_variable_value(store, "adopted", :temperature)))
IO.puts("ADOPTION rejected=" <> inspect(Store.update_variable(store, "adopted", :temperature, 5.0)))
pythonpath = Enum.find(environ, &String.starts_with?(&1, "PYTHONPATH="))
IO.puts("ADOPTION pythonpath=" <> inspect(pythonpath))
IO.puts("ADOPTION cmdline=" <> inspect(cmdline))
IO.puts("ADOPTION version=" <> inspect(info.welcome.version))
GenServer.stop(store)
"""


@needs_mix
def test_the_harness_talks_to_the_installed_sidecar(venv_python: Path) -> None:
    stdout = _run(
        ["mix", "run", "--no-start", "-e", _TALK_TO_INSTALLED],
        cwd=HARNESS,
        env=_env(MIX_ENV="test", ADOPTION_PYTHON=str(venv_python)),
    )
    results = _results(stdout)
    assert results["value"] == "1.25"
    assert results["rejected"] == '{:error, "value 5.0 is above maximum 2.0"}'
    assert results["pythonpath"] == "nil"
    assert results["cmdline"] == f'["{venv_python}", "-m", "sidecar"]'
    version = "import sidecar; print(sidecar.__version__)"
    installed = _run([str(venv_python), "-c", version], cwd=HARNESS)
    assert results["version"] == f'"{installed.strip()}"'


_TINY_MIX_EXS = """
defmodule Tiny.MixProject do
  use Mix.Project

  def project do
    [app: :tiny, version: "0.1.0", elixir: "~> 1.14", deps: [{:snakepit_sidecar, path: HARNESS}]]
  end

  def application, do: [mod: {Tiny.Application, []}, extra_applications: [:logger]]
end
"""

# The application a user would write: the store under its supervisor, and a function using it.
_TINY_EX = r"""
defmodule Tiny.Application do
  use Application

  @impl true
  def start(_type, _args) do
    children = [{SnakepitSidecar.SessionStore, name: Tiny.Store}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Tiny.Supervisor)
  end
end

defmodule Tiny do
  alias SnakepitSidecar.SessionStore, as: Store

  def check do
    {:ok, _} = Application.ensure_all_started(:tiny)
    {:ok, session} = Store.create_session(Tiny.Store, "tiny", metadata: %{owner: :tiny})
    constraints = [constraints: %{min: 0.0, max: 2.0}]
    {:ok, id} = Store.register_variable(Tiny.Store, "tiny", :temperature, :float, 0.7, constraints)
    :ok = Store.update_variable(Tiny.Store, "tiny", :temperature, 1.25)
    %{os_pid: os_pid} = Store.sidecar_info(Tiny.Store)
    environ = File.read!("/proc/#{os_pid}/environ") |> String.split(<<0>>)
    report(session_metadata: session.metadata, id: id)
    report(value: Store.get_variable_value(Tiny.Store, "tiny", :temperature))
    report(rejected: Store.update_variable(Tiny.Store, "tiny", :temperature, 5.0))
    report(sidecar_path: SnakepitSidecar.Options.validate!([]).sidecar_path)
    report(pythonpath: Enum.find(environ, &String.starts_with?(&1, "PYTHONPATH=")))
  end

  defp report([{key, value}]), do: IO.puts("ADOPTION #{key}=#{inspect(value)}")
  defp report(pairs), do: Enum.each(pairs, &report([&1]))
end
"""


@needs_mix
def test_a_mix_release_using_the_store_runs_from_elsewhere(venv_python: Path, tmp_path: Path) -> None:
    project = tmp_path / "tiny"
    (project / "lib").mkdir(parents=True)
    (project / "mix.exs").write_text(_TINY_MIX_EXS.replace("HARNESS", f'"{HARNESS}"'))
    (project / "lib" / "tiny.ex").write_text(_TINY_EX)
    _run(["mix", "release", "--overwrite"], cwd=project, env=_env(MIX_ENV="prod"))

    # The release alone, somewhere else; the project it was built from is gone.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(project / "_build" / "prod" / "rel" / "tiny", elsewhere / "tiny", symlinks=True)
    shutil.rmtree(project)

    stdout = _run(
        [str(elsewhere / "tiny" / "bin" / "tiny"), "eval", "Tiny.check()"],
        cwd=elsewhere,
        env=_env(SNAKEPIT_SIDECAR_PYTHON=str(venv_python)),
    )
    results = _results(stdout)
    assert results["session_metadata"] == "%{owner: :tiny}"
    assert results["id"] == '"var_temperature_1"'
    assert results["value"] == "1.25"
    assert results["rejected"] == '{:error, "value 5.0 is above maximum 2.0"}'
    # No path was baked in when the harness was compiled: the sidecar is the installed one.
    assert results["sidecar_path"] == "nil"
    assert results["pythonpath"] == "nil"
