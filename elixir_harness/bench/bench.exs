# The benchmark of the sidecar through the harness (measurement only; it never asserts times).
#
#     scripts/bench                      # from the repository root: setup, then the full run
#     cd elixir_harness && mix run bench/bench.exs [--quick] [--write | --no-write]
#
# Measures in one run: the floor (a bare {:packet, 4} round trip to sidecar/echo.py), ping
# through the whole stack, then get_variable, update_variable, get_variables of 10 and
# update_variables of 10, sequentially and with 16 and 64 concurrent callers, in sessions of
# 1, 100 and 1000 variables; and the sidecar's resident size with 10,000 sessions of 10 float
# variables. Every figure is measured interleaved with bursts of the floor (Bench.Measure.paired/4:
# rounds of a floor burst then a burst of the cell) and its ratio is to the floor bursts of the same
# rounds. Prints each figure with that ratio, checks the targets (PASS/MISS,
# informational, exit status 0), and writes the generated section of docs/benchmarks.md and
# docs/benchmark_chart.png.
#
# --quick: short cells and 1,000 sessions for memory (a ~20 s smoke test); it does not touch the
# docs unless --write is given. A full run writes them unless --no-write is given.

for file <- ~w(echo_floor measure workload memory targets report) do
  Code.require_file("lib/#{file}.exs", __DIR__)
end

defmodule Bench.Main do
  @moduledoc "The benchmark run: options, the order of the measurements, where results go."

  alias Bench.{EchoFloor, Measure, Memory, Report, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @repo_root Path.expand("../..", __DIR__)
  @session_sizes [1, 100, 1000]
  @callers [1, 16, 64]

  # rounds x (floor burst + cell burst) of about burst_ms each: bursts short enough that the floor
  # and the cell of one round are almost always in the same mode (docs/benchmarks.md).
  @full [warmup_ms: 200, burst_ms: 10, rounds: 41, min_calls: 16, max_calls: 100_000, memory_sessions: 10_000, profile_calls: 5_000]
  @quick [warmup_ms: 40, burst_ms: 3, rounds: 15, min_calls: 8, max_calls: 20_000, memory_sessions: 1_000, profile_calls: 500]

  def main(argv) do
    {flags, _, _} = OptionParser.parse(argv, strict: [quick: :boolean, write: :boolean])
    quick? = Keyword.get(flags, :quick, false)
    write? = Keyword.get(flags, :write, not quick?)
    settings = if quick?, do: @quick, else: @full
    python = python()
    store_opts = [python: python, call_timeout: 60_000]

    echo = EchoFloor.open(python)
    floor_fun = EchoFloor.round_trip_fun(echo)
    # Every figure is measured interleaved with bursts of the floor (Bench.Measure.paired/4).
    measure = fn fun, callers -> Measure.paired(fun, callers, floor_fun, settings) end

    {:ok, owner} = EchoFloor.Owner.start_link(python)
    owner_floor = for callers <- [1, 16], into: %{}, do: {callers, measure.(EchoFloor.Owner.round_trip_fun(owner), callers)}
    GenServer.stop(owner)
    log("floor through an owner process: #{paired(owner_floor[1])}; 16 callers #{paired(owner_floor[16])}")

    {:ok, server} = Store.start_link(Keyword.put(store_opts, :name, nil))
    ping = measure.(Workload.ping_fun(server), 1)
    log("ping: #{paired(ping)}")

    sessions =
      Map.new(Enum.uniq(@session_sizes ++ [10]), fn size -> {size, Workload.create_session(server, size)} end)

    cells =
      for op <- Workload.operations(), size <- @session_sizes, callers <- @callers do
        names = Map.fetch!(sessions, Workload.effective_size(op, size))
        result = measure.(Workload.call_fun(server, op, names), callers)
        log("#{Workload.label(op)} vars=#{Workload.effective_size(op, size)} callers=#{callers}: #{paired(result)}")
        %{op: op, size: size, effective_size: Workload.effective_size(op, size), callers: callers, result: result}
      end

    GenServer.stop(server)
    EchoFloor.close(echo)

    sessions_for_memory = settings[:memory_sessions]
    log("memory: #{sessions_for_memory} sessions x 10 float variables")
    memory = Memory.measure(store_opts, sessions_for_memory)

    log("python in-process profile (bench/sidecar_profile.py)")
    profile = python_profile(python, settings[:profile_calls])

    run = %{
      floor: combine_floors([ping, owner_floor[1], owner_floor[16] | Enum.map(cells, & &1.result)]),
      owner_floor: owner_floor,
      ping: ping,
      cells: cells,
      memory: memory,
      profile: profile,
      meta: meta(quick?, python)
    }

    IO.puts("\n" <> Report.text(run))
    if write?, do: write_docs(run, python)
  end

  # Every floor burst of the run (each measurement brought its own): their median, and the two
  # modes when the floor was bimodal (Bench.Measure.modes/1).
  defp combine_floors(results) do
    samples = for result <- results, round <- result.rounds, do: round.floor_us
    {fast, slow} = Measure.modes(samples)
    %{us_per_call: Measure.median(samples), samples: samples, fast: fast, slow: slow}
  end

  defp python_profile(python, calls) do
    script = Path.join(__DIR__, "sidecar_profile.py")

    case System.cmd(python, [script, "--calls", Integer.to_string(calls), "--lines"], cd: @repo_root) do
      {out, 0} ->
        for line <- String.split(out, "\n", trim: true), into: %{} do
          [cell, phase, micros] = String.split(line)
          {{cell, phase}, String.to_float(micros)}
        end

      {out, status} ->
        log("sidecar_profile.py failed (#{status}): #{out}")
        %{}
    end
  end

  defp paired(r) do
    fmt = &Bench.Targets.fmt/1
    "#{fmt.(r.us_per_call)} us/call vs floor #{fmt.(r.floor_us)} us: #{fmt.(r.time_x)}x time, #{fmt.(r.rate_x)}x rate"
  end

  defp write_docs(run, python) do
    docs = Path.join(@repo_root, "docs")
    Report.write_markdown(Path.join(docs, "benchmarks.md"), run, "# Benchmarks\n")
    json_path = Path.join(System.tmp_dir!(), "snakepit_bench_#{System.os_time()}.json")
    File.write!(json_path, Report.json(Report.chart(run)))
    chart = Path.join(docs, "benchmark_chart.png")

    case System.cmd(python, [Path.join(@repo_root, "tools/png_chart.py"), json_path, chart], stderr_to_stdout: true) do
      {_, 0} -> log("wrote docs/benchmarks.md and docs/benchmark_chart.png")
      {out, status} -> log("chart writer failed (#{status}): #{out}")
    end

    File.rm(json_path)
  end

  defp meta(quick?, python) do
    {py_version, 0} = System.cmd(python, ["-c", "import platform; print(platform.python_version())"])

    %{
      mode: if(quick?, do: "quick", else: "full"),
      date: Date.utc_today() |> Date.to_iso8601(),
      system:
        "Elixir #{System.version()} / OTP #{System.otp_release()}, Python #{String.trim(py_version)}, " <>
          "#{System.schedulers_online()} schedulers, #{:erlang.system_info(:logical_processors)} logical CPUs"
    }
  end

  defp python do
    case System.get_env("SNAKEPIT_SIDECAR_PYTHON") do
      nil -> System.find_executable("python3") || raise "python3 not found"
      "" -> System.find_executable("python3") || raise "python3 not found"
      path -> path
    end
  end

  defp log(message), do: IO.puts(:stderr, "[bench] " <> message)
end

Bench.Main.main(System.argv())
