# The harness doing what DSPex does with Snakepit's SessionStore, against the Python sidecar.
#
#     cd elixir_harness && mix run demo.exs
#
# Needs python3 with the sidecar's dependencies; the `sidecar` package is found through the
# repository root (or installed with `pip install -e .` at the root).

defmodule Snakepit.Bridge.SessionStore do
  @moduledoc "Snakepit's SessionStore, replaced by the drop-in: DSPex code calls it unchanged."
  use SnakepitSidecar.DropIn
end

defmodule Demo.TelemetryPrinter do
  @moduledoc """
  Prints telemetry events as they happen. The demo has no :telemetry dependency, so when
  :telemetry is not available it defines a tiny stand-in with the same calling shape.
  """

  def install(events) do
    unless Code.ensure_loaded?(:telemetry), do: define_stand_in()
    :telemetry.attach_many("demo-printer", events, &__MODULE__.handle/4, nil)
  end

  def handle(event, measurements, metadata, _config) do
    shown = Map.drop(metadata, [:server])

    measurements =
      case measurements do
        %{duration: native} ->
          measurements
          |> Map.drop([:duration, :system_time])
          |> Map.put(:duration_ms, System.convert_time_unit(native, :native, :millisecond))

        other ->
          Map.delete(other, :system_time)
      end

    IO.puts(
      "    \e[2mtelemetry #{inspect(event)} #{inspect(measurements)} #{inspect(shown)}\e[0m"
    )
  end

  defp define_stand_in do
    Code.compile_string("""
    defmodule :telemetry do
      @moduledoc "Demo stand-in for :telemetry (execute/3, attach_many/4, detach/1)."
      def attach_many(id, events, fun, config) do
        :persistent_term.put({__MODULE__, id}, {events, fun, config})
        :ok
      end

      def detach(id) do
        :persistent_term.erase({__MODULE__, id})
        :ok
      end

      def execute(event, measurements, metadata) do
        for {{__MODULE__, _id}, {events, fun, config}} <- :persistent_term.get(),
            event in events,
            do: fun.(event, measurements, metadata, config)

        :ok
      end
    end
    """)
  end
end

