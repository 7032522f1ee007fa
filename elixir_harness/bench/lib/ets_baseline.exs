defmodule Bench.EtsBaseline do
  @moduledoc """
  The in-BEAM baseline of the read-cache pass (issue 15): a GenServer over ETS that, like the ETS
  original (`Snakepit.Bridge.SessionStore`), keeps each session as one term in a table and reads
  and writes the whole session on every call. `get_variable` looks the session up, finds the
  variable by id or name, touches the session (writes it back with a new `last_accessed`) and
  emits `:get`; `update_variable` looks it up, checks the value against the type (a float),
  builds the new variable (value, version + 1, `last_updated_at`, metadata with `"source"` and
  an ISO 8601 `"updated_at"`), writes the whole session back with the new stats and
  `last_accessed`, and emits `:updated`. Sessions of float variables, as the cells use.
  """
  use GenServer

  def start_link, do: GenServer.start_link(__MODULE__, nil)

  def create_session(server, sid, size), do: GenServer.call(server, {:create, sid, size}, 60_000)

  def get_variable(server, sid, ident), do: GenServer.call(server, {:get, sid, ident})

  def update_variable(server, sid, ident, value),
    do: GenServer.call(server, {:update, sid, ident, value})

  @impl true
  def init(nil), do: {:ok, :ets.new(__MODULE__, [:set, :protected])}

  @impl true
  def handle_call({:create, sid, size}, _from, table) do
    now = System.monotonic_time(:second)

    variables =
      for i <- 0..(size - 1), into: %{} do
        id = "var_v#{i}_#{i + 1}"

        {id,
         %SnakepitSidecar.Variable{
           id: id,
           name: :"v#{i}",
           type: :float,
           value: 0.0,
           constraints: %{},
           metadata: %{"source" => "elixir", "created_by" => "session_store"},
           version: 0,
           created_at: now,
           last_updated_at: now
         }}
      end

    index = Map.new(variables, fn {id, var} -> {Atom.to_string(var.name), id} end)

    session = %{
      id: sid,
      created_at: now,
      last_accessed: now,
      ttl: 3600,
      programs: %{},
      metadata: %{},
      variables: variables,
      variable_index: index,
      stats: %{variable_count: size, program_count: 0, total_variable_updates: 0}
    }

    :ets.insert(table, {sid, session})
    {:reply, :ok, table}
  end

  def handle_call({:get, sid, ident}, _from, table) do
    case :ets.lookup(table, sid) do
      [{^sid, session}] ->
        case find(session, ident) do
          nil ->
            {:reply, {:error, :not_found}, table}

          variable ->
            :ets.insert(table, {sid, %{session | last_accessed: System.monotonic_time(:second)}})

            :telemetry.execute([:snakepit, :session_store, :variable, :get], %{count: 1}, %{
              session_id: sid,
              cache_hit: false
            })

            {:reply, {:ok, variable}, table}
        end

      [] ->
        {:reply, {:error, :session_not_found}, table}
    end
  end

  def handle_call({:update, sid, ident, value}, _from, table) do
    with [{^sid, session}] <- :ets.lookup(table, sid),
         %{} = variable <- find(session, ident),
         true <- is_number(value) do
      now = System.monotonic_time(:second)

      metadata =
        Map.merge(variable.metadata, %{
          "source" => "elixir",
          "updated_at" => DateTime.utc_now() |> DateTime.to_iso8601()
        })

      updated = %{
        variable
        | value: value / 1,
          version: variable.version + 1,
          last_updated_at: now,
          metadata: metadata
      }

      stats = Map.update!(session.stats, :total_variable_updates, &(&1 + 1))

      session = %{
        session
        | variables: Map.put(session.variables, variable.id, updated),
          stats: stats,
          last_accessed: now
      }

      :ets.insert(table, {sid, session})

      :telemetry.execute(
        [:snakepit, :session_store, :variable, :updated],
        %{count: 1, version: updated.version},
        %{session_id: sid, type: :float}
      )

      {:reply, :ok, table}
    else
      _ -> {:reply, {:error, :rejected}, table}
    end
  end

  defp find(session, ident) do
    key = to_string(ident)

    Map.get(session.variables, key) ||
      Map.get(session.variables, Map.get(session.variable_index, key))
  end
end
