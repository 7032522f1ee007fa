defmodule Bench.CachePass do
  @moduledoc """
  The read-cache pass (issue 15): `mix run bench/bench.exs --read-cache`, run by
  `scripts/bench` twice, first with the BEAM and its port programs free to use every CPU
  (unpinned), then under `taskset -c 0` (pinned, the headline). Each run writes its own section
  of docs/benchmarks.md; the pinned one also draws docs/benchmark_read_cache_chart.png from both.

  `:telemetry` is loaded (`bench/lib/telemetry_stand_in.exs` when the real one is absent), as a
  real application runs: the harness asks the sidecar for its event frames, so every update
  sends one across the port, and every cache hit emits its `:get` event in the caller.

  Every cell is measured with `Bench.Measure.paired/4` against the C echo (`Bench.CEcho`), the
  floor of the issue's write target. Cells, sequential unless said:

    * `baseline get` / `baseline update` at 1, 100 and 1000 variables: `Bench.EtsBaseline`, a
      GenServer over ETS reading and writing the whole session on each call, like the original;
      `baseline update` also with 16 callers (session of 1);
    * `get (hit)` at 1, 100 and 1000 variables: the store with its read cache, every read a hit
      (each variable read once and the touches flushed before);
    * `get (miss)` at 1 and 1000: the same read with the variable's cache entry removed first
      (an `:ets.delete/2`, ~0.1 us, included), so every read goes to the sidecar and fills;
    * `get (cache off)` at 1: a store with `read_cache: false`;
    * `update` at 1, 100 and 1000, and with 16 callers (session of 1); `update (cache off)` at 1
      (what the cache's invalidation adds to a write);
    * `ping`, for reference.

  Targets: `get (hit)` <= 1.0x `baseline get` at each size and `update` <= 2.3x the C floor,
  judged in the pinned run; 16 callers of `update` >= 1.0x the rate of 16 callers of
  `baseline update`, judged in the unpinned run (the sidecar's own core is the point). The
  other run shows the same figures, informational. The miss cost is reported.
  """

  import Bench.Common, only: [log: 1, paired_text: 1]
  alias Bench.{CEcho, Common, EtsBaseline, Measure, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @sizes [1, 100, 1000]
  @start "<!-- bench-read-cache-~s:start -->"
  @stop "<!-- bench-read-cache-~s:end -->"
  @max_hit_ratio 1.0
  @max_update_ratio 2.3
  @min_concurrent_ratio 1.0

  @doc "Runs the pass with the options of `Bench.Common.options/1`."
  def run(%{quick: quick?, write: write?}) do
    settings = Common.settings(quick?)
    python = Common.python()
    pinned? = pinned?()
    mode = if pinned?, do: "pinned", else: "unpinned"

    {:ok, echo_path} =
      case CEcho.build() do
        {:ok, path} -> {:ok, path}
        {:error, why} -> raise "the read-cache pass needs the C echo: #{why}"
      end

    echo = CEcho.open(echo_path)
    floor_fun = CEcho.round_trip_fun(echo)
    measure = fn fun, callers -> Measure.paired(fun, callers, floor_fun, settings) end

    true = Code.ensure_loaded?(:telemetry)
    store_opts = [python: python, call_timeout: 60_000, name: nil]
    {:ok, store} = Store.start_link(store_opts)
    {:ok, plain} = Store.start_link(Keyword.put(store_opts, :read_cache, false))
    {:ok, baseline} = EtsBaseline.start_link()

    names = Map.new(@sizes, &{&1, Workload.create_session(store, &1)})
    _ = Workload.create_session(plain, 1)

    for size <- @sizes,
        do: :ok = EtsBaseline.create_session(baseline, Workload.session_id(size), size)

    affinity = %{
      beam: Common.cpus_allowed(:self),
      echo: echo |> Port.info(:os_pid) |> elem(1) |> Common.cpus_allowed(),
      sidecar: Common.cpus_allowed(Store.sidecar_info(store).os_pid)
    }

    log(
      "read-cache pass (#{mode}): CPUs allowed: BEAM #{affinity.beam}, C echo #{affinity.echo}, sidecar #{affinity.sidecar}"
    )

    cell = fn label, size, callers, fun ->
      result = measure.(fun, callers)

      log(
        "read cache (#{mode}): #{label} vars=#{size} callers=#{callers}: #{paired_text(result)}"
      )

      %{label: label, size: size, callers: callers, result: result}
    end

    warm = fn size ->
      for name <- Tuple.to_list(names[size]),
          do: {:ok, _} = Store.get_variable(store, Workload.session_id(size), name)

      :ok = SnakepitSidecar.Connection.flush_touches(store)
    end

    cells =
      [cell.("ping", nil, 1, Workload.ping_fun(store))] ++
        for size <- @sizes do
          warm.(size)

          [
            cell.("baseline get", size, 1, baseline_get(baseline, size)),
            cell.("get (hit)", size, 1, Workload.call_fun(store, :get_variable, names[size]))
          ]
        end ++
        for size <- [1, 1000] do
          [cell.("get (miss)", size, 1, miss_fun(store, names[size]))]
        end ++
        [cell.("get (cache off)", 1, 1, Workload.call_fun(plain, :get_variable, names[1]))] ++
        for size <- @sizes do
          [
            cell.("baseline update", size, 1, baseline_update(baseline, size)),
            cell.("update", size, 1, Workload.call_fun(store, :update_variable, names[size]))
          ]
        end ++
        [
          cell.("update (cache off)", 1, 1, Workload.call_fun(plain, :update_variable, names[1])),
          cell.("baseline update", 1, 16, baseline_update(baseline, 1)),
          cell.("update", 1, 16, Workload.call_fun(store, :update_variable, names[1]))
        ]

    cells = List.flatten(cells)
    GenServer.stop(store)
    GenServer.stop(plain)
    GenServer.stop(baseline)
    Port.close(echo)

    run = %{
      mode: mode,
      pinned: pinned?,
      affinity: affinity,
      cells: cells,
      floor: Common.combine_floors(Enum.map(cells, & &1.result)),
      meta: Common.meta(quick?, python)
    }

    IO.puts("\n" <> text(run))

    if write? do
      docs = Path.join(Common.repo_root(), "docs")
      write_section(Path.join(docs, "benchmarks.md"), run)
      save(run)
      if pinned?, do: draw_chart(python, docs)
      log("wrote the #{mode} read-cache section of docs/benchmarks.md")
    end

    :ok
  end

  defp pinned?, do: Common.cpus_allowed(:self) |> String.split([",", "-"]) |> length() == 1

  defp baseline_get(baseline, size) do
    sid = Workload.session_id(size)
    fn i -> {:ok, _} = EtsBaseline.get_variable(baseline, sid, :"v#{rem(i, size)}") end
  end

  defp baseline_update(baseline, size) do
    sid = Workload.session_id(size)

    fn i ->
      :ok = EtsBaseline.update_variable(baseline, sid, :"v#{rem(i, size)}", rem(i, 1000) + 0.5)
    end
  end

  # Every read a miss: the variable's entry is removed first (what an invalidation leaves).
  defp miss_fun(store, names) do
    size = tuple_size(names)
    sid = Workload.session_id(size)
    {entries, _, _, _} = SnakepitSidecar.ReadCache.lookup(store)

    fn i ->
      name = elem(names, rem(i, size))
      :ets.delete(entries, {sid, name})
      {:ok, _} = Store.get_variable(store, sid, name)
    end
  end

  ## Figures

  defp find(run, label, size, callers \\ 1),
    do: Enum.find(run.cells, &(&1.label == label and &1.size == size and &1.callers == callers))

  @doc "The targets of this run: `%{figure, measured, ratio, target, result}` rows."
  def checks(run) do
    judged_here = fn kind ->
      (kind == :latency and run.pinned) or (kind == :concurrent and not run.pinned)
    end

    hits =
      for size <- @sizes do
        hit = find(run, "get (hit)", size)
        base = find(run, "baseline get", size)
        ratio = hit.result.us_per_call / base.result.us_per_call

        row(
          "get (cache hit), #{size} var#{plural(size)}",
          "#{us(hit)} vs baseline #{us(base)}",
          ratio,
          "<= #{@max_hit_ratio}x baseline",
          judged_here.(:latency) and ratio <= @max_hit_ratio,
          judged_here.(:latency)
        )
      end

    updates =
      for size <- @sizes do
        update = find(run, "update", size)
        ratio = update.result.time_x

        row(
          "update, #{size} var#{plural(size)}",
          "#{us(update)} vs C floor #{fmt(update.result.floor_us)} us",
          ratio,
          "<= #{@max_update_ratio}x C floor",
          judged_here.(:latency) and ratio <= @max_update_ratio,
          judged_here.(:latency)
        )
      end

    update16 = find(run, "update", 1, 16)
    base16 = find(run, "baseline update", 1, 16)
    ratio16 = update16.result.ops_per_s / base16.result.ops_per_s

    concurrent =
      row(
        "16 callers of update, session of 1",
        "#{rate(update16)} vs baseline #{rate(base16)}",
        ratio16,
        ">= #{@min_concurrent_ratio}x baseline rate",
        judged_here.(:concurrent) and ratio16 >= @min_concurrent_ratio,
        judged_here.(:concurrent)
      )

    misses =
      for size <- [1, 1000] do
        miss = find(run, "get (miss)", size)
        hit = find(run, "get (hit)", size)
        base = find(run, "baseline get", size)

        row(
          "get (cache miss), #{size} var#{plural(size)}",
          "#{us(miss)}: #{fmt(miss.result.time_x)}x C floor, #{fmt(miss.result.us_per_call / hit.result.us_per_call)}x a hit, " <>
            "#{fmt(miss.result.us_per_call / base.result.us_per_call)}x baseline get",
          miss.result.time_x,
          "report",
          nil,
          false
        )
      end

    off = find(run, "get (cache off)", 1)

    off_row =
      row(
        "get, cache off, 1 var",
        "#{us(off)}",
        off.result.time_x,
        "report (x C floor)",
        nil,
        false
      )

    hits ++ updates ++ [concurrent] ++ misses ++ [off_row]
  end

  defp row(figure, measured, ratio, target, passed, judged) do
    %{
      figure: figure,
      measured: measured,
      ratio: ratio,
      target: target,
      result:
        cond do
          not judged -> if(passed == nil, do: "", else: "(other run)")
          passed -> "PASS"
          true -> "MISS"
        end
    }
  end

  defp plural(1), do: ""
  defp plural(_), do: "s"
  defp us(cell), do: "#{fmt(cell.result.us_per_call)} us"
  defp rate(cell), do: "#{fmt(cell.result.ops_per_s, 0)}/s"
  defp fmt(n, d \\ 2), do: Bench.Targets.fmt(n, d)

  ## Report

  @doc "The run as text (stdout)."
  def text(run) do
    rows = checks(run)

    ([
       "read-cache pass (#{run.mode}), #{run.meta.system}",
       "C floor: median #{fmt(run.floor.us_per_call)} us over #{length(run.floor.samples)} bursts"
     ] ++
       for(
         r <- rows,
         do:
           "#{String.pad_trailing(r.figure, 36)} #{fmt(r.ratio)}  #{r.target}  #{r.result}  (#{r.measured})"
       ))
    |> Enum.join("\n")
  end

  @doc "The run's section of docs/benchmarks.md."
  def markdown(run) do
    rows = checks(run)
    judged = Enum.filter(rows, &(&1.result in ["PASS", "MISS"]))
    passed = Enum.count(judged, &(&1.result == "PASS"))

    what =
      if run.pinned,
        do:
          "The BEAM, the C echo and the sidecar on one CPU (`taskset -c 0`): the headline, where the latency targets are judged.",
        else:
          "The BEAM and its port programs free to use both CPUs: the 16-caller target is judged here; the latencies are the second, unpinned reading."

    """
    ### Read cache, #{run.mode}

    _Generated by `scripts/bench` (#{run.meta.mode} run, read-cache pass, #{run.mode}) on #{run.meta.date}: #{run.meta.system}. Do not edit between the markers._

    #{what} `:telemetry` loaded. CPUs allowed: BEAM #{run.affinity.beam}, C echo #{run.affinity.echo}, sidecar #{run.affinity.sidecar}. C floor (bare port round trip to `bench/c/echo.c`): median #{fmt(run.floor.us_per_call)} us over #{length(run.floor.samples)} bursts interleaved with the cells.

    **Targets judged in this run: #{passed} of #{length(judged)} met.**

    | figure | measured | ratio | target | result |
    | --- | --- | --- | --- | --- |
    #{Enum.map_join(rows, "\n", &"| #{&1.figure} | #{&1.measured} | #{fmt(&1.ratio)} | #{&1.target} | #{&1.result} |")}

    | cell | callers | vars | us/call | ops/s | C floor us | x C floor |
    | --- | --- | --- | --- | --- | --- | --- |
    #{Enum.map_join(run.cells, "\n", fn c -> "| #{c.label} | #{c.callers} | #{c.size || "-"} | #{fmt(c.result.us_per_call)} | #{fmt(c.result.ops_per_s, 0)} | #{fmt(c.result.floor_us)} | #{fmt(c.result.time_x)} |" end)}
    """
    |> String.trim_trailing()
  end

  defp write_section(path, run) do
    start = :io_lib.format(@start, [run.mode]) |> IO.iodata_to_binary()
    stop = :io_lib.format(@stop, [run.mode]) |> IO.iodata_to_binary()
    doc = File.read!(path)
    section = start <> "\n" <> markdown(run) <> "\n" <> stop

    marked =
      Regex.compile!("^" <> Regex.escape(start) <> "$.*?^" <> Regex.escape(stop) <> "$", "ms")

    # A new section goes before the main one, the pinned (the headline) before the unpinned.
    before =
      if run.pinned, do: "<!-- bench-read-cache-unpinned:start -->", else: "<!-- bench:start -->"

    before = if String.contains?(doc, before), do: before, else: "<!-- bench:start -->"

    doc =
      if Regex.match?(marked, doc),
        do: Regex.replace(marked, doc, fn _ -> section end, global: false),
        else: String.replace(doc, before, section <> "\n\n" <> before, global: false)

    File.write!(path, doc)
  end

  ## Chart (both runs: the unpinned one saved its ratios)

  defp saved_path(mode), do: Path.join(Mix.Project.build_path(), "bench_read_cache_#{mode}.bin")

  defp save(run),
    do:
      File.write!(
        saved_path(run.mode),
        :erlang.term_to_binary(Map.take(run, [:mode, :pinned, :cells]))
      )

  defp draw_chart(python, docs) do
    pinned = :erlang.binary_to_term(File.read!(saved_path("pinned")))

    unpinned =
      case File.read(saved_path("unpinned")) do
        {:ok, bin} -> :erlang.binary_to_term(bin)
        _ -> nil
      end

    ratio = fn run, label, size, base_label ->
      if run,
        do:
          find(run, label, size).result.us_per_call /
            find(run, base_label, size).result.us_per_call
    end

    series = Enum.map(@sizes, &"#{&1} var#{plural(&1)}")

    chart = %{
      title: "read cache (issue 15): pinned to one CPU unless said",
      panels: [
        %{
          title: "get: time per call / baseline get (lower is better)",
          series: series,
          groups: [
            %{
              label: "cache hit",
              values: for(s <- @sizes, do: ratio.(pinned, "get (hit)", s, "baseline get"))
            },
            %{
              label: "cache hit\nunpinned",
              values: for(s <- @sizes, do: ratio.(unpinned, "get (hit)", s, "baseline get"))
            }
          ],
          targets: [%{value: @max_hit_ratio, label: "target hit <= 1.0"}]
        },
        %{
          title: "update: time per call / C echo floor (lower is better)",
          series: series,
          groups: [
            %{
              label: "update",
              values: for(s <- @sizes, do: find(pinned, "update", s).result.time_x)
            },
            %{
              label: "baseline\nupdate",
              values: for(s <- @sizes, do: find(pinned, "baseline update", s).result.time_x)
            }
          ],
          targets: [%{value: @max_update_ratio, label: "target update <= 2.3"}]
        },
        %{
          title: "16 callers of update: rate / baseline rate (higher is better)",
          height: 220,
          series: ["session of 1"],
          groups:
            for({name, run} <- [{"unpinned", unpinned}, {"pinned", pinned}], run != nil) do
              %{
                label: name,
                values: [
                  find(run, "update", 1, 16).result.ops_per_s /
                    find(run, "baseline update", 1, 16).result.ops_per_s
                ]
              }
            end,
          targets: [%{value: @min_concurrent_ratio, label: "target unpinned >= 1.0"}]
        }
      ]
    }

    json = Path.join(System.tmp_dir!(), "snakepit_cache_chart_#{System.os_time()}.json")
    File.write!(json, Bench.Report.json(chart))
    out = Path.join(docs, "benchmark_read_cache_chart.png")

    case System.cmd(python, [Path.join(Common.repo_root(), "tools/png_chart.py"), json, out],
           stderr_to_stdout: true
         ) do
      {_, 0} -> log("wrote docs/benchmark_read_cache_chart.png")
      {text, status} -> log("chart writer failed (#{status}): #{text}")
    end

    File.rm(json)
  end
end
