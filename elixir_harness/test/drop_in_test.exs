defmodule SnakepitSidecar.DropInTest do
  # Uses the registered name Snakepit.Bridge.SessionStore: not async.
  use SnakepitSidecar.SidecarCase
  @moduletag :capture_log

  alias Snakepit.Bridge.SessionStore

  @original_api [
    start_link: 0,
    start_link: 1,
    child_spec: 1,
    create_session: 1,
    create_session: 2,
    create_session: 3,
    get_session: 1,
    get_session: 2,
    update_session: 2,
    update_session: 3,
    delete_session: 1,
    delete_session: 2,
    session_exists?: 1,
    session_exists?: 2,
    list_sessions: 0,
    list_sessions: 1,
    cleanup_expired_sessions: 0,
    cleanup_expired_sessions: 1,
    get_stats: 0,
    get_stats: 1,
    store_worker_session: 2,
    store_worker_session: 3,
    store_global_program: 2,
    store_global_program: 3,
    get_global_program: 1,
    get_global_program: 2,
    delete_global_program: 1,
    delete_global_program: 2,
    store_program: 3,
    store_program: 4,
    update_program: 3,
    update_program: 4,
    get_program: 2,
    get_program: 3,
    register_variable: 4,
    register_variable: 5,
    register_variable: 6,
    get_variable: 2,
    get_variable: 3,
    get_variable_value: 2,
    get_variable_value: 3,
    get_variable_value: 4,
    update_variable: 3,
    update_variable: 4,
    update_variable: 5,
    delete_variable: 2,
    delete_variable: 3,
    has_variable?: 2,
    has_variable?: 3,
    list_variables: 1,
    list_variables: 2,
    list_variables: 3,
    get_variables: 2,
    get_variables: 3,
    update_variables: 2,
    update_variables: 3,
    update_variables: 4,
    export_variables: 1,
    export_variables: 2,
    import_variables: 2,
    import_variables: 3
  ]

  test "the drop-in exports the original's functions, with and without a server" do
    exported = SessionStore.__info__(:functions)

    for {name, arity} <- @original_api,
        do: assert({name, arity} in exported, "missing #{name}/#{arity}")
  end

  test "the struct modules exist, with the contract's fields and defaults" do
    assert %Snakepit.Bridge.Session{}.stats ==
             %{variable_count: 0, program_count: 0, total_variable_updates: 0}

    assert %Snakepit.Bridge.Variables.Variable{}.optimization_status.optimizing == false
    assert %Snakepit.Bridge.Variables.Variable{}.access_rules == []
  end

  test "start_link/0 registers the module's name; a second start is already_started" do
    assert {:ok, pid} = SessionStore.start_link()
    assert Process.whereis(SessionStore) == pid
    assert SessionStore.start_link() == {:error, {:already_started, pid}}
    assert SessionStore.start_link([]) == {:error, {:already_started, pid}}
    GenServer.stop(pid)
  end

  test "child_spec/1 starts it under a supervisor, which restarts it when it dies" do
    assert %{id: SessionStore, start: {SessionStore, :start_link, [[]]}} =
             SessionStore.child_spec([])

    {:ok, sup} = Supervisor.start_link([SessionStore], strategy: :one_for_one)
    first = Process.whereis(SessionStore)
    {:ok, _} = SessionStore.create_session("sup_s")
    os_pid = SessionStore.sidecar_info().os_pid

    Process.exit(first, :kill)
    eventually(fn -> (pid = Process.whereis(SessionStore)) && pid != first end)
    eventually(fn -> not os_alive?(os_pid) end)

    # A new store with a new, empty sidecar.
    assert SessionStore.session_exists?("sup_s") == false
    assert {:ok, %Snakepit.Bridge.Session{}} = SessionStore.create_session("sup_s")
    Supervisor.stop(sup)
    refute Process.whereis(SessionStore)
  end

  test "calling a store that is not running exits like GenServer.call" do
    refute Process.whereis(SessionStore)
    assert {:noproc, {GenServer, :call, _}} = catch_exit(SessionStore.list_sessions())
  end
end