defmodule Demo do
  @moduledoc "The steps of the demo."
  alias Snakepit.Bridge.SessionStore, as: Store

  def step(title), do: IO.puts("\n\e[1m== #{title}\e[0m")
  def show(label, value), do: IO.puts("  #{label}: #{inspect(value, pretty: true, limit: 12)}")

  def run do
    Demo.TelemetryPrinter.install(
      SnakepitSidecar.Telemetry.sidecar_events() ++
        [[:snakepit_sidecar, :connection, :up], [:snakepit_sidecar, :connection, :down]]
    )

    step("Start a supervisor with the store under it")

    {:ok, sup} =
      Supervisor.start_link(
        [{Store, cleanup_interval: 30_000, sidecar_args: ["--log-level", "warning"]}],
        strategy: :one_for_one
      )

    show("store", Process.whereis(Store))
    show("sidecar os pid", Store.sidecar_info().os_pid)

    step("A context session")
    {:ok, session} = Store.create_session("ctx_demo", ttl: 600, metadata: %{owner: "dspex"})
    show("session", Map.take(session, [:__struct__, :id, :ttl, :metadata]))

    step("Variables of several types, with constraints")

    {:ok, temp_id} =
      Store.register_variable("ctx_demo", :temperature, :float, 0.7,
        constraints: %{min: 0.0, max: 2.0},
        description: "LLM sampling temperature"
      )

    show("temperature id", temp_id)

    {:ok, _} =
      Store.register_variable("ctx_demo", :max_tokens, :integer, 256,
        constraints: %{min: 1, max: 4096}
      )

    {:ok, _} =
      Store.register_variable("ctx_demo", "model", :choice, "gpt-4",
        constraints: %{choices: ["gpt-4", "claude"]}
      )

    {:ok, _} = Store.register_variable("ctx_demo", :verbose, :boolean, "false")

    {:ok, _} =
      Store.register_variable("ctx_demo", :style, :string, "concise",
        constraints: %{max_length: 20}
      )

    {:ok, _} =
      Store.register_variable("ctx_demo", :query_vec, :embedding, [0.1, 0.2, 0.3],
        constraints: %{dimensions: 3}
      )

    step("Read them")
    show("temperature", Store.get_variable_value("ctx_demo", :temperature))
    show("verbose (\"false\" coerced)", Store.get_variable_value("ctx_demo", :verbose))
    {:ok, vars} = Store.list_variables("ctx_demo")
    show("names in registration order", Enum.map(vars, & &1.name))

    show(
      "get_variables",
      Store.get_variables("ctx_demo", [:temperature, :missing])
      |> elem(1)
      |> Map.update!(:found, &Map.keys/1)
    )

    step("Update one by one")
    show("temperature := 1.2", Store.update_variable("ctx_demo", :temperature, 1.2))
    show("temperature := 5.0", Store.update_variable("ctx_demo", :temperature, 5.0))
    show("max_tokens := 1.5", Store.update_variable("ctx_demo", :max_tokens, 1.5))
    {:ok, temperature} = Store.get_variable("ctx_demo", :temperature)
    show("temperature now", Map.take(temperature, [:value, :version]))

    step("Batch updates")
    show("non-atomic", Store.update_variables("ctx_demo", %{temperature: 0.3, max_tokens: 0}))

    show(
      "atomic, rejected",
      Store.update_variables("ctx_demo", %{temperature: 0.9, style: 42}, atomic: true)
    )

    show(
      "temperature unchanged by the rejected batch",
      Store.get_variable_value("ctx_demo", :temperature)
    )

    show(
      "atomic, accepted",
      Store.update_variables("ctx_demo", %{temperature: 0.9, style: "terse"}, atomic: true)
    )

    step("Export into a second session")
    {:ok, exported} = Store.export_variables("ctx_demo")
    {:ok, _} = Store.create_session("ctx_copy")
    show("import_variables", Store.import_variables("ctx_copy", exported))
    show("copy's temperature", Store.get_variable_value("ctx_copy", "temperature"))

    step("Programs")
    program = %{signature: {:chain_of_thought, [:question], [:answer]}, demos: [], lm: "gpt-4"}
    show("store_program", Store.store_program("ctx_demo", "prog_1", program))

    show(
      "get_program round-trips exactly",
      Store.get_program("ctx_demo", "prog_1") == {:ok, program}
    )

    show("store_global_program", Store.store_global_program("anon_prog", program))

    show(
      "update_session (runs here, atomically)",
      Store.update_session("ctx_demo", fn s -> %{s | metadata: Map.put(s.metadata, :runs, 1)} end)
      |> then(fn {:ok, s} -> s.metadata end)
    )

    show(
      "stats",
      Map.take(Store.get_stats(), [:sessions_created, :current_sessions, :global_programs_stored])
    )

    step("Kill the sidecar with SIGKILL: the store starts a new one (in memory: empty)")
    old_os_pid = Store.sidecar_info().os_pid
    SnakepitSidecar.OSProcess.kill(old_os_pid)
    wait_until(fn -> Store.sidecar_info().os_pid not in [nil, old_os_pid] end)
    show("new sidecar os pid", Store.sidecar_info().os_pid)
    show("session survived?", Store.session_exists?("ctx_demo"))

    step("Kill the store process: the supervisor restarts it (and a new sidecar)")
    old_store = Process.whereis(Store)
    Process.exit(old_store, :kill)
    wait_until(fn -> (pid = Process.whereis(Store)) && pid != old_store end)
    show("store was", old_store)
    show("store now", Process.whereis(Store))
    show("serving again", Store.create_session("after_restart") |> elem(0))

    Supervisor.stop(sup)
    Demo.Durable.run()
    Demo.Redis.run()

    step("Stop")
    IO.puts("  done.")
  end

  def wait_until(fun, tries \\ 250) do
    cond do
      safe(fun) -> :ok
      tries == 0 -> raise "timed out waiting"
      true -> Process.sleep(20) && wait_until(fun, tries - 1)
    end
  end

  defp safe(fun) do
    fun.()
  catch
    :exit, _ -> false
  end
