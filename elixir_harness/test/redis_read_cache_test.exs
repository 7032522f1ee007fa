defmodule SnakepitSidecar.RedisReadCacheTest do
  @moduledoc """
  The read cache on shared storage, through the real port: two stores (A and B, each with its
  own sidecar) on one Redis that these tests start and stop. A value cached on A and updated on
  B is fresh on A within the documented bound after B's acknowledged write, and once A served
  the new value it never serves the old one; B's batch updates, deletes, session delete and the
  optimization lock invalidate A's entries; the sidecar's subscription killed, or Redis stopped
  and restarted, clears A's cache. The cache is on for Redis only with a sidecar that pushes
  other stores' changes. docs/harness.md, "Read cache".
  """

  use ExUnit.Case, async: true
  import SnakepitSidecar.SidecarCase

  alias SnakepitSidecar.{Connection, ReadCache, RedisServer}
  alias SnakepitSidecar.SessionStore, as: Store

  @moduletag :capture_log

  if RedisServer.executable() == nil do
    @moduletag skip: "redis-server is not installed (scripts/setup installs it)"
  end

  # The bound docs/harness.md states for a read on A after B's acknowledged write (measured:
  # a few milliseconds, bench/cache_staleness.exs); generous, for a shared, noisy machine.
  @bound_ms 2_000
  @rounds 20
  @fake_path Path.expand("support/fake_sidecar", __DIR__)

  defp redis(args \\ nil) do
    server = if args, do: RedisServer.start(args: args), else: RedisServer.start()
    on_exit(fn -> RedisServer.close(server) end)
    server
  end

  defp store_on(server, prefix, opts \\ []) do
    storage = {:redis, RedisServer.url(server), Keyword.merge([prefix: prefix], opts)}
    start_store(storage: storage, read_cache: true)
  end

  # Two stores on one store of `server`, A's session "s" with variables x, y, z.
  defp two_stores(server) do
    prefix = "rc#{System.unique_integer([:positive])}:"
    a = store_on(server, prefix)
    b = store_on(server, prefix)
    {:ok, _} = Store.create_session(a, "s")
    for name <- [:x, :y, :z], do: {:ok, _} = Store.register_variable(a, "s", name, :integer, 0)
    {a, b}
  end

  # Whether A would answer `ident` from its cache now.
  defp cached?(store, sid, ident) do
    match?({:hit, _}, ReadCache.fetch(ReadCache.lookup(store), sid, ident))
  end

  # Reads until the cache holds `ident` (read, then the touch that tells it the expiry).
  defp warm(store, sid, ident) do
    eventually(fn ->
      {:ok, _} = Store.get_variable(store, sid, ident)
      :ok = Connection.flush_touches(store)
      cached?(store, sid, ident)
    end)
  end

  defp ms_since(start), do: System.monotonic_time(:millisecond) - start

  # Polls `check` (a read on A) until it is true; flunks when it is not within the bound
  # counted from `acked` (the moment B's write was acknowledged).
  defp fresh_within_bound(acked, check) do
    cond do
      check.() ->
        ms_since(acked)

      ms_since(acked) > @bound_ms ->
        flunk("A still served the old value #{ms_since(acked)} ms after B's acknowledged write")

      true ->
        Process.sleep(1)
        fresh_within_bound(acked, check)
    end
  end

  # Reads x on A in a loop until told to stop; fails if a value is ever older than one it read.
  defp monotonic_reader(a) do
    Task.async(fn ->
      Stream.repeatedly(fn -> :ok end)
      |> Enum.reduce_while({0, 0}, fn _, {last, reads} ->
        receive do
          # told after the test's own reader had the last value: this one reads it too
          :stop -> {:halt, {last(a, last), reads}}
        after
          0 ->
            {:ok, %{value: value}} = Store.get_variable(a, "s", :x)
            if value < last, do: raise("read #{value} after #{last}")
            {:cont, {value, reads + 1}}
        end
      end)
    end)
  end

  # A store on Redis whose (fake) sidecar answers the hello with `welcome_info`.
  defp fake_on_redis(welcome_info) do
    Process.flag(:trap_exit, true)
    welcome = {:welcome, 1, Map.merge(%{os_pid: 0, protocol_versions: [1]}, welcome_info)}

    Store.start_link(
      name: nil,
      sidecar_path: @fake_path,
      sidecar_args: [Base.encode16(:erlang.term_to_binary(welcome))],
      storage: {:redis, "redis://127.0.0.1:1/0"},
      read_cache: true
    )
  end

  defp last(a, before) do
    {:ok, %{value: value}} = Store.get_variable(a, "s", :x)
    if value < before, do: raise("read #{value} after #{before}")
    value
  end

  test "B's acknowledged write is read on A within the bound, and A never goes back to the old value" do
    server = redis()
    {a, b} = two_stores(server)
    assert Store.sidecar_info(a).read_cache and Store.sidecar_info(a).welcome.invalidations
    readers = for _ <- 1..3, do: monotonic_reader(a)

    for n <- 1..@rounds do
      warm(a, "s", :x)
      assert {:ok, %{value: old}} = Store.get_variable(a, "s", :x)
      assert old == n - 1
      :ok = Store.update_variable(b, "s", :x, n)
      acked = System.monotonic_time(:millisecond)

      fresh_within_bound(acked, fn ->
        {:ok, %{value: value}} = Store.get_variable(a, "s", :x)
        assert value in [n - 1, n]
        value == n
      end)

      # once the new value was served, only the new value
      for _ <- 1..20, do: assert({:ok, %{value: ^n}} = Store.get_variable(a, "s", :x))
    end

    for reader <- readers, do: send(reader.pid, :stop)

    # each reader's values never went down, and its read after the last round has the last one
    for {last, _reads} <- Task.await_many(readers, 10_000), do: assert(last == @rounds)
  end

  test "B's batch update, lock, variable delete and session delete invalidate A's entries" do
    server = redis()
    {a, b} = two_stores(server)
    for name <- [:x, :y, :z], do: warm(a, "s", name)
    assert {:ok, %{found: %{"x" => %{value: 0}}}} = Store.get_variables(a, "s", [:x, :y])

    {:ok, _} = Store.update_variables(b, "s", %{x: 1, y: 2})
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn ->
      match?({:ok, %{value: 1}}, Store.get_variable(a, "s", :x)) and
        match?(
          {:ok, %{found: %{"x" => %{value: 1}, "y" => %{value: 2}}}},
          Store.get_variables(a, "s", [:x, :y])
        )
    end)

    warm(a, "s", :z)
    :ok = Store.start_optimization(b, "s", :z, "opt-1", self())
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn ->
      {:ok, variable} = Store.get_variable(a, "s", :z)
      variable.optimization_status.optimizing == true
    end)

    # the lock holds on A too
    assert {:error, _} = Store.update_variable(a, "s", :z, 5)

    warm(a, "s", :y)
    :ok = Store.delete_variable(b, "s", :y)
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn ->
      match?({:error, _}, Store.get_variable(a, "s", :y)) and not Store.has_variable?(a, "s", :y)
    end)

    warm(a, "s", :x)
    :ok = Store.delete_session(b, "s")
    acked = System.monotonic_time(:millisecond)
    fresh_within_bound(acked, fn -> match?({:error, _}, Store.get_variable(a, "s", :x)) end)
  end

  test "the sidecar's subscription killed and made again clears A's cache" do
    server = redis()
    {a, b} = two_stores(server)
    warm(a, "s", :x)
    assert ":" <> _ = RedisServer.command(server, ["CLIENT", "KILL", "TYPE", "pubsub"])
    # nobody wrote: only the loss and the resubscription can have cleared it
    eventually(fn -> not cached?(a, "s", :x) end, @bound_ms)

    # again, with B writing at once: while A's subscription is down its commit reaches nobody
    # of A, and A must not keep serving what it had
    warm(a, "s", :x)
    assert ":" <> _ = RedisServer.command(server, ["CLIENT", "KILL", "TYPE", "pubsub"])
    :ok = Store.update_variable(b, "s", :x, 1)
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn ->
      {:ok, %{value: value}} = Store.get_variable(a, "s", :x)
      value == 1
    end)

    # and the feed works again: a cached value, B's write, A fresh
    warm(a, "s", :x)
    :ok = Store.update_variable(b, "s", :x, 2)
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn -> match?({:ok, %{value: 2}}, Store.get_variable(a, "s", :x)) end)
  end

  test "Redis stopped and restarted: A's cache is cleared, and after B's write A reads only it" do
    server = redis(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
    {a, b} = two_stores(server)
    warm(a, "s", :x)

    server = RedisServer.stop(server)
    # A's sidecar noticed the loss: its cache no longer answers, its reads reach the sidecar
    eventually(
      fn -> match?({:error, {:storage_error, _}}, Store.get_variable(a, "s", :x)) end,
      @bound_ms
    )

    server = RedisServer.restart(server)
    on_exit(fn -> RedisServer.close(server) end)
    :ok = Store.update_variable(b, "s", :x, 7)
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn ->
      case Store.get_variable(a, "s", :x) do
        {:ok, %{value: value}} ->
          assert value == 7
          true

        {:error, {:storage_error, _}} ->
          false
      end
    end)

    # the cache works again on the new subscription
    warm(a, "s", :x)
    :ok = Store.update_variable(b, "s", :x, 8)
    acked = System.monotonic_time(:millisecond)

    fresh_within_bound(acked, fn -> match?({:ok, %{value: 8}}, Store.get_variable(a, "s", :x)) end)
  end

  describe "on for Redis only with a sidecar that pushes others' changes" do
    test "a welcome without invalidations: true turns it off for that sidecar, and says so" do
      log =
        ExUnit.CaptureLog.capture_log([level: :debug], fn ->
          {:ok, store} = fake_on_redis(%{})
          refute Store.sidecar_info(store).read_cache
          assert ReadCache.lookup(store) == nil
          GenServer.stop(store)
        end)

      assert log =~ "read cache off for sidecar"

      {:ok, store} = fake_on_redis(%{invalidations: true})
      assert Store.sidecar_info(store).read_cache
      GenServer.stop(store)
    end

    test "the real sidecar announces them; recording and read_cache: false still turn it off" do
      server = redis()
      store = store_on(server, "on:")
      info = Store.sidecar_info(store)
      assert info.read_cache and info.welcome.invalidations == true

      path = Path.join(System.tmp_dir!(), "rc-#{System.unique_integer([:positive])}.rec")
      on_exit(fn -> File.rm(path) end)
      url = RedisServer.url(server)
      refute Store.sidecar_info(start_store(storage: {:redis, url}, record: path)).read_cache
      off = start_store(storage: {:redis, url}, read_cache: false)
      refute Store.sidecar_info(off).read_cache
      refute Map.has_key?(Store.sidecar_info(off).welcome, :invalidations)
    end
  end
end
