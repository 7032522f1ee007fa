defmodule SnakepitSidecar.ReadCacheTest do
  @moduledoc """
  The read cache (`SnakepitSidecar.ReadCache`) through the real port: hits, every invalidating
  call, a write whose caller timed out, the fill that arrives after a write's invalidation,
  concurrent writers and readers, a sidecar restart, expiry by cleanup, touches and TTLs, and
  when the cache is off.
  """
  use SnakepitSidecar.SidecarCase, async: true
  @moduletag :capture_log
  @moduletag :tmp_dir

  alias SnakepitSidecar.{Connection, ReadCache}
  alias SnakepitSidecar.SessionStore, as: Store

  @get [:snakepit, :session_store, :variable, :get]
  @batch_get [:snakepit, :session_store, :variables, :batch_get]
  @call_stop [:snakepit_sidecar, :call, :stop]
  @test_calls quiet_args() ++ ["--enable-test-calls"]

  setup do
    capture_telemetry([@get, @batch_get, @call_stop])
    :ok
  end

  # Reads `ident` with get_variable: `{result, cache_hit}` (from the read's :get event; nil when
  # it had none, e.g. the variable is not there).
  defp read(store, sid, ident) do
    result = Store.get_variable(store, sid, ident)

    hit =
      receive do
        {:telemetry_event, @get, _, %{session_id: ^sid, cache_hit: hit}} -> hit
      after
        0 -> nil
      end

    {result, hit}
  end

  # A read that fills the cache, the touch that tells it the session's expiry, a read that hits.
  defp warm(store, sid, ident) do
    {{:ok, _}, _} = read(store, sid, ident)
    :ok = Connection.flush_touches(store)
    assert {{:ok, variable}, true} = read(store, sid, ident)
    variable
  end

  defp new_session(store, opts \\ []) do
    sid = unique_id("rc")
    {:ok, _} = Store.create_session(store, sid, opts)
    {:ok, _} = Store.register_variable(store, sid, :x, :float, 1.0)
    sid
  end

  defp flush_calls do
    receive do
      {:telemetry_event, @call_stop, _, _} -> flush_calls()
    after
      0 -> :ok
    end
  end

  describe "hits" do
    test "served in the caller, with cache_hit: true, and no call to the sidecar" do
      store = start_store()
      sid = new_session(store)
      assert warm(store, sid, :x).value == 1.0
      flush_calls()

      assert {{:ok, %SnakepitSidecar.Variable{value: 1.0, name: :x}}, true} = read(store, sid, :x)
      assert Store.get_variable_value(store, sid, :x) == 1.0
      assert_received {:telemetry_event, @get, %{count: 1}, %{session_id: ^sid, cache_hit: true}}
      assert Store.get_variable_value(store, sid, :x, :default) == 1.0
      assert_received {:telemetry_event, @get, _, %{session_id: ^sid, cache_hit: true}}
      assert Store.has_variable?(store, sid, :x)
      assert_received {:telemetry_event, @get, _, %{session_id: ^sid, cache_hit: true}}

      assert {:ok, %{found: %{"x" => %{value: 1.0}}, missing: []}} =
               Store.get_variables(store, sid, [:x])

      assert_received {:telemetry_event, @batch_get, %{count: 1}, %{session_id: ^sid}}
      refute_received {:telemetry_event, @call_stop, _, _}
    end

    test "what the cache answers is what the sidecar answers" do
      store = start_store()
      sid = new_session(store)
      {:ok, id} = Store.register_variable(store, sid, "name", :string, "v", description: "d")
      :ok = Store.update_variable(store, sid, id, "w", %{"k" => [1, 2.0, :a]})
      cached = warm(store, sid, "name")
      by_id = warm(store, sid, id)
      assert cached == by_id
      # forgetting is always safe: the next read asks the sidecar
      :ok = ReadCache.clear(ReadCache.lookup(store))
      assert {{:ok, ^cached}, false} = read(store, sid, "name")
    end

    test "misses and reads the cache does not answer go to the sidecar" do
      store = start_store()
      sid = new_session(store)
      warm(store, sid, :x)
      assert {{:error, :not_found}, nil} = read(store, sid, :nope)
      assert Store.get_variable_value(store, sid, :nope, :dflt) == :dflt
      refute Store.has_variable?(store, sid, :nope)
      assert Store.get_variable_value(store, "no_such", :x, 7) == 7
      assert {:error, :session_not_found} = Store.get_variable(store, "no_such", :x)
      # not an identifier: the sidecar's own answer
      assert {:error, {:bad_argument, :get_variable, 2, _}} = Store.get_variable(store, sid, 5)
      assert Store.get_variable_value(store, sid, 5, :d) == :d

      assert {:ok, %{found: %{"x" => _}, missing: ["nope"]}} =
               Store.get_variables(store, sid, [:x, :nope])
    end
  end

  describe "every write through the store invalidates before its reply" do
    setup do
      store = start_store(sidecar_args: @test_calls)
      sid = new_session(store)
      warm(store, sid, :x)
      %{store: store, sid: sid}
    end

    test "update_variable", %{store: store, sid: sid} do
      :ok = Store.update_variable(store, sid, :x, 2.0)
      assert {{:ok, %{value: 2.0, version: 1}}, false} = read(store, sid, :x)
    end

    test "update_variable by id, read by name", %{store: store, sid: sid} do
      {:ok, %{id: id}} = Store.get_variable(store, sid, :x)
      :ok = Store.update_variable(store, sid, id, 3.0)
      assert Store.get_variable_value(store, sid, :x) == 3.0
    end

    test "update_variables, non-atomic and atomic", %{store: store, sid: sid} do
      {:ok, _} = Store.update_variables(store, sid, %{x: 4.0})
      assert Store.get_variable_value(store, sid, :x) == 4.0
      warm(store, sid, :x)
      {:ok, _} = Store.update_variables(store, sid, %{x: 5.0}, atomic: true)
      assert Store.get_variable_value(store, sid, :x) == 5.0
    end

    test "delete_variable", %{store: store, sid: sid} do
      :ok = Store.delete_variable(store, sid, :x)
      assert {{:error, :not_found}, nil} = read(store, sid, :x)
      refute Store.has_variable?(store, sid, :x)
    end

    test "register_variable under a name already read", %{store: store, sid: sid} do
      {:ok, id} = Store.register_variable(store, sid, :x, :integer, 7)
      assert {{:ok, %{id: ^id, value: 7, type: :integer}}, false} = read(store, sid, :x)
    end

    test "import_variables", %{store: store, sid: sid} do
      {:ok, [exported]} = Store.export_variables(store, sid)
      {:ok, 1} = Store.import_variables(store, sid, [%{exported | value: 8.0}])
      assert Store.get_variable_value(store, sid, :x) == 8.0
    end

    test "the optimization lock", %{store: store, sid: sid} do
      :ok = Store.start_optimization(store, sid, :x, "opt", self())
      assert {{:ok, %{optimization_status: %{optimizing: true}}}, false} = read(store, sid, :x)
      warm(store, sid, :x)
      :ok = Store.end_optimization(store, sid, :x)
      assert {{:ok, %{optimization_status: %{optimizing: false}}}, false} = read(store, sid, :x)
    end

    test "update_session", %{store: store, sid: sid} do
      {:ok, _} =
        Store.update_session(store, sid, fn session ->
          [{id, var}] = Map.to_list(session.variables)
          %{session | variables: %{id => %{var | value: 9.0}}}
        end)

      assert Store.get_variable_value(store, sid, :x) == 9.0
    end

    test "delete_session", %{store: store, sid: sid} do
      :ok = Store.delete_session(store, sid)
      assert {{:error, :session_not_found}, nil} = read(store, sid, :x)
      {:ok, _} = Store.create_session(store, sid)
      assert Store.get_variable_value(store, sid, :x, :gone) == :gone
    end

    test "cleanup_expired_sessions and run_cleanup", %{store: store} do
      for cleanup <- [:cleanup_expired_sessions, :run_cleanup] do
        sid = new_session(store, ttl: 100)
        warm(store, sid, :x)
        # the sidecar's clock moves on (the cache's does not): the session has expired there
        :ok = Store.call(store, :__advance_clock__, [200])
        assert {{:ok, _}, true} = read(store, sid, :x)
        _ = Store.call(store, cleanup, [])
        assert {{:error, :session_not_found}, nil} = read(store, sid, :x)
      end
    end
  end

  test "the periodic cleanup's expiry reaches the cache (an :invalidate frame)" do
    store = start_store(sidecar_args: @test_calls, cleanup_interval: 50)
    sid = new_session(store, ttl: 100)
    warm(store, sid, :x)
    :ok = Store.call(store, :__advance_clock__, [200])
    eventually(fn -> not Store.session_exists?(store, sid) end)
    assert {{:error, :session_not_found}, nil} = read(store, sid, :x)
  end

  test "a sidecar that dies clears the cache" do
    store = start_store()
    sid = new_session(store)
    warm(store, sid, :x)
    old = Store.sidecar_info(store).os_pid
    SnakepitSidecar.OSProcess.kill(old)
    eventually(fn -> Store.sidecar_info(store).os_pid not in [nil, old] end)
    # the new, empty sidecar has no such session; a stale cache would still answer 1.0
    assert {{:error, :session_not_found}, nil} = read(store, sid, :x)
  end

  test "a write whose caller timed out still invalidates when its reply comes" do
    store = start_store()
    sid = new_session(store)
    warm(store, sid, :x)
    os_pid = Integer.to_string(Store.sidecar_info(store).os_pid)
    {_, 0} = System.cmd("kill", ["-STOP", os_pid])

    try do
      assert {:timeout, _} = catch_exit(Store.call(store, :update_variable, [sid, :x, 6.0], 50))
    after
      System.cmd("kill", ["-CONT", os_pid])
    end

    assert Store.call(store, :ping, [], 10_000) == :pong
    assert {{:ok, %{value: 6.0}}, false} = read(store, sid, :x)
  end

  test "a read's reply that fills after a later write's invalidation is never served" do
    store = start_store()
    sid = new_session(store)
    warm(store, sid, :x)
    cache = ReadCache.lookup(store)
    # the race, slowed down: a read took its stamp and got the old value...
    {:hit, old} = ReadCache.fetch(cache, sid, :x)
    {:miss, stamp} = ReadCache.fetch(cache, sid, :missing_ident_stamp_only)
    # ...a write is served after it and acknowledged...
    :ok = Store.update_variable(store, sid, :x, 2.0)
    # ...and only then does the read's reply fill the cache
    :ok = ReadCache.fill(cache, sid, :x, stamp, old)
    assert {{:ok, %{value: 2.0}}, false} = read(store, sid, :x)
  end

  test "concurrent writers and readers: nobody reads a value older than an acknowledged write" do
    store = start_store()
    sid = new_session(store)
    names = [:w0, :w1, :w2, :w3]
    for name <- names, do: {:ok, _} = Store.register_variable(store, sid, name, :integer, 0)
    for name <- names, do: warm(store, sid, name)
    acked = :atomics.new(length(names), signed: false)
    writes = 150

    writers =
      for {name, i} <- Enum.with_index(names, 1) do
        Task.async(fn ->
          for v <- 1..writes do
            :ok = Store.update_variable(store, sid, name, v)
            :atomics.put(acked, i, v)
            if rem(v, 3) == 0, do: Process.sleep(1)
          end
        end)
      end

    readers =
      for r <- 1..8 do
        Task.async(fn ->
          Enum.reduce_while(Stream.cycle([:go]), {%{}, 0}, fn _, {seen, n} ->
            i = rem(n + r, length(names)) + 1
            name = Enum.at(names, i - 1)
            floor = :atomics.get(acked, i)

            value =
              case rem(n, 3) do
                0 ->
                  Store.get_variable_value(store, sid, name)

                1 ->
                  elem(Store.get_variable(store, sid, name), 1).value

                2 ->
                  Store.get_variables(store, sid, [name])
                  |> elem(1)
                  |> get_in([:found, "#{name}"])
                  |> Map.fetch!(:value)
              end

            # read-after-acknowledged-write, and monotonic reads per reader
            if value < floor or value < Map.get(seen, name, 0),
              do: {:halt, {:stale, name, value, floor, Map.get(seen, name)}},
              else:
                if(Enum.all?(1..length(names), &(:atomics.get(acked, &1) == writes)),
                  do: {:halt, :ok},
                  else: {:cont, {Map.put(seen, name, value), n + 1}}
                )
          end)
        end)
      end

    Enum.each(writers, &Task.await(&1, 60_000))
    assert Enum.map(readers, &Task.await(&1, 60_000)) == List.duplicate(:ok, 8)
    for name <- names, do: assert(Store.get_variable_value(store, sid, name) == writes)
    hits = count_hits(sid, 0)
    assert hits > 0, "the readers never hit the cache: the test proved nothing"
  end

  defp count_hits(sid, n) do
    receive do
      {:telemetry_event, @get, _, %{session_id: ^sid, cache_hit: true}} -> count_hits(sid, n + 1)
      {:telemetry_event, _, _, _} -> count_hits(sid, n)
    after
      0 -> n
    end
  end

  test "a store killed brutally: callers holding its pid exit as with any dead store" do
    store = start_store()
    sid = new_session(store)
    warm(store, sid, :x)
    Process.unlink(store)
    ref = Process.monitor(store)
    Process.exit(store, :kill)
    assert_receive {:DOWN, ^ref, _, _, :killed}
    # its cache's tables are gone, but not its :persistent_term entry (nothing ran to erase it)
    assert ReadCache.lookup(store) != nil
    assert {:noproc, _} = catch_exit(Store.get_variable(store, sid, :x))
    assert {:noproc, _} = catch_exit(Store.get_variables(store, sid, [:x]))
  end

  describe "sessions stay alive" do
    test "flush_touches returns only after a batch the tick sent before it is answered" do
      store = start_store()
      sid = new_session(store)
      # a miss fills the cache (and owes a touch, which the tick may send at once)
      assert {{:ok, _}, false} = read(store, sid, :x)
      {_entries, _sessions, owed, _epoch} = ReadCache.lookup(store)
      os_pid = Integer.to_string(Store.sidecar_info(store).os_pid)
      {_, 0} = System.cmd("kill", ["-STOP", os_pid])

      flush =
        try do
          # a touch owed while the sidecar is stopped (as a cached read records it)
          :ets.insert(owed, {sid, System.monotonic_time(:second)})
          # the tick (5 ms in tests) takes the touch and sends it; its answer cannot come yet
          eventually(fn -> :ets.info(owed, :size) == 0 end)
          flush = Task.async(fn -> Connection.flush_touches(store) end)
          # nothing is owed any more, but the expiry it would learn is still on its way
          assert Task.yield(flush, 100) == nil
          flush
        after
          System.cmd("kill", ["-CONT", os_pid])
        end

      assert Task.await(flush, 5_000) == :ok
      assert {{:ok, _}, true} = read(store, sid, :x)
    end

    test "a cached read's touch sets last_accessed to the read's second" do
      store = start_store()
      started = System.monotonic_time(:second)
      sid = new_session(store)
      warm(store, sid, :x)
      {:ok, %{last_accessed: before}, _} = Store.call(store, :fetch_session_for_update, [sid])
      # two seconds on, a read from the cache only
      eventually(fn -> System.monotonic_time(:second) >= started + 2 end, 5_000)
      assert {{:ok, _}, true} = read(store, sid, :x)
      :ok = Connection.flush_touches(store)
      {:ok, %{last_accessed: touched}, _} = Store.call(store, :fetch_session_for_update, [sid])
      # the read's second, or the sidecar's now if its clock trails this node's (never past it)
      assert touched > before
    end

    test "a session read only from the cache does not expire" do
      store = start_store(cleanup_interval: 100)
      sid = new_session(store, ttl: 5)
      warm(store, sid, :x)
      deadline = System.monotonic_time(:millisecond) + 7_500

      hits =
        Stream.repeatedly(fn ->
          Process.sleep(20)
          read(store, sid, :x)
        end)
        |> Enum.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
        |> Enum.map(fn {{:ok, %{value: 1.0}}, hit} -> hit end)

      # nearly every read was a hit: the session lived on the touches of cached reads (a read
      # at a second's turn may miss: the sidecar's clock trails this node's by the hello's trip)
      assert Enum.count(hits, & &1) > 0.9 * length(hits)
      assert Store.session_exists?(store, sid)
      assert Store.get_stats(store).sessions_expired == 0
    end

    test "a session too close to its expiry is read through the sidecar" do
      store = start_store()
      sid = new_session(store, ttl: ReadCache.slack_s())
      {{:ok, _}, false} = read(store, sid, :x)
      :ok = Connection.flush_touches(store)
      assert {{:ok, _}, false} = read(store, sid, :x)
    end
  end

  describe "when the cache is off" do
    test "read_cache: false" do
      store = start_store(read_cache: false)
      sid = new_session(store)
      {{:ok, _}, false} = read(store, sid, :x)
      :ok = Connection.flush_touches(store)
      assert {{:ok, _}, false} = read(store, sid, :x)
      refute Store.sidecar_info(store).read_cache
      assert ReadCache.lookup(store) == nil
    end

    test "while recording", %{tmp_dir: dir} do
      store = start_store(record: Path.join(dir, "r.rec"))
      refute Store.sidecar_info(store).read_cache
    end

    test "for shared storage (Redis) with a sidecar that does not push others' changes, and by the option" do
      {:ok, config} =
        SnakepitSidecar.Options.validate(storage: {:redis, "redis://127.0.0.1:6379/0"})

      # asked for (the hello says read_cache: true), served only with the sidecar's pushes
      assert ReadCache.enabled?(config)
      assert ReadCache.usable?(config, %{invalidations: true})
      refute ReadCache.usable?(config, %{})
      refute ReadCache.usable?(config, %{invalidations: false})
      {:ok, config} = SnakepitSidecar.Options.validate(storage: {:sqlite, "/tmp/x.db"})
      assert ReadCache.enabled?(config) and ReadCache.usable?(config, %{})
      {:ok, config} = SnakepitSidecar.Options.validate(read_cache: false)
      refute ReadCache.enabled?(config)
    end
  end

  describe "scope/2" do
    test "reads invalidate nothing, variable writes their session, anything else everything" do
      for f <- [
            :get_variable,
            :get_variables,
            :list_variables,
            :get_session,
            :ping,
            :touch_sessions
          ],
          do: assert(ReadCache.scope(f, ["s"]) == nil)

      for f <-
            [:update_variable, :update_variables, :delete_variable, :register_variable] ++
              [:import_variables, :start_optimization, :end_optimization],
          do: assert(ReadCache.scope(f, ["s", :x]) == {:session, "s", false})

      assert ReadCache.scope(:delete_session, ["s"]) == {:session, "s", true}
      assert ReadCache.scope(:put_session_if, ["s", 1, %{}]) == {:session, "s", true}

      assert ReadCache.scope(:__advance_clock__, [200]) == nil

      for f <- [:cleanup_expired_sessions, :run_cleanup, :__reset__, :unknown],
          do: assert(ReadCache.scope(f, []) == :all)
    end

    test "every call of the API is classified on purpose" do
      known =
        [:update_session, :get_variable, :get_variables, :list_variables, :get_session] ++
          [:session_exists?, :list_sessions, :get_stats, :create_session, :store_worker_session] ++
          [:store_global_program, :get_global_program, :delete_global_program, :store_program] ++
          [:update_program, :get_program, :get_variable_value, :has_variable?, :export_variables] ++
          [:update_variable, :update_variables, :delete_variable, :register_variable] ++
          [:import_variables, :delete_session, :cleanup_expired_sessions]

      api = SnakepitSidecar.API.functions() |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
      assert Enum.sort(api) == Enum.sort(known)
    end
  end
end
