# The benchmark of the sidecar through the harness (measurement only; it never asserts times).
#
#     scripts/bench                      # from the repository root: setup, then both passes
#     cd elixir_harness && mix run bench/bench.exs [--quick] [--write | --no-write]
#     cd elixir_harness && taskset -c 0 mix run bench/bench.exs --one-cpu [--quick] [--write | --no-write]
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
# --one-cpu: the one-CPU pass instead (Bench.OneCpu, bench/lib/one_cpu.exs), meant to run under
# `taskset -c 0` so that the BEAM, the echo program and the sidecar share one CPU: ping, and
# get_variable / update_variable sequentially and with 16 callers in sessions of 1 and 1000
# variables, measured the same way; it writes only its own section of docs/benchmarks.md
# (between <!-- bench-one-cpu:start --> and <!-- bench-one-cpu:end -->).
#
# --storage: the storage pass instead (Bench.StoragePass, bench/lib/storage_pass.exs), also meant
# for `taskset -c 0`: SQLite storage beside memory storage in one run, sequential and 16 callers,
# and the bytes on disk per variable; it writes its own section of docs/benchmarks.md.
#
# --redis (first argument): the Redis pass instead (Bench.RedisPass, bench/lib/redis_pass.exs),
# meant to run under `taskset -c 0`: a memory store and a Redis store (on a redis-server it starts)
# side by side; sequential get/update latency, the rate with 16 callers, Redis round trips per
# call; it writes only its own section of docs/benchmarks.md.
#
# --read-cache: the read-cache pass instead (Bench.CachePass, bench/lib/cache_pass.exs, issue 15),
# run by scripts/bench unpinned and then under `taskset -c 0`: the cache's hits against an
# in-BEAM baseline (a GenServer over ETS, like the original), updates against a C echo floor,
# with :telemetry loaded; each run writes its own section of docs/benchmarks.md.
#
# --quick: short cells and 1,000 sessions for memory (a ~20 s smoke test); it does not touch the
# docs unless --write is given. A full run writes them unless --no-write is given.

for file <-
      ~w(echo_floor measure workload memory targets report common one_cpu storage_pass redis_pass) do
  Code.require_file("lib/#{file}.exs", __DIR__)
end

defmodule Bench.Main do
  @moduledoc "The main pass: the order of the measurements, where results go."

  import Bench.Common, only: [log: 1, paired_text: 1]
  alias Bench.{Common, EchoFloor, Memory, Report, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @session_sizes [1, 100, 1000]
  @callers [1, 16, 64]

  def main(["--redis" | argv]), do: Bench.RedisPass.run(Common.options(argv))

  def main(argv) do
    case Common.options(argv) do
      %{read_cache: true} = options -> read_cache_pass(options)
      %{one_cpu: true} = options -> Bench.OneCpu.run(options)
      %{storage: true} = options -> Bench.StoragePass.run(options)
      options -> run(options)
    end
  end

  # The read-cache pass (Bench.CachePass) loads :telemetry, so its modules are loaded only here.
  defp read_cache_pass(options) do
    for file <- ~w(telemetry_stand_in c_echo ets_baseline cache_pass) do
      Code.require_file("lib/#{file}.exs", __DIR__)
    end

    apply(Bench.CachePass, :run, [options])
  end

  defp run(%{quick: quick?, write: write?}) do
    settings = Common.settings(quick?)
    python = Common.python()
    # The sidecar's own path: the read cache is the read-cache pass's subject (--read-cache).
    store_opts = [python: python, call_timeout: 60_000, read_cache: false]

    # Every figure is measured interleaved with bursts of the floor (Bench.Measure.paired/4).
    {echo, measure} = Common.open_floor(python, settings)

    {:ok, owner} = EchoFloor.Owner.start_link(python)

    owner_floor =
      for callers <- [1, 16],
          into: %{},
          do: {callers, measure.(EchoFloor.Owner.round_trip_fun(owner), callers)}

    GenServer.stop(owner)

    log(
      "floor through an owner process: #{paired_text(owner_floor[1])}; 16 callers #{paired_text(owner_floor[16])}"
    )

    {:ok, server} = Store.start_link(Keyword.put(store_opts, :name, nil))
    ping = measure.(Workload.ping_fun(server), 1)
    log("ping: #{paired_text(ping)}")

    sessions =
      Map.new(Enum.uniq(@session_sizes ++ [10]), fn size ->
        {size, Workload.create_session(server, size)}
      end)

    cells =
      for op <- Workload.operations(), size <- @session_sizes, callers <- @callers do
        names = Map.fetch!(sessions, Workload.effective_size(op, size))
        result = measure.(Workload.call_fun(server, op, names), callers)

        log(
          "#{Workload.label(op)} vars=#{Workload.effective_size(op, size)} callers=#{callers}: #{paired_text(result)}"
        )

        %{
          op: op,
          size: size,
          effective_size: Workload.effective_size(op, size),
          callers: callers,
          result: result
        }
      end

    GenServer.stop(server)
    EchoFloor.close(echo)

    sessions_for_memory = settings[:memory_sessions]
    log("memory: #{sessions_for_memory} sessions x 10 float variables")
    memory = Memory.measure(store_opts, sessions_for_memory)

    log("python in-process profile (bench/sidecar_profile.py)")
    profile = python_profile(python, settings[:profile_calls])

    run = %{
      floor:
        Common.combine_floors([
          ping,
          owner_floor[1],
          owner_floor[16] | Enum.map(cells, & &1.result)
        ]),
      owner_floor: owner_floor,
      ping: ping,
      cells: cells,
      memory: memory,
      profile: profile,
      meta: Common.meta(quick?, python)
    }

    IO.puts("\n" <> Report.text(run))
    if write?, do: write_docs(run, python)
  end

  defp python_profile(python, calls) do
    script = Path.join(__DIR__, "sidecar_profile.py")

    case System.cmd(python, [script, "--calls", Integer.to_string(calls), "--lines"],
           cd: Common.repo_root()
         ) do
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

  defp write_docs(run, python) do
    docs = Path.join(Common.repo_root(), "docs")
    Report.write_markdown(Path.join(docs, "benchmarks.md"), run, "# Benchmarks\n")
    json_path = Path.join(System.tmp_dir!(), "snakepit_bench_#{System.os_time()}.json")
    File.write!(json_path, Report.json(Report.chart(run)))
    chart = Path.join(docs, "benchmark_chart.png")

    case System.cmd(
           python,
           [Path.join(Common.repo_root(), "tools/png_chart.py"), json_path, chart],
           stderr_to_stdout: true
         ) do
      {_, 0} -> log("wrote docs/benchmarks.md and docs/benchmark_chart.png")
      {out, status} -> log("chart writer failed (#{status}): #{out}")
    end

    File.rm(json_path)
  end
end

Bench.Main.main(System.argv())
