defmodule SnakepitSidecar.DirectPathTest do
  # The request path that skips the owner process (callers write to the port themselves; see
  # SnakepitSidecar.Connection): timeouts, late replies, owner crashes, restarts, recording.
  use SnakepitSidecar.SidecarCase, async: true
  @moduletag :tmp_dir
  @moduletag :capture_log

  alias SnakepitSidecar.SessionStore, as: Store

  @quiet quiet_args()

  defp direct_path(store), do: :persistent_term.get({SnakepitSidecar.Connection, store}, nil)

  defp with_sidecar_stopped(store, fun) do
    os_pid = Integer.to_string(Store.sidecar_info(store).os_pid)
    {_, 0} = System.cmd("kill", ["-STOP", os_pid])

    try do
      fun.()
    after
      System.cmd("kill", ["-CONT", os_pid])
    end
  end

  test "a timed-out caller's late reply is dropped: no table entry, no stray message" do
    store = start_store()
    assert {_port, _table, _ids, _alive, _timeout} = direct_path(store)

    with_sidecar_stopped(store, fn ->
      for _ <- 1..5 do
        assert {:timeout, {SnakepitSidecar.Connection, :call, [^store, :ping, 0]}} =
                 catch_exit(Store.call(store, :ping, [], 30))
      end

      # the timed-out callers removed their own entries
      assert Store.sidecar_info(store).pending_calls == 0
    end)

    # the five late replies arrive now and are dropped by the store
    assert Store.call(store, :ping, [], 10_000) == :pong
    Process.sleep(50)
    assert Store.sidecar_info(store).pending_calls == 0
    assert Process.info(self(), :messages) == {:messages, []}
  end

  test "64 concurrent callers with random per-call timeouts all get their own replies" do
    store = start_store()

    outcomes =
      1..64
      |> Enum.map(fn i ->
        Task.async(fn ->
          results =
            for j <- 1..40 do
              sid = "r#{i}_#{j}"

              try do
                {:ok, %{id: ^sid}} = Store.call(store, :create_session, [sid], Enum.random(1..40))
                :answered
              catch
                :exit,
                {:timeout, {SnakepitSidecar.Connection, :call, [^store, :create_session, 1]}} ->
                  :timed_out
              end
            end

          # nothing stray in a caller's mailbox, whichever way its calls ended
          {:messages, []} = Process.info(self(), :messages)
          results
        end)
      end)
      |> Enum.flat_map(&Task.await(&1, 60_000))

    assert length(outcomes) == 64 * 40
    assert :answered in outcomes
    # every entry is gone once the late replies have come back
    eventually(fn -> Store.sidecar_info(store).pending_calls == 0 end)
    assert Store.ping(store) == :pong
  end

  test "a caller waiting on the direct path exits at once when the store is killed" do
    {:ok, store} = Store.start_link(name: nil, sidecar_args: @quiet, call_timeout: :infinity)
    Process.unlink(store)
    assert direct_path(store)

    with_sidecar_stopped(store, fn ->
      caller = Task.async(fn -> catch_exit(Store.ping(store)) end)
      eventually(fn -> Store.sidecar_info(store).pending_calls == 1 end)
      Process.exit(store, :kill)

      assert {:killed, {GenServer, :call, [^store, {:call, :ping, [], nil}, :infinity]}} =
               Task.await(caller, 2_000)
    end)

    # a stale entry of a killed store does not break callers: they get the usual exit
    assert {:noproc, _} = catch_exit(Store.ping(store))
  end

  test "after the sidecar dies, the direct path is reopened on the new port" do
    store = start_store()
    {old_port, table, _, old_alive, _} = direct_path(store)
    old_os_pid = Store.sidecar_info(store).os_pid
    SnakepitSidecar.OSProcess.kill(old_os_pid)
    eventually(fn -> Store.sidecar_info(store).os_pid not in [nil, old_os_pid] end, 10_000)

    {new_port, ^table, _, new_alive, _} = direct_path(store)
    refute new_port == old_port
    assert :atomics.get(old_alive, 1) == 0
    assert :atomics.get(new_alive, 1) == 1
    assert Store.ping(store) == :pong
  end

  test "a store that records sends every request through its owner (no direct path)", %{
    tmp_dir: dir
  } do
    store = start_store(record: Path.join(dir, "r.rec"))
    assert direct_path(store) == nil
    assert Store.ping(store) == :pong
  end

  test "a stopped store leaves no direct path behind" do
    {:ok, store} = Store.start_link(name: nil, sidecar_args: @quiet)
    assert direct_path(store)
    GenServer.stop(store)
    assert direct_path(store) == nil
  end

  test "a registered name takes the direct path too" do
    name = :"direct_path_#{System.unique_integer([:positive])}"
    store = start_store(name: name)
    assert direct_path(store)
    assert Store.ping(name) == :pong
    assert Store.call(name, :no_such_call, []) == {:error, {:unknown_call, :no_such_call}}
  end
end
