# How long a value another store wrote stays readable from the read cache (measurement only: it
# prints figures and asserts nothing).
#
#     cd elixir_harness && mix run bench/cache_staleness.exs [--rounds 200]
#
# Starts a redis-server of its own (free loopback port, stopped by its pid) and two stores on
# it, A and B, each with its own sidecar. Each round: A reads variable x until its cache serves
# it, then B updates x and the clock starts when B's update_variable returns (the write is
# acknowledged). Two figures per round, both from that moment:
#
#   * frame: when A's store process received the sidecar's {:invalidate, ["s"]} for that write
#     (an :erlang.trace receive timestamp: no polling). From then on A's cache no longer serves
#     the old value (ReadCache, "Coherence", rule 4);
#   * read: when a reader on A polling get_variable every millisecond first read the new value
#     (what an application sees; 1 ms resolution).
#
# A negative figure means A had it before B's caller did (the change went out from Redis before
# B's reply came back through B's sidecar and store process). Prints percentiles in ms and the
# number of old values read after the acknowledgement. docs/harness.md, "Read cache", quotes it.

defmodule CacheStaleness do
  @moduledoc false
  alias SnakepitSidecar.{Connection, ReadCache}
  alias SnakepitSidecar.SessionStore, as: Store

  def main(argv) do
    {opts, _, _} = OptionParser.parse(argv, strict: [rounds: :integer])
    rounds = Keyword.get(opts, :rounds, 200)
    Code.require_file(Path.expand("../test/support/redis_server.ex", __DIR__))
    redis_server = Module.concat([SnakepitSidecar, RedisServer])

    if redis_server.executable() == nil do
      IO.puts("cache staleness: redis-server is not installed (scripts/setup installs it)")
    else
      server = redis_server.start()

      try do
        measure(redis_server.url(server), rounds)
      after
        redis_server.close(server)
      end
    end
  end

  defp measure(url, rounds) do
    opts = [
      name: nil,
      read_cache: true,
      storage: {:redis, url, prefix: "staleness:"},
      sidecar_args: ["--log-level", "error"]
    ]

    {:ok, a} = Store.start_link(opts)
    {:ok, b} = Store.start_link(opts)
    {:ok, _} = Store.create_session(a, "s")
    {:ok, _} = Store.register_variable(a, "s", :x, :integer, 0)
    :erlang.trace(a, true, [:receive, :monotonic_timestamp])

    results = for n <- 1..rounds, do: round(a, b, n)
    :erlang.trace(a, false, [:receive])

    frames = for {frame, _, _} <- results, frame != nil, do: frame
    reads = for {_, read, _} <- results, do: read
    old = results |> Enum.map(&elem(&1, 2)) |> Enum.sum()

    IO.puts("""
    cache staleness on Redis: #{rounds} rounds, ms from B's acknowledged update_variable
      frame applied on A: #{summary(frames)} (#{length(frames)} rounds seen)
      first fresh read on A (polling every 1 ms): #{summary(reads)}
      old values read after the acknowledgement: #{old} in all
    """)
  end

  defp round(a, b, n) do
    warm(a)
    flush_trace()
    parent = self()

    reader =
      spawn_link(fn ->
        receive do
          {:go, acked} -> send(parent, {:read, poll(a, n, acked, 0)})
        end
      end)

    :ok = Store.update_variable(b, "s", :x, n)
    acked = System.monotonic_time(:nanosecond)
    send(reader, {:go, acked})

    {read_ms, old} =
      receive do
        {:read, result} -> result
      after
        10_000 -> raise "A did not read #{n} within 10 s"
      end

    {frame_ms(acked), read_ms, old}
  end

  defp warm(a) do
    {:ok, _} = Store.get_variable(a, "s", :x)
    :ok = Connection.flush_touches(a)

    unless match?({:hit, _}, ReadCache.fetch(ReadCache.lookup(a), "s", :x)) do
      Process.sleep(1)
      warm(a)
    end
  end

  defp poll(a, n, acked, old) do
    case Store.get_variable(a, "s", :x) do
      {:ok, %{value: ^n}} ->
        {(System.monotonic_time(:nanosecond) - acked) / 1.0e6, old}

      {:ok, _} ->
        Process.sleep(1)
        poll(a, n, acked, old + 1)
    end
  end

  # The receive timestamp of the invalidation for "s" that followed B's write.
  defp frame_ms(acked) do
    receive do
      {:trace_ts, _, :receive, {_port, {:data, bytes}}, ts} ->
        case safe_decode(bytes) do
          {:invalidate, ["s"]} -> (ts - acked) / 1.0e6
          _ -> frame_ms(acked)
        end

      {:trace_ts, _, :receive, _other, _ts} ->
        frame_ms(acked)
    after
      1_000 -> nil
    end
  end

  defp safe_decode(bytes) do
    :erlang.binary_to_term(bytes)
  rescue
    _ -> nil
  end

  defp flush_trace do
    receive do
      {:trace_ts, _, _, _, _} -> flush_trace()
    after
      0 -> :ok
    end
  end

  defp summary([]), do: "none"

  defp summary(values) do
    sorted = Enum.sort(values)
    at = fn q -> Enum.at(sorted, min(length(sorted) - 1, floor(q * length(sorted)))) end

    "min #{f(hd(sorted))}, p50 #{f(at.(0.5))}, p90 #{f(at.(0.9))}, p99 #{f(at.(0.99))}, " <>
      "max #{f(List.last(sorted))}"
  end

  defp f(ms), do: :erlang.float_to_binary(ms, decimals: 2)
end

CacheStaleness.main(System.argv())
