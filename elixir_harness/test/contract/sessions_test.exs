defmodule SnakepitSidecar.Contract.SessionsTest do
  @moduledoc ~s(Contract rows of docs/contract.md, "Sessions", through the real port.)
  use SnakepitSidecar.SidecarCase, drop_in: true

  describe "create_session" do
    test "returns a %Snakepit.Bridge.Session{} with the contract's fields" do
      id = unique_id()
      now = System.monotonic_time(:second)

      assert {:ok, %Session{} = session} =
               SessionStore.create_session(id,
                 ttl: 120,
                 metadata: %{user: "u"},
                 last_worker_id: "w1"
               )

      assert session.id == id
      assert session.ttl == 120
      assert session.metadata == %{user: "u"}
      assert session.last_worker_id == "w1"
      assert session.programs == %{}
      assert session.variables == %{}
      assert session.variable_index == %{}
      assert session.stats == %{variable_count: 0, program_count: 0, total_variable_updates: 0}
      # timestamps are on this node's monotonic clock, in whole seconds
      assert is_integer(session.created_at) and abs(session.created_at - now) <= 2
      assert session.last_accessed == session.created_at
    end

    test "defaults: the store's default ttl, empty metadata and programs" do
      assert {:ok, session} = SessionStore.create_session(unique_id())
      assert session.ttl == 3600
      assert session.metadata == %{}
      assert session.last_worker_id == nil
    end

    test "programs given at creation are kept" do
      assert {:ok, session} =
               SessionStore.create_session(unique_id(), programs: %{"p" => {:prog, 1}})

      assert session.programs == %{"p" => {:prog, 1}}
    end

    test "an existing id returns the existing session untouched" do
      id = unique_id()
      {:ok, first} = SessionStore.create_session(id, metadata: %{v: 1})
      assert {:ok, again} = SessionStore.create_session(id, metadata: %{v: 2}, ttl: 5)
      assert again == first
    end

    test "concurrent creates of one id all get the same session" do
      id = unique_id()

      results =
        1..10
        |> Enum.map(fn i ->
          Task.async(fn -> SessionStore.create_session(id, metadata: %{by: i}) end)
        end)
        |> Enum.map(&Task.await/1)

      assert [{:ok, session}] = Enum.uniq(results)
      assert session.id == id
      assert SessionStore.get_stats().sessions_created >= 1
    end

    test "validation errors" do
      assert SessionStore.create_session("") == {:error, :invalid_id}
      assert SessionStore.create_session(unique_id(), ttl: -1) == {:error, :invalid_ttl}
      assert SessionStore.create_session(unique_id(), ttl: 1.5) == {:error, :invalid_ttl}

      assert SessionStore.create_session(unique_id(), metadata: [1]) ==
               {:error, :invalid_metadata}

      assert SessionStore.create_session(unique_id(), programs: :x) == {:error, :invalid_programs}
    end

    test "the server-first forms reach the same store" do
      id = unique_id()
      assert {:ok, _} = SessionStore.create_session(SessionStore, id)
      assert {:ok, s} = SessionStore.create_session(SessionStore, unique_id(), ttl: 9)
      assert s.ttl == 9
      assert SessionStore.session_exists?(SessionStore, id)
    end
  end

  describe "get / exists / list / delete" do
    test "get_session returns the session; missing is :not_found" do
      id = unique_id()
      {:ok, created} = SessionStore.create_session(id)
      assert {:ok, %Session{id: ^id} = got} = SessionStore.get_session(id)
      assert got.last_accessed >= created.last_accessed
      assert SessionStore.get_session(unique_id("missing")) == {:error, :not_found}
    end

    test "session_exists? is a boolean" do
      id = unique_id()
      assert SessionStore.session_exists?(id) === false
      {:ok, _} = SessionStore.create_session(id)
      assert SessionStore.session_exists?(id) === true
    end

    test "list_sessions lists ids; delete_session is always :ok" do
      id = unique_id()
      {:ok, _} = SessionStore.create_session(id)
      assert id in SessionStore.list_sessions()
      assert SessionStore.delete_session(id) == :ok
      refute id in SessionStore.list_sessions()
      assert SessionStore.delete_session(id) == :ok
      assert SessionStore.get_session(id) == {:error, :not_found}
    end

    test "store_worker_session sets last_worker_id, creating the session if missing" do
      id = unique_id()
      assert SessionStore.store_worker_session(id, "worker_1") == :ok
      assert {:ok, %Session{last_worker_id: "worker_1"}} = SessionStore.get_session(id)
      assert SessionStore.store_worker_session(id, "worker_2") == :ok
      assert {:ok, %Session{last_worker_id: "worker_2"}} = SessionStore.get_session(id)
    end
  end

  describe "update_session" do
    test "stores fun's result, touched" do
      id = unique_id()
      {:ok, _} = SessionStore.create_session(id)

      assert {:ok, %Session{metadata: %{"k" => :v}}} =
               SessionStore.update_session(id, fn s -> %{s | metadata: %{"k" => :v}} end)

      assert {:ok, %Session{metadata: %{"k" => :v}}} = SessionStore.get_session(id)
    end

    test "fun runs in the caller's process" do
      id = unique_id()
      {:ok, _} = SessionStore.create_session(id)
      caller = self()

      {:ok, _} =
        SessionStore.update_session(id, fn s ->
          send(caller, {:ran_in, self()})
          s
        end)

      assert_received {:ran_in, ^caller}
    end

    test "missing session, raising fun, invalid result" do
      assert SessionStore.update_session(unique_id(), & &1) == {:error, :not_found}

      id = unique_id()
      {:ok, _} = SessionStore.create_session(id, metadata: %{keep: true})

      assert {:error, {:update_failed, %ArgumentError{message: "nope"}}} =
               SessionStore.update_session(id, fn _ -> raise ArgumentError, "nope" end)

      assert SessionStore.update_session(id, fn s -> %{s | ttl: -5} end) == {:error, :invalid_ttl}

      assert SessionStore.update_session(id, fn s -> %{s | metadata: nil} end) ==
               {:error, :invalid_metadata}

      assert {:ok, %Session{metadata: %{keep: true}, ttl: 3600}} = SessionStore.get_session(id)
    end

    test "25 concurrent increments give 25" do
      id = unique_id()
      {:ok, _} = SessionStore.create_session(id, metadata: %{"counter" => 0})

      1..25
      |> Enum.map(fn _ ->
        Task.async(fn ->
          SessionStore.update_session(id, fn s ->
            %{s | metadata: Map.update!(s.metadata, "counter", &(&1 + 1))}
          end)
        end)
      end)
      |> Enum.each(fn task -> assert {:ok, _} = Task.await(task, 30_000) end)

      assert {:ok, %Session{metadata: %{"counter" => 25}}} = SessionStore.get_session(id)
    end

    test "a slow fun does not block other callers" do
      id = unique_id()
      {:ok, _} = SessionStore.create_session(id)
      test_pid = self()

      slow =
        Task.async(fn ->
          SessionStore.update_session(id, fn s ->
            send(test_pid, :fun_started)
            receive do: (:go_on -> :ok)
            %{s | metadata: %{slow: true}}
          end)
        end)

      assert_receive :fun_started, 5_000
      # While the fun is suspended, the store serves everyone else.
      other = unique_id()
      assert {:ok, _} = SessionStore.create_session(other)
      assert SessionStore.session_exists?(other)
      send(slow.pid, :go_on)
      assert {:ok, %Session{metadata: %{slow: true}}} = Task.await(slow)
    end
  end

  describe "expiry and stats" do
    test "cleanup_expired_sessions removes sessions whose ttl has passed" do
      expired = unique_id("exp")
      alive = unique_id("alive")
      {:ok, _} = SessionStore.create_session(expired, ttl: 0)
      {:ok, _} = SessionStore.create_session(alive, ttl: 3600)
      before = SessionStore.get_stats()
      # ttl 0 expires once the clock's whole second moves on: last_accessed + 0 < now
      Process.sleep(1_100)
      assert SessionStore.cleanup_expired_sessions() >= 1
      refute SessionStore.session_exists?(expired)
      assert SessionStore.session_exists?(alive)
      after_cleanup = SessionStore.get_stats()
      assert after_cleanup.sessions_expired >= before.sessions_expired + 1
      assert after_cleanup.cleanup_runs >= before.cleanup_runs + 1
    end

    test "get_stats has every contract key with integer values" do
      stats = SessionStore.get_stats()

      for key <- [
            :sessions_created,
            :sessions_deleted,
            :sessions_expired,
            :cleanup_runs,
            :global_programs_stored,
            :global_programs_deleted,
            :global_programs_expired,
            :current_sessions,
            :memory_usage_bytes
          ] do
        assert is_integer(Map.fetch!(stats, key)), "#{key} missing or not an integer"
      end

      id = unique_id()
      {:ok, _} = SessionStore.create_session(id)
      :ok = SessionStore.delete_session(id)
      later = SessionStore.get_stats()
      assert later.sessions_created == stats.sessions_created + 1
      assert later.sessions_deleted == stats.sessions_deleted + 1
    end
  end
end
