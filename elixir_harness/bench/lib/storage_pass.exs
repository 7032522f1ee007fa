defmodule Bench.StoragePass do
  @moduledoc """
  The storage pass (`mix run bench/bench.exs --storage`, run by `scripts/bench` under
  `taskset -c 0` after the other passes): durable storage (`storage: {:sqlite, path}`) beside
  memory storage in the same run, with the BEAM, the echo program and both sidecars on one CPU.

  Sequential calls are measured against memory directly: `Bench.Measure.paired/4` with the
  memory store's call as the "floor", so each ratio comes from interleaved bursts of the two
  stores (rounds of a memory burst, then a SQLite burst). Calls with 16 callers cannot be the
  floor (it is sequential), so each store's 16-caller cell is measured against the echo floor,
  the two alternating, twice, and the ratio is of their floor-normalized rates. Also measured:
  the same sequential update with `synchronous: :full` (an fdatasync per chunk), and the bytes the
  file takes per variable (1,000 sessions of 10 float variables, after the store stopped).

  Targets (issue "durable storage"): sequential update ≤ 1.5x memory; 16 callers ≥ 0.7x memory's
  rate. Prints the figures and PASS/MISS (exit status 0 either way), and writes its section of
  `docs/benchmarks.md` (between `<!-- bench-storage:start -->` and `<!-- bench-storage:end -->`).
  """

  import Bench.Common, only: [log: 1, paired_text: 1]
  alias Bench.{Common, EchoFloor, Measure, Targets, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @start_marker "<!-- bench-storage:start -->"
  @end_marker "<!-- bench-storage:end -->"
  @sequential_target 1.5
  @concurrent_target 0.7

  @doc "Runs the pass with the options of `Bench.Common.options/1`."
  @spec run(map()) :: :ok
  def run(%{quick: quick?, write: write?}) do
    settings = Common.settings(quick?)
    python = Common.python()

    dir =
      Path.join(System.tmp_dir!(), "snakepit_bench_storage_#{System.unique_integer([:positive])}")

    File.mkdir_p!(dir)

    try do
      run = measure_all(settings, python, dir, quick?)
      IO.puts("\n" <> text(run))

      if write? do
        write_markdown(Path.join([Common.repo_root(), "docs", "benchmarks.md"]), run)
        log("wrote the storage section of docs/benchmarks.md")
      end
    after
      File.rm_rf!(dir)
    end

    :ok
  end

  defp measure_all(settings, python, dir, quick?) do
    {echo, measure} = Common.open_floor(python, settings)
    base = [python: python, call_timeout: 60_000, name: nil, read_cache: false]
    {:ok, memory} = Store.start_link(base)
    {:ok, sqlite} = Store.start_link(base ++ [storage: {:sqlite, Path.join(dir, "bench.db")}])

    {:ok, full} =
      Store.start_link(
        base ++ [storage: {:sqlite, Path.join(dir, "full.db"), synchronous: :full}]
      )

    affinity = %{
      beam: Common.cpus_allowed(:self),
      memory: Common.cpus_allowed(Store.sidecar_info(memory).os_pid),
      sqlite: Common.cpus_allowed(Store.sidecar_info(sqlite).os_pid)
    }

    log(
      "storage pass: CPUs allowed: BEAM #{affinity.beam}, memory sidecar #{affinity.memory}, SQLite sidecar #{affinity.sqlite}"
    )

    names =
      for store <- [memory, sqlite, full],
          into: %{},
          do: {store, Workload.create_session(store, 1)}

    fun = fn store, op -> Workload.call_fun(store, op, Map.fetch!(names, store)) end

    sequential =
      for op <- [:get_variable, :update_variable] do
        result = Measure.paired(fun.(sqlite, op), 1, fun.(memory, op), settings)
        log("SQLite #{op} sequential vs memory: #{paired_text(result)}")
        %{op: op, store: :sqlite, result: result}
      end

    full_update =
      Measure.paired(fun.(full, :update_variable), 1, fun.(memory, :update_variable), settings)

    log(
      "SQLite (synchronous: :full) update_variable sequential vs memory: #{paired_text(full_update)}"
    )

    concurrent =
      for op <- [:get_variable, :update_variable] do
        pairs =
          for _ <- 1..2 do
            m = measure.(fun.(memory, op), 16)
            s = measure.(fun.(sqlite, op), 16)
            {m, s}
          end

        memory_rate = Measure.median(for {m, _} <- pairs, do: m.rate_x)
        sqlite_rate = Measure.median(for {_, s} <- pairs, do: s.rate_x)
        {m, s} = List.last(pairs)
        log("16 callers #{op}: memory #{paired_text(m)}; SQLite #{paired_text(s)}")

        %{
          op: op,
          memory_ops: Measure.median(for {m, _} <- pairs, do: m.ops_per_s),
          sqlite_ops: Measure.median(for {_, s} <- pairs, do: s.ops_per_s),
          ratio: sqlite_rate / memory_rate
        }
      end

    for store <- [memory, sqlite, full], do: GenServer.stop(store)
    EchoFloor.close(echo)
    sessions = if quick?, do: 100, else: 1_000
    bytes = bytes_per_variable(base, Path.join(dir, "size.db"), sessions)
    log("on disk: #{Targets.fmt(bytes)} bytes per variable (#{sessions} sessions x 10 floats)")

    %{
      sequential: sequential,
      full_update: full_update,
      concurrent: concurrent,
      bytes_per_variable: bytes,
      size_sessions: sessions,
      affinity: affinity,
      meta: Common.meta(quick?, python)
    }
  end

  defp bytes_per_variable(base, path, sessions) do
    {:ok, store} = Store.start_link(base ++ [storage: {:sqlite, path}])

    1..sessions
    |> Task.async_stream(
      fn s ->
        {:ok, _} = Store.create_session(store, "size_#{s}")

        for v <- 0..9,
            do:
              {:ok, _} =
                Store.register_variable(store, "size_#{s}", :"param_#{v}", :float, v * 0.25)
      end,
      max_concurrency: 16,
      timeout: 60_000
    )
    |> Stream.run()

    GenServer.stop(store)

    size =
      for suffix <- ["", "-wal", "-log"],
          {:ok, %{size: n}} <- [File.stat(path <> suffix)],
          reduce: 0,
          do: (acc -> acc + n)

    size / (sessions * 10)
  end

  ## report

  defp checks(run) do
    update = Enum.find(run.sequential, &(&1.op == :update_variable)).result.time_x
    rate = Enum.find(run.concurrent, &(&1.op == :update_variable)).ratio

    [
      {"sequential update_variable, SQLite / memory time", update, "≤ #{@sequential_target}x",
       update <= @sequential_target},
      {"16 callers update_variable, SQLite / memory rate", rate, "≥ #{@concurrent_target}x",
       rate >= @concurrent_target}
    ]
  end

  defp rows(run) do
    seq =
      for %{op: op, result: r} <- run.sequential do
        [
          Atom.to_string(op),
          "1",
          "#{Targets.fmt(r.floor_us)} µs",
          "#{Targets.fmt(r.us_per_call)} µs",
          "#{Targets.fmt(r.time_x)}x time"
        ]
      end

    full = run.full_update

    full_row = [
      "update_variable (synchronous: :full)",
      "1",
      "#{Targets.fmt(full.floor_us)} µs",
      "#{Targets.fmt(full.us_per_call)} µs",
      "#{Targets.fmt(full.time_x)}x time"
    ]

    conc =
      for c <- run.concurrent do
        [
          Atom.to_string(c.op),
          "16",
          "#{round(c.memory_ops)}/s",
          "#{round(c.sqlite_ops)}/s",
          "#{Targets.fmt(c.ratio)}x rate"
        ]
      end

    seq ++ [full_row] ++ conc
  end

  @header ["call", "callers", "memory", "SQLite", "SQLite / memory"]

  defp text(run) do
    check_lines =
      for {label, value, target, passed} <- checks(run),
          do:
            "#{if passed, do: "PASS", else: "MISS"} #{label}: #{Targets.fmt(value)}x (target #{target})"

    [
      "storage pass (one CPU: BEAM #{run.affinity.beam}, memory sidecar #{run.affinity.memory}, SQLite sidecar #{run.affinity.sqlite})",
      Enum.map(rows(run), &Enum.join(&1, "  |  ")),
      check_lines,
      "on disk: #{Targets.fmt(run.bytes_per_variable)} bytes per variable"
    ]
    |> List.flatten()
    |> Enum.join("\n")
  end

  defp markdown(run) do
    checks = checks(run)

    [
      "### Durable storage beside memory (one CPU)",
      "",
      "`storage: {:sqlite, path}` against the default `:memory`, both stores in one run with the BEAM, " <>
        "the echo program and the sidecars on one CPU (`taskset -c 0`; `mix run bench/bench.exs --storage`). " <>
        "Sequential cells are interleaved bursts of the two stores (the memory store's call is the " <>
        "\"floor\" of `Bench.Measure.paired/4`); 16-caller cells are each measured against the echo floor, " <>
        "alternating, and compared by their floor-normalized rates. Sessions of one float variable. " <>
        "SQLite appends one record per chunk of frames to its log (group commit) before any reply of the chunk leaves " <>
        "the sidecar (`docs/storage.md`).",
      "",
      "_Generated by `scripts/bench` (#{run.meta.mode} run, storage pass) on #{run.meta.date}: " <>
        "#{run.meta.system}. Do not edit between the markers._",
      "",
      "| " <> Enum.join(@header, " | ") <> " |",
      "|" <> String.duplicate("---|", length(@header)),
      Enum.map(rows(run), &("| " <> Enum.join(&1, " | ") <> " |")),
      "",
      for {label, value, target, passed} <- checks do
        "- **#{if passed, do: "PASS", else: "MISS"}** #{label}: #{Targets.fmt(value)}x (target #{target})"
      end,
      "- On disk: #{Targets.fmt(run.bytes_per_variable)} bytes per variable " <>
        "(#{run.size_sessions} sessions of 10 float variables: the database file after the store stopped)."
    ]
    |> List.flatten()
    |> Enum.join("\n")
  end

  defp write_markdown(path, run) do
    existing = if File.exists?(path), do: File.read!(path), else: "# Benchmarks\n"
    section = @start_marker <> "\n" <> markdown(run) <> "\n" <> @end_marker

    marked =
      Regex.compile!(
        "^" <> Regex.escape(@start_marker) <> "$.*?^" <> Regex.escape(@end_marker) <> "$",
        "ms"
      )

    updated =
      if Regex.match?(marked, existing),
        do: Regex.replace(marked, existing, fn _ -> section end, global: false),
        else: existing <> "\n" <> section <> "\n"

    File.write!(path, updated)
  end
end