end

defmodule Demo.Durable do
  @moduledoc """
  The same store on SQLite (`storage: {:sqlite, path}`): 16 callers write while the sidecar is
  killed with SIGKILL, and every write that was acknowledged is still there afterwards, in the
  restarted sidecar and in a store started again on the same file.
  """
  import Demo, only: [step: 1, show: 2, wait_until: 1]
  alias SnakepitSidecar.SessionStore, as: Store

  @writers 16

  def run do
    # one line per write would drown the story: only the sidecar's coming and going from here
    :telemetry.detach("demo-printer")

    :telemetry.attach_many(
      "demo-durable-printer",
      [[:snakepit_sidecar, :connection, :up], [:snakepit_sidecar, :connection, :down]],
      &Demo.TelemetryPrinter.handle/4,
      nil
    )

    dir =
      Path.join(System.tmp_dir!(), "snakepit_sidecar_demo_#{System.unique_integer([:positive])}")

    File.mkdir_p!(dir)
    path = Path.join(dir, "store.db")

    opts = [
      name: Demo.DurableStore,
      storage: {:sqlite, path},
      sidecar_args: ["--log-level", "error"]
    ]

    step("Durable storage: the same store on SQLite (#{path})")
    {:ok, sup} = Supervisor.start_link([{Store, opts}], strategy: :one_for_one)
    store = Demo.DurableStore
    {:ok, _} = Store.create_session(store, "ctx_durable", ttl: 3600, metadata: %{owner: "dspex"})

    for w <- 1..@writers do
      {:ok, _} = Store.register_variable(store, "ctx_durable", "counter_#{w}", :integer, 0)
    end

    step(
      "#{@writers} callers update their counters as fast as they can; the sidecar gets SIGKILL"
    )

    parent = self()
    killed = :atomics.new(1, [])

    tasks =
      for w <- 1..@writers do
        Task.async(fn -> write_until_down(store, w, parent, killed) end)
      end

    for w <- 1..@writers, do: receive(do: ({:warm, ^w} -> :ok))
    old_os_pid = Store.sidecar_info(store).os_pid
    SnakepitSidecar.OSProcess.kill(old_os_pid)
    :atomics.put(killed, 1, 1)
    acknowledged = Task.await_many(tasks, 30_000)
    wait_until(fn -> Store.sidecar_info(store).os_pid not in [nil, old_os_pid] end)
    show("killed sidecar", old_os_pid)
    show("new sidecar", Store.sidecar_info(store).os_pid)

    show(
      "writes acknowledged before the kill",
      acknowledged |> Enum.map(&elem(&1, 1)) |> Enum.sum()
    )

    lost =
      for {w, count} <- acknowledged, reduce: 0 do
        lost ->
          {:ok, variable} = Store.get_variable(store, "ctx_durable", "counter_#{w}")
          lost + max(count - variable.version, 0)
      end

    show("acknowledged writes lost", lost)
    {:ok, session} = Store.get_session(store, "ctx_durable")
    show("session after the kill", Map.take(session, [:id, :metadata, :stats]))

    step("Stop the whole store, start it again on the same file")
    Supervisor.stop(sup)
    {:ok, sup} = Supervisor.start_link([{Store, opts}], strategy: :one_for_one)
    {:ok, again} = Store.get_session(store, "ctx_durable")
    show("same session", again.stats == session.stats and again.metadata == session.metadata)
    {:ok, vars} = Store.list_variables(store, "ctx_durable")
    show("counters (name => version)", Map.new(vars, &{&1.name, &1.version}))
    Supervisor.stop(sup)
    File.rm_rf!(dir)
    if lost != 0, do: raise("#{lost} acknowledged writes were lost")
  end

  # Until its call in flight fails with the sidecar, or (a caller between two calls at the kill
  # has none in flight: its next call would wait for the new sidecar) the kill is done.
  defp write_until_down(store, w, parent, killed) do
    Enum.reduce_while(Stream.iterate(1, &(&1 + 1)), 0, fn n, acknowledged ->
      if n == 100, do: send(parent, {:warm, w})

      try do
        if :atomics.get(killed, 1) == 1, do: throw(:killed)
        :ok = Store.update_variable(store, "ctx_durable", "counter_#{w}", n)
        {:cont, acknowledged + 1}
      catch
        :exit, {{:sidecar_down, _}, _} -> {:halt, {w, acknowledged}}
        :killed -> {:halt, {w, acknowledged}}
      end
    end)
  end
