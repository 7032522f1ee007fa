defmodule Bench.RedisPass do
  @moduledoc """
  The Redis pass (`mix run bench/bench.exs --redis`, run by `scripts/bench` under `taskset -c 0`
  after the one-CPU pass): a memory store and a Redis store side by side in the same run, on
  one CPU (the BEAM, both sidecars and the `redis-server` it starts, on a free loopback port,
  stopped by its pid at the end).

  For `get_variable` and `update_variable` in a session of 10 variables it measures, in rounds
  that alternate memory and Redis bursts (so both see the same moments of a shared machine):
  the sequential latency per call (median of the rounds' means) and the rate with 16 callers
  (median of the rounds' rates); and, from Redis's own `INFO commandstats`, the Redis round
  trips (script calls) per call. Prints the figures and the Redis/memory ratios; with `--write`
  (the default of a full run) puts them in docs/benchmarks.md between
  `<!-- bench-redis:start -->` and `<!-- bench-redis:end -->`. Measurement only: no asserts on time.
  """

  import Bench.Common, only: [log: 1]
  alias Bench.{Common, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @operations [:get_variable, :update_variable]
  @size 10
  @callers 16
  @start_marker "<!-- bench-redis:start -->"
  @end_marker "<!-- bench-redis:end -->"

  @doc "Runs the pass with the options of `Bench.Common.options/1`."
  @spec run(map()) :: :ok
  def run(%{quick: quick?, write: write?}) do
    Code.require_file(Path.expand("../../test/support/redis_server.ex", __DIR__))
    redis_server = Module.concat([SnakepitSidecar, RedisServer])

    if redis_server.executable() == nil do
      log("redis pass: redis-server is not installed (scripts/setup installs it); skipped")
    else
      server = redis_server.start()

      try do
        measure_all(server, redis_server, quick?, write?)
      after
        redis_server.close(server)
      end
    end

    :ok
  end

  defp measure_all(server, redis_server, quick?, write?) do
    {rounds, burst} = if quick?, do: {7, 60}, else: {21, 300}
    python = Common.python()
    base = [python: python, call_timeout: 60_000, name: nil, read_cache: false]
    {:ok, memory} = Store.start_link(base)

    {:ok, redis} =
      Store.start_link(base ++ [storage: {:redis, redis_server.url(server), prefix: "bench:"}])

    stores = %{memory: memory, redis: redis}
    names = Map.new(stores, fn {mode, store} -> {mode, Workload.create_session(store, @size)} end)

    cells =
      for op <- @operations do
        funs =
          Map.new(stores, fn {mode, store} ->
            {mode, Workload.call_fun(store, op, names[mode])}
          end)

        sequential = alternate(rounds, fn mode -> sequential_us(funs[mode], burst) end)
        concurrent = alternate(rounds, fn mode -> rate(funs[mode], burst) end)
        trips = round_trips(server, funs.redis, burst * 2)

        log(
          "redis pass: #{op}: sequential memory #{fmt(sequential.memory)} µs, redis #{fmt(sequential.redis)} µs; " <>
            "#{@callers} callers memory #{round(concurrent.memory)}/s, redis #{round(concurrent.redis)}/s; " <>
            "#{fmt(trips)} Redis round trips per call"
        )

        %{op: op, sequential: sequential, concurrent: concurrent, round_trips: trips}
      end

    affinity = %{
      beam: Common.cpus_allowed(:self),
      memory: Common.cpus_allowed(Store.sidecar_info(memory).os_pid),
      redis_sidecar: Common.cpus_allowed(Store.sidecar_info(redis).os_pid),
      redis_server: Common.cpus_allowed(server.os_pid)
    }

    GenServer.stop(memory)
    GenServer.stop(redis)
    text = table(cells, affinity, quick?, python)
    IO.puts("\n" <> text)

    if write? do
      path = Path.join([Common.repo_root(), "docs", "benchmarks.md"])
      write_section(path, text)
      log("wrote the Redis section of docs/benchmarks.md")
    end
  end

  # rounds of (memory burst, redis burst), the order flipped every round; medians per mode
  defp alternate(rounds, measure) do
    samples =
      for round <- 1..rounds,
          mode <- if(rem(round, 2) == 0, do: [:memory, :redis], else: [:redis, :memory]),
          do: {mode, measure.(mode)}

    for mode <- [:memory, :redis], into: %{} do
      {mode, samples |> Enum.filter(&(elem(&1, 0) == mode)) |> Enum.map(&elem(&1, 1)) |> median()}
    end
  end

  defp sequential_us(fun, calls) do
    fun.(0)
    started = System.monotonic_time(:nanosecond)
    for i <- 1..calls, do: fun.(i)
    (System.monotonic_time(:nanosecond) - started) / calls / 1000
  end

  defp rate(fun, calls_per_caller) do
    per = max(div(calls_per_caller, 4), 10)
    started = System.monotonic_time(:nanosecond)

    1..@callers
    |> Enum.map(fn c -> Task.async(fn -> for i <- 1..per, do: fun.(c * 100_000 + i) end) end)
    |> Task.await_many(120_000)

    @callers * per / ((System.monotonic_time(:nanosecond) - started) / 1.0e9)
  end

  # Redis's own count of script calls (every command the sidecar sends is one) per call
  defp round_trips(server, fun, calls) do
    before = evalsha_calls(server)
    for i <- 1..calls, do: fun.(i)
    (evalsha_calls(server) - before) / calls
  end

  defp evalsha_calls(server) do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", server.port, [:binary, active: false], 2000)
    :ok = :gen_tcp.send(socket, "INFO commandstats\r\n")
    text = read_bulk(socket, "")
    :gen_tcp.close(socket)

    case Regex.run(~r/cmdstat_evalsha:calls=(\d+)/, text) do
      [_, calls] -> String.to_integer(calls)
      nil -> 0
    end
  end

  defp read_bulk(socket, acc) do
    {:ok, data} = :gen_tcp.recv(socket, 0, 2000)
    acc = acc <> data

    case Regex.run(~r/^\$(\d+)\r\n/, acc) do
      [header, length] ->
        if byte_size(acc) >= byte_size(header) + String.to_integer(length),
          do: acc,
          else: read_bulk(socket, acc)

      nil ->
        read_bulk(socket, acc)
    end
  end

  defp median(values) do
    sorted = Enum.sort(values)
    n = length(sorted)
    mid = div(n, 2)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, mid),
      else: (Enum.at(sorted, mid - 1) + Enum.at(sorted, mid)) / 2
  end

  defp fmt(x) when is_float(x), do: :erlang.float_to_binary(x, decimals: 1)
  defp fmt(x), do: to_string(x)

  defp table(cells, affinity, quick?, python) do
    meta = Common.meta(quick?, python)

    rows =
      for %{op: op, sequential: s, concurrent: c, round_trips: trips} <- cells do
        "| `#{op}` | #{fmt(s.memory)} | #{fmt(s.redis)} | #{fmt(s.redis / s.memory)}x | " <>
          "#{round(c.memory)} | #{round(c.redis)} | #{fmt(c.memory / c.redis)}x | #{fmt(trips)} |"
      end

    """
    ### Redis beside memory, one CPU

    Measured #{inspect(meta)} (`mix run bench/bench.exs --redis`, under `taskset -c 0`; CPUs
    allowed: BEAM #{affinity.beam}, memory sidecar #{affinity.memory}, Redis sidecar
    #{affinity.redis_sidecar}, redis-server #{affinity.redis_server}). A session of #{@size}
    variables; sequential: µs per call (median of rounds); #{@callers} callers: calls per second
    (median of rounds); round trips: Redis script calls per call, from Redis's `INFO commandstats`.

    | call | sequential memory µs | sequential Redis µs | Redis / memory | #{@callers} callers memory /s | #{@callers} callers Redis /s | memory / Redis | Redis round trips per call |
    |---|---|---|---|---|---|---|---|
    #{Enum.join(rows, "\n")}
    """
  end

  defp write_section(path, text) do
    current = File.read!(path)
    section = @start_marker <> "\n" <> text <> @end_marker

    updated =
      case String.split(current, [@start_marker, @end_marker]) do
        [before, _old, rest] -> before <> section <> rest
        _ -> String.trim_trailing(current) <> "\n\n" <> section <> "\n"
      end

    File.write!(path, updated)
  end
end
