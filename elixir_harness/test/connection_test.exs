defmodule SnakepitSidecar.ConnectionTest do
  # Unnamed stores only, so these tests can run alongside each other.
  use SnakepitSidecar.SidecarCase, async: true
  @moduletag :tmp_dir
  @moduletag :capture_log

  alias SnakepitSidecar.SessionStore, as: Store

  @quiet quiet_args()

  describe "pipelining" do
    test "50 concurrent callers each get their own answers" do
      store = start_store()

      results =
        1..50
        |> Enum.map(fn i ->
          Task.async(fn ->
            sid = "conc_#{i}"
            {:ok, _} = Store.create_session(store, sid, metadata: %{i: i})
            {:ok, _} = Store.register_variable(store, sid, :x, :integer, i)
            :ok = Store.update_variable(store, sid, :x, i * 2)
            {Store.get_variable_value(store, sid, :x), Store.get_session(store, sid)}
          end)
        end)
        |> Enum.map(&Task.await(&1, 30_000))

      for {{value, {:ok, session}}, i} <- Enum.with_index(results, 1) do
        assert value == i * 2
        assert session.metadata == %{i: i}
      end

      assert length(Store.list_sessions(store)) == 50
    end

    test "a timed-out caller exits like GenServer.call; its late reply is dropped" do
      store = start_store(call_timeout: 200)
      os_pid = Store.sidecar_info(store).os_pid
      # Freeze the sidecar so no reply can come in time.
      {_, 0} = System.cmd("kill", ["-STOP", Integer.to_string(os_pid)])

      try do
        assert {:timeout, {SnakepitSidecar.Connection, :call, [^store, :list_sessions, 0]}} =
                 catch_exit(Store.list_sessions(store))

        # A per-call timeout overrides the store's.
        assert {:timeout, {SnakepitSidecar.Connection, :call, [^store, :ping, 0]}} =
                 catch_exit(Store.call(store, :ping, [], 50))
      after
        System.cmd("kill", ["-CONT", Integer.to_string(os_pid)])
      end

      # The late replies arrive and are dropped; the next call gets its own answer.
      # (generous per-call timeouts from here: the point is not speed)
      assert Store.call(store, :ping, [], 10_000) == :pong
      assert {:ok, _} = Store.call(store, :create_session, ["after_timeout"], 10_000)
      assert Store.call(store, :list_sessions, [], 10_000) == ["after_timeout"]
      assert Store.sidecar_info(store).pending_calls == 0
    end

    test "unknown calls and bad arguments are error replies, not crashes" do
      store = start_store()
      assert Store.call(store, :no_such_call, []) == {:error, {:unknown_call, :no_such_call}}
      assert {:error, {:bad_arity, :get_session, 0, _}} = Store.call(store, :get_session, [])
      assert Store.ping(store) == :pong
    end
  end

  describe "frame limits" do
    test "a request over the sidecar's limit gets an error reply, and the store goes on" do
      store = start_store(sidecar_args: @quiet ++ ["--max-frame-bytes", "10000"])

      assert %{max_frame_bytes: 10_000, compact_variables: true} =
               Store.sidecar_info(store).welcome

      big = String.duplicate("x", 20_000)

      assert {:error, {:frame_too_large, size, 10_000}} =
               Store.store_global_program(store, "big", big)

      assert size > 20_000
      assert Store.store_global_program(store, "small", "x") == :ok
    end
  end

  describe "large terms" do
    test "an embedding of 100k floats round-trips exactly" do
      store = start_store(call_timeout: 30_000)
      {:ok, _} = Store.create_session(store, "big")
      floats = for i <- 1..100_000, do: i / 7
      assert {:ok, _} = Store.register_variable(store, "big", :vec, :embedding, floats)
      assert Store.get_variable_value(store, "big", :vec) === floats
    end

    test "a 5 MB binary in program data round-trips exactly" do
      store = start_store(call_timeout: 30_000)
      blob = :crypto.strong_rand_bytes(5 * 1024 * 1024)
      program = %{weights: blob, name: "p", shape: {5, :mb}}
      assert Store.store_global_program(store, "blob", program) == :ok
      assert {:ok, got} = Store.get_global_program(store, "blob")
      assert got === program
    end
  end

  describe "sidecar faults" do
    test "killing the sidecar fails the calls in flight at once; the next call is served" do
      store = start_store()

      capture_telemetry([
        [:snakepit_sidecar, :connection, :down],
        [:snakepit_sidecar, :connection, :up]
      ])

      {:ok, _} = Store.create_session(store, "before_kill")
      old_os_pid = Store.sidecar_info(store).os_pid

      # Keep traffic flowing until told to stop, and kill -9 the sidecar in the middle of it:
      # every caller calls back to back, so some of them are in flight when it dies.
      stop = :atomics.new(1, [])

      callers =
        for i <- 1..20 do
          Task.async(fn ->
            try do
              Stream.iterate(1, &(&1 + 1))
              |> Enum.find(fn j ->
                Store.create_session(store, "t#{i}_#{j}")
                :atomics.get(stop, 1) == 1
              end)

              :all_answered
            catch
              # {:exit_status, 137} usually; {:port_exit, :epipe} when a write hits the dead pipe first
              :exit, {{:sidecar_down, _reason}, {SnakepitSidecar.Connection, :call, _}} ->
                :sidecar_down
            end
          end)
        end

      Process.sleep(50)
      SnakepitSidecar.OSProcess.kill(old_os_pid)
      Process.sleep(200)
      :atomics.put(stop, 1, 1)
      outcomes = Enum.map(callers, &Task.await(&1, 15_000))
      assert :sidecar_down in outcomes
      assert Enum.all?(outcomes, &(&1 in [:sidecar_down, :all_answered]))

      assert_receive {:telemetry_event, [:snakepit_sidecar, :connection, :down],
                      %{pending_calls: _}, %{os_pid: ^old_os_pid, reason: _}},
                     5_000

      assert_receive {:telemetry_event, [:snakepit_sidecar, :connection, :up], _,
                      %{restart: true}},
                     10_000

      # Same store process, new empty sidecar.
      assert Store.ping(store) == :pong
      refute Store.sidecar_info(store).os_pid == old_os_pid
      refute Store.session_exists?(store, "before_kill")
      eventually(fn -> not os_alive?(old_os_pid) end)
    end

    test "a store whose sidecar keeps dying stops so that its supervisor can act" do
      store = start_store()
      ref = Process.monitor(store)
      # the store's current sidecar, or nil once the store has stopped
      current_os_pid = fn ->
        try do
          Store.sidecar_info(store).os_pid
        catch
          :exit, _ -> nil
        end
      end

      for _ <- 1..4 do
        if os_pid = current_os_pid.() do
          SnakepitSidecar.OSProcess.kill(os_pid)
          eventually(fn -> current_os_pid.() != os_pid end)
        end
      end

      assert_receive {:DOWN, ^ref, :process, ^store, {:sidecar_down, {:exit_status, _}}}, 5_000
    end

    test "stopping the store ends the Python process" do
      {:ok, store} = Store.start_link(name: nil, sidecar_args: @quiet)
      os_pid = Store.sidecar_info(store).os_pid
      assert os_alive?(os_pid)
      GenServer.stop(store)
      eventually(fn -> not os_alive?(os_pid) end, 1_000)
    end

    test "killing the store process brutally also ends the Python process" do
      {:ok, store} = Store.start_link(name: nil, sidecar_args: @quiet)
      Process.unlink(store)
      os_pid = Store.sidecar_info(store).os_pid
      Process.exit(store, :kill)
      eventually(fn -> not os_alive?(os_pid) end, 2_000)
    end
  end

  describe "start options" do
    test "invalid options raise ArgumentError naming the option" do
      assert_raise ArgumentError, ~r/:cleanup_interval/, fn ->
        Store.start_link(cleanup_interval: -1)
      end

      assert_raise ArgumentError, ~r/unknown option :bogus/, fn -> Store.start_link(bogus: 1) end

      assert_raise ArgumentError, ~r/:call_timeout/, fn ->
        Store.start_link(call_timeout: "5s")
      end
    end

    test "a missing python or an unimportable sidecar is an error tuple", %{tmp_dir: dir} do
      Process.flag(:trap_exit, true)

      assert Store.start_link(name: nil, python: "/nonexistent/python3") ==
               {:error, {:python_not_found, "/nonexistent/python3"}}

      # Exits with status 1 once the hello has started to arrive, as python does when it cannot
      # import the sidecar (which takes it tens of milliseconds).
      failing = Path.join(dir, "failing_python")
      File.write!(failing, "#!/bin/sh\nhead -c 1 >/dev/null\nexit 1\n")
      File.chmod!(failing, 0o755)
      assert Store.start_link(name: nil, python: failing) == {:error, {:sidecar_exited, 1}}

      # `false` exits at once: gone before the hello is written, the port reports the broken
      # pipe instead of a status (CI saw both)
      assert {:error, {:sidecar_exited, status}} =
               Store.start_link(name: nil, python: System.find_executable("false"))

      assert status in [1, :epipe]
    end

    test "the ttl and struct options reach the sidecar" do
      store =
        start_store(default_ttl: 77, session_struct: MyApp.Session, variable_struct: MyApp.Var)

      assert {:ok, %{__struct__: MyApp.Session, ttl: 77}} = Store.create_session(store, "o")
      {:ok, _} = Store.register_variable(store, "o", :v, :integer, 1)
      assert {:ok, %{__struct__: MyApp.Var}} = Store.get_variable(store, "o", :v)
    end

    test "by default sessions and variables are SnakepitSidecar structs" do
      store = start_store()
      assert {:ok, %SnakepitSidecar.Session{}} = Store.create_session(store, "d")
      {:ok, _} = Store.register_variable(store, "d", :v, :integer, 1)
      assert {:ok, %SnakepitSidecar.Variable{}} = Store.get_variable(store, "d", :v)
    end
  end

  describe "log frames" do
    test "go to Logger at their level" do
      store = start_store(sidecar_args: ["--log-level", "error", "--log-frame-level", "info"])
      {:ok, _} = Store.create_session(store, "log")

      log =
        ExUnit.CaptureLog.capture_log([level: :info], fn ->
          {:ok, 0} = Store.import_variables(store, "log", [])
          # the log frame is handled by the store before the reply it precedes
        end)

      assert log =~ "[info]"
      assert log =~ "imported 0 variables"
    end
  end

  describe "recording" do
    test "writes every frame, both directions, in order", %{tmp_dir: dir} do
      path = Path.join(dir, "session.rec")
      {:ok, store} = Store.start_link(name: nil, record: path, sidecar_args: @quiet)
      {:ok, _} = Store.create_session(store, "rec")
      {:ok, _} = Store.register_variable(store, "rec", :x, :integer, 1)
      GenServer.stop(store)

      assert {:ok, entries} = SnakepitSidecar.Recorder.read(path)
      terms = for {direction, bytes} <- entries, do: {direction, :erlang.binary_to_term(bytes)}

      assert [{:out, {:hello, 1, %{monotonic_time: _}}}, {:in, {:welcome, 1, _}} | rest] = terms
      assert {:out, {:call, id1, :create_session, ["rec"]}} = Enum.at(rest, 0)
      assert {:in, {:reply, ^id1, {:ok, _}}} = Enum.at(rest, 1)
      assert {:out, {:call, id2, :register_variable, ["rec", :x, :integer, 1]}} = Enum.at(rest, 2)

      assert {:in, {:telemetry, [:snakepit, :session_store, :variable, :registered], _, _}} =
               Enum.at(rest, 3)

      assert {:in, {:reply, ^id2, {:ok, "var_x_" <> _}}} = Enum.at(rest, 4)
    end
  end
end
