defmodule Bench.Common do
  @moduledoc """
  What the two passes of the benchmark share (`bench.exs` for the main pass, `Bench.OneCpu` for
  the one-CPU pass): the measurement settings, the sidecar's Python, the floor every measurement
  is interleaved with, the run's combined floor, the run's metadata, logging.
  """

  alias Bench.{EchoFloor, Measure}

  @repo_root Path.expand("../../..", __DIR__)

  # rounds x (floor burst + cell burst) of about burst_ms each: bursts short enough that the floor
  # and the cell of one round are almost always in the same mode (docs/benchmarks.md).
  @full [
    warmup_ms: 200,
    burst_ms: 10,
    rounds: 41,
    min_calls: 16,
    max_calls: 100_000,
    memory_sessions: 10_000,
    profile_calls: 5_000
  ]
  @quick [
    warmup_ms: 40,
    burst_ms: 3,
    rounds: 15,
    min_calls: 8,
    max_calls: 20_000,
    memory_sessions: 1_000,
    profile_calls: 500
  ]

  @doc "The repository's root directory."
  @spec repo_root() :: String.t()
  def repo_root, do: @repo_root

  @doc "The measurement settings of a full or a `--quick` run."
  @spec settings(boolean()) :: keyword()
  def settings(true), do: @quick
  def settings(false), do: @full

  @doc """
  The command-line flags of either pass: `{quick?, write?}` (a full run writes the docs unless
  `--no-write`, a quick one only with `--write`) and whether `--one-cpu` was given.
  """
  @spec options([String.t()]) :: %{
          quick: boolean(),
          write: boolean(),
          one_cpu: boolean(),
          storage: boolean(),
          read_cache: boolean()
        }
  def options(argv) do
    {flags, _, _} =
      OptionParser.parse(argv,
        strict: [
          quick: :boolean,
          write: :boolean,
          one_cpu: :boolean,
          storage: :boolean,
          read_cache: :boolean
        ]
      )

    quick? = Keyword.get(flags, :quick, false)

    %{
      quick: quick?,
      write: Keyword.get(flags, :write, not quick?),
      one_cpu: Keyword.get(flags, :one_cpu, false),
      storage: Keyword.get(flags, :storage, false),
      read_cache: Keyword.get(flags, :read_cache, false)
    }
  end

  @doc """
  Opens the floor (`Bench.EchoFloor`, owned by the calling process) and returns `{echo_port,
  measure}`: `measure.(fun, callers)` runs `Bench.Measure.paired/4` of `fun` against bursts of the
  floor with `settings`. Must be called from, and `measure` used in, the same process.
  """
  @spec open_floor(String.t(), keyword()) ::
          {port(), ((non_neg_integer() -> term()), pos_integer() -> Measure.result())}
  def open_floor(python, settings) do
    echo = EchoFloor.open(python)
    floor_fun = EchoFloor.round_trip_fun(echo)
    {echo, fn fun, callers -> Measure.paired(fun, callers, floor_fun, settings) end}
  end

  @doc """
  Every floor burst of the run (each measurement brought its own): their median, and the two
  modes when the floor was bimodal (`Bench.Measure.modes/1`).
  """
  @spec combine_floors([Measure.result()]) :: map()
  def combine_floors(results) do
    samples = for result <- results, round <- result.rounds, do: round.floor_us
    {fast, slow} = Measure.modes(samples)
    %{us_per_call: Measure.median(samples), samples: samples, fast: fast, slow: slow}
  end

  @doc "One measurement as a log line: µs per call, its floor, both ratios."
  @spec paired_text(Measure.result()) :: String.t()
  def paired_text(r) do
    fmt = &Bench.Targets.fmt/1

    "#{fmt.(r.us_per_call)} us/call vs floor #{fmt.(r.floor_us)} us: #{fmt.(r.time_x)}x time, #{fmt.(r.rate_x)}x rate"
  end

  @doc "The run's metadata for the reports: mode, date, system."
  @spec meta(boolean(), String.t()) :: map()
  def meta(quick?, python) do
    {py_version, 0} =
      System.cmd(python, ["-c", "import platform; print(platform.python_version())"])

    %{
      mode: if(quick?, do: "quick", else: "full"),
      date: Date.utc_today() |> Date.to_iso8601(),
      system:
        "Elixir #{System.version()} / OTP #{System.otp_release()}, Python #{String.trim(py_version)}, " <>
          "#{System.schedulers_online()} scheduler#{if System.schedulers_online() == 1, do: "", else: "s"}, " <>
          "#{:erlang.system_info(:logical_processors)} logical CPUs"
    }
  end

  @doc "The sidecar's Python: `SNAKEPIT_SIDECAR_PYTHON` or `python3` on the path."
  @spec python() :: String.t()
  def python do
    case System.get_env("SNAKEPIT_SIDECAR_PYTHON") do
      nil -> System.find_executable("python3") || raise "python3 not found"
      "" -> System.find_executable("python3") || raise "python3 not found"
      path -> path
    end
  end

  @doc "The CPUs an OS process may run on (`Cpus_allowed_list` of `/proc/<pid>/status`), or `\"?\"`."
  @spec cpus_allowed(non_neg_integer() | :self | nil) :: String.t()
  def cpus_allowed(nil), do: "?"

  def cpus_allowed(pid) do
    with {:ok, status} <- File.read("/proc/#{pid}/status"),
         [_, list] <- Regex.run(~r/^Cpus_allowed_list:\s*(\S+)/m, status) do
      list
    else
      _ -> "?"
    end
  end

  @doc "A progress line on stderr."
  @spec log(String.t()) :: :ok
  def log(message), do: IO.puts(:stderr, "[bench] " <> message)
end
