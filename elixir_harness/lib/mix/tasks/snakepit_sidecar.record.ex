defmodule Mix.Tasks.SnakepitSidecar.Record do
  @shortdoc "Regenerates the replay recordings (tests/recordings) from the scenario scripts"

  @moduledoc """
  Regenerates the recordings that `pytest` replays (`docs/replay.md`).

      mix snakepit_sidecar.record [--out DIR] [SCENARIO ...]

  Every script in `recording_scenarios/` (or only the named ones, by base name) runs against a
  fresh `SnakepitSidecar.SessionStore` started with `record: DIR/<scenario>.rec`, so the file
  holds every frame that crossed the port, in order. `DIR` defaults to the repository's
  `tests/recordings`.

  A scenario script is evaluated with the binding `store` (the store's pid) and `scenario`
  (its name). It calls the store the way Elixir code does and pattern-matches the answers it
  relies on, so a recording is only written from a sidecar that behaves: a failed match aborts
  the task and the half-written file is removed. Scenarios must not depend on timing (no
  sleeping until a TTL expires); the store runs with a one-hour cleanup interval so no periodic
  cleanup lands in a recording. When the `:telemetry` library is absent, the task defines a
  stand-in that drops events (in its own VM only), so the sidecar still sends the telemetry
  frames the recordings must hold.
  """

  use Mix.Task

  # The TTLs are the defaults of SnakepitSidecar.Options (the contract's); only the cleanup
  # interval is set, so that no periodic cleanup lands in a recording.
  @store_options [name: nil, cleanup_interval: 3_600_000]

  @impl Mix.Task
  def run(args) do
    {opts, names} = OptionParser.parse!(args, strict: [out: :string])
    Mix.Task.run("app.start")
    ensure_telemetry()
    out = Path.expand(Keyword.get(opts, :out, default_out()))
    File.mkdir_p!(out)

    for script <- scenarios(names) do
      path = Path.join(out, Path.basename(script, ".exs") <> ".rec")
      record(script, path)
      Mix.shell().info("recorded #{Path.relative_to_cwd(path)} (#{frame_count(path)} frames)")
    end

    :ok
  end

  @doc "The scenario scripts to run: all of them, or those named (base names, `.exs` optional)."
  @spec scenarios([String.t()]) :: [String.t()]
  def scenarios([]), do: scenario_dir() |> Path.join("*.exs") |> Path.wildcard() |> Enum.sort()

  def scenarios(names) do
    for name <- names do
      path = Path.join(scenario_dir(), Path.basename(name, ".exs") <> ".exs")
      File.exists?(path) || Mix.raise("no scenario #{name} (looked for #{path})")
      path
    end
  end

  # Both are found from the project being run (this harness's checkout), not from where the
  # task was compiled.
  defp scenario_dir, do: Path.join(project_dir(), "recording_scenarios")
  defp default_out, do: Path.join([project_dir(), "..", "tests", "recordings"]) |> Path.expand()
  defp project_dir, do: Path.dirname(Mix.Project.project_file())

  # The sidecar sends `:telemetry` frames only when the harness finds `:telemetry` loaded, and
  # the recordings must hold them. Without the real library (no hex packages here), a stand-in
  # that drops the events is defined in this task's VM only.
  defp ensure_telemetry do
    unless Code.ensure_loaded?(:telemetry) do
      contents =
        quote do
          @moduledoc false
          def execute(_event, _measurements, _metadata), do: :ok
        end

      Module.create(:telemetry, contents, Macro.Env.location(__ENV__))
    end

    :ok
  end

  defp record(script, path) do
    Process.flag(:trap_exit, true)

    {:ok, store} =
      SnakepitSidecar.SessionStore.start_link(Keyword.put(@store_options, :record, path))

    try do
      binding = [store: store, scenario: Path.basename(script, ".exs")]
      Code.eval_string(File.read!(script), binding, file: script)
    rescue
      error ->
        stop(store)
        File.rm(path)

        Mix.raise(
          "scenario #{Path.basename(script)} failed: " <>
            Exception.format(:error, error, __STACKTRACE__)
        )
    else
      _ -> stop(store)
    end
  end

  defp stop(store) do
    GenServer.stop(store, :normal)
  catch
    :exit, _ -> :ok
  end

  defp frame_count(path) do
    case SnakepitSidecar.Recorder.read(path) do
      {:ok, entries} -> length(entries)
      {:error, reason} -> Mix.raise("#{path} is not a readable recording: #{inspect(reason)}")
    end
  end
end