end

defmodule Demo.Redis do
  @moduledoc """
  The Redis part: two stores (two sidecars) on one Redis act as one store; one store's sidecar
  is killed with SIGKILL and the other keeps serving every session. Uses a redis-server of its
  own on a free port (skipped with a note when redis-server is not installed).
  """

  alias SnakepitSidecar.SessionStore, as: Store
  import Demo, only: [step: 1, show: 2]

  def run do
    Code.require_file("test/support/redis_server.ex", __DIR__)
    redis_server = Module.concat([SnakepitSidecar, RedisServer])

    if redis_server.executable() == nil do
      step("Redis: skipped (redis-server is not installed; scripts/setup installs it)")
    else
      server = redis_server.start()

      try do
        two_stores(redis_server.url(server))
      after
        redis_server.close(server)
      end
    end
  end

  defp two_stores(url) do
    step("Redis: two stores, each with its own sidecar, on one Redis (#{url})")

    opts = [
      name: nil,
      storage: {:redis, url, prefix: "demo:"},
      sidecar_args: ["--log-level", "error"]
    ]

    {:ok, node_a} = Store.start_link(opts)
    {:ok, node_b} = Store.start_link(opts)

    show(
      "sidecar os pids",
      {Store.sidecar_info(node_a).os_pid, Store.sidecar_info(node_b).os_pid}
    )

    {:ok, _} = Store.create_session(node_a, "shared_ctx", metadata: %{made_on: :node_a})
    {:ok, id} = Store.register_variable(node_a, "shared_ctx", :temperature, :float, 0.7)
    show("node A registered", id)
    :ok = Store.update_variable(node_b, "shared_ctx", :temperature, 0.9)

    show(
      "node B updated it; node A reads",
      Store.get_variable_value(node_a, "shared_ctx", :temperature)
    )

    {:ok, _} = Store.create_session(node_b, "made_on_b")
    show("node A sees node B's session", Store.session_exists?(node_a, "made_on_b"))

    show(
      "global stats from node B",
      Map.take(Store.get_stats(node_b), [:sessions_created, :current_sessions])
    )

    step("Redis: kill node A's sidecar with SIGKILL; node B keeps serving every session")
    old = Store.sidecar_info(node_a).os_pid
    SnakepitSidecar.OSProcess.kill(old)
    show("node B reads shared_ctx", Store.get_variable_value(node_b, "shared_ctx", :temperature))
    :ok = Store.update_variable(node_b, "shared_ctx", :temperature, 1.1)

    show(
      "node B updated it again",
      Store.get_variable(node_b, "shared_ctx", :temperature)
      |> elem(1)
      |> Map.take([:value, :version])
    )

    wait_for_new_sidecar(node_a, old)
    show("node A is back with a new sidecar", Store.sidecar_info(node_a).os_pid)

    show(
      "and sees everything",
      Store.get_variable(node_a, "shared_ctx", :temperature)
      |> elem(1)
      |> Map.take([:value, :version])
    )

    show("sessions from node A", Enum.sort(Store.list_sessions(node_a)))
    GenServer.stop(node_a)
    GenServer.stop(node_b)
  end

  defp wait_for_new_sidecar(store, old, tries \\ 250) do
    os_pid =
      try do
        Store.sidecar_info(store).os_pid
      catch
        :exit, _ -> nil
      end

    cond do
      os_pid not in [nil, old] -> :ok
      tries == 0 -> raise "timed out waiting for a new sidecar"
      true -> Process.sleep(20) && wait_for_new_sidecar(store, old, tries - 1)
    end
  end
end

Logger.configure(level: :warning)
Demo.run()
