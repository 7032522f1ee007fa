defmodule SnakepitSidecar.RedisStorageTest do
  @moduledoc """
  `storage: {:redis, url}` through the real port: stores (each with its own sidecar) on one Redis
  act as one store. Two BEAM OS processes see each other's writes, each on its own monotonic
  clock; a store whose sidecar is killed with -9 under writers leaves the other serving every
  session with no acknowledged write lost, and comes back seeing everything; `update_session`
  is a compare-and-set across stores; with Redis stopped calls answer a storage error (no hang,
  no restart loop) and the store reconnects when Redis is back. Every test starts its own
  `redis-server` on a free loopback port and stops it by its pid. docs/storage.md, "Redis".
  """

  use ExUnit.Case, async: true
  import SnakepitSidecar.SidecarCase

  alias SnakepitSidecar.RedisServer
  alias SnakepitSidecar.SessionStore, as: Store

  if RedisServer.executable() == nil do
    @moduletag skip: "redis-server is not installed (scripts/setup installs it)"
  end

  defp redis(args \\ nil) do
    server = if args, do: RedisServer.start(args: args), else: RedisServer.start()
    on_exit(fn -> RedisServer.close(server) end)
    server
  end

  defp store_on(server, prefix, opts \\ []) do
    start_store([storage: {:redis, RedisServer.url(server), prefix: prefix}] ++ opts)
  end

  defp kill_9(store) do
    os_pid = Store.sidecar_info(store).os_pid
    {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])
    os_pid
  end

  test "two BEAM OS processes, each with its own store on one Redis, see each other's writes" do
    server = redis()
    a = store_on(server, "two-beams:")
    {:ok, _} = Store.create_session(a, "shared")
    {:ok, id_a} = Store.register_variable(a, "shared", :from_a, :integer, 1)

    ebin = Path.join(Mix.Project.build_path(), "lib/snakepit_sidecar/ebin")
    script = Path.expand("support/redis_node.exs", __DIR__)
    sidecar_path = Application.fetch_env!(:snakepit_sidecar, :sidecar_path)

    {output, 0} =
      System.cmd(
        System.find_executable("elixir"),
        ["-pa", ebin, script, RedisServer.url(server), "two-beams:", sidecar_path],
        stderr_to_stdout: true
      )

    [encoded] = for "RESULT:" <> rest <- String.split(output, "\n"), do: rest
    b = :erlang.binary_to_term(Base.decode64!(encoded))

    # the other node saw this one's variable, and this one sees the other's writes
    assert {:ok, %{id: ^id_a, value: 1}} = b.seen
    assert {:ok, %{value: 10, version: 1}} = Store.get_variable(a, "shared", :from_a)
    assert {:ok, %{value: 2}} = Store.get_variable(a, "shared", :from_b)
    assert b.from_b != id_a
    assert {:ok, made} = Store.get_session(a, "made_by_b")
    assert b.sidecar_os_pid != Store.sidecar_info(a).os_pid

    # one stored time, each BEAM presenting it on its own monotonic seconds: exact on the BEAM
    # that made it; on this one, shifted by the difference of the two BEAMs' time offsets, each
    # rounded to whole seconds, so up to one second off either way (docs/storage.md, "Time")
    now = System.monotonic_time(:second)
    assert b.created_at in (b.monotonic_now - 60)..b.monotonic_now
    assert made.created_at in (now - 60)..(now + 1)
    shift = (b.time_offset_ms - System.time_offset(:millisecond)) / 1000
    assert abs(made.created_at - (b.created_at + shift)) < 1
  end

  test "kill -9 of one store's sidecar under writers: the other store keeps serving, nothing acknowledged is lost" do
    server = redis()
    killed = store_on(server, "kill9:")
    serving = store_on(server, "kill9:")
    writers = 12

    {:ok, _} = Store.create_session(killed, "s")

    for w <- 1..writers do
      {:ok, _} = Store.register_variable(killed, "s", "w#{w}", :integer, 0)
    end

    parent = self()

    write = fn store, w ->
      Enum.reduce_while(Stream.iterate(1, &(&1 + 1)), 0, fn n, acknowledged ->
        if n == 30, do: send(parent, {:warm, w})

        try do
          :ok = Store.update_variable(store, "s", "w#{w}", n)
          if n == 150, do: {:halt, {w, acknowledged + 1}}, else: {:cont, acknowledged + 1}
        catch
          :exit, {{:sidecar_down, _}, _} -> {:halt, {w, acknowledged}}
        end
      end)
    end

    # half the writers on the store that will lose its sidecar, half on the other
    tasks =
      for w <- 1..writers do
        store = if rem(w, 2) == 0, do: killed, else: serving
        Task.async(fn -> write.(store, w) end)
      end

    for w <- 1..writers, do: assert_receive({:warm, ^w}, 20_000)
    old = kill_9(killed)
    results = Task.await_many(tasks, 60_000)

    # the serving store's writers all finished, and it serves every variable of the session
    for {w, acknowledged} <- results, rem(w, 2) == 1, do: assert(acknowledged == 150)

    for {w, acknowledged} <- results do
      assert {:ok, variable} = Store.get_variable(serving, "s", "w#{w}")
      # an update in flight at the kill may have been committed without its reply
      assert variable.version in [acknowledged, acknowledged + 1]
    end

    # the killed store comes back (a new sidecar) and sees everything
    assert eventually(fn -> safe_os_pid(killed) not in [nil, old] end, 10_000)

    # (times may be presented a second apart: each sidecar rounds its BEAM's clock offset)
    for {w, _} <- results do
      assert {:ok, seen} = Store.get_variable(killed, "s", "w#{w}")
      assert {:ok, served} = Store.get_variable(serving, "s", "w#{w}")
      assert {seen.id, seen.value, seen.version} == {served.id, served.value, served.version}
    end
  end

  test "update_session is a compare-and-set across stores: a conflict retries, a raise changes nothing" do
    server = redis()
    one = store_on(server, "cas:")
    other = store_on(server, "cas:")
    {:ok, _} = Store.create_session(one, "s")
    {:ok, _} = Store.register_variable(one, "s", :t, :float, 0.5)

    assert {:error, {:update_failed, %RuntimeError{}}} =
             Store.update_session(one, "s", fn _ -> raise "boom" end)

    assert {:ok, %{metadata: %{}}} = Store.get_session(other, "s")

    runs = :counters.new(1, [])

    assert {:ok, updated} =
             Store.update_session(one, "s", fn session ->
               :counters.add(runs, 1, 1)
               # the first run: another node changes the session under it
               if :counters.get(runs, 1) == 1,
                 do: :ok = Store.update_variable(other, "s", :t, 0.9)

               %{
                 session
                 | metadata: %{seen: session.variables |> Map.values() |> hd() |> Map.get(:value)}
               }
             end)

    assert :counters.get(runs, 1) == 2
    assert updated.metadata == %{seen: 0.9}
    assert {:ok, %{metadata: %{seen: 0.9}}} = Store.get_session(other, "s")
  end

  test "with Redis stopped calls answer a storage error, and the store reconnects when it is back" do
    server = redis(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
    store = start_store(storage: {:redis, RedisServer.url(server), prefix: "down:", timeout: 300})
    {:ok, _} = Store.create_session(store, "s")
    {:ok, _} = Store.register_variable(store, "s", :t, :integer, 1)
    os_pid = Store.sidecar_info(store).os_pid

    server = RedisServer.stop(server)

    for _ <- 1..3 do
      assert {:error, {:storage_error, message}} = Store.get_variable(store, "s", :t)
      assert message =~ "unreachable"
      assert {:error, {:storage_error, _}} = Store.update_variable(store, "s", :t, 2)
    end

    assert Store.sidecar_info(store).os_pid == os_pid

    server = RedisServer.restart(server)
    on_exit(fn -> RedisServer.close(server) end)
    assert :ok = Store.update_variable(store, "s", :t, 3)
    assert {:ok, %{value: 3, version: 1}} = Store.get_variable(store, "s", :t)
    assert Store.sidecar_info(store).os_pid == os_pid
  end

  test "a Redis that cannot be reached is a clear start error, its password never shown" do
    Process.flag(:trap_exit, true)
    server = RedisServer.start()
    url = "redis://:secret@127.0.0.1:#{server.port}/0"
    RedisServer.close(server)

    assert {:error, {:storage_unavailable, message}} =
             Store.start_link(name: nil, sidecar_args: quiet_args(), storage: {:redis, url})

    assert message =~ "cannot reach Redis" and message =~ ":***@"
    refute message =~ "secret"
  end

  defp safe_os_pid(store) do
    Store.sidecar_info(store).os_pid
  catch
    :exit, _ -> nil
  end
end
