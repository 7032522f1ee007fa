# A stand-in for the :telemetry library, for this project's own tests only (test/support is
# compiled in the :test environment of this project, never into an application that depends on
# it). It is defined only when no real :telemetry can be found.
unless Code.ensure_loaded?(:telemetry) do
  defmodule :telemetry do
    @moduledoc """
    Test stand-in for `:telemetry` with the same calling shape: `attach/4`, `attach_many/4`,
    `detach/1`, `execute/3`, `list_handlers/1`. Handlers live in a public ETS table owned by a
    long-lived process. A handler that raises is detached, as the real library does.
    """

    @table :snakepit_sidecar_telemetry_stand_in

    @spec attach(term(), [atom()], function(), term()) :: :ok | {:error, :already_exists}
    def attach(handler_id, event, function, config),
      do: attach_many(handler_id, [event], function, config)

    @spec attach_many(term(), [[atom()]], function(), term()) :: :ok | {:error, :already_exists}
    def attach_many(handler_id, events, function, config) when is_function(function, 4) do
      ensure_table()

      if :ets.match_object(@table, {handler_id, :_, :_, :_}) != [] do
        {:error, :already_exists}
      else
        for event <- events, do: :ets.insert(@table, {handler_id, event, function, config})
        :ok
      end
    end

    @spec detach(term()) :: :ok | {:error, :not_found}
    def detach(handler_id) do
      ensure_table()

      case :ets.match_delete(@table, {handler_id, :_, :_, :_}) do
        true -> :ok
      end
    end

    @spec execute([atom()], map(), map()) :: :ok
    def execute(event, measurements, metadata) do
      ensure_table()

      for {handler_id, ^event, function, config} <- :ets.tab2list(@table) do
        try do
          function.(event, measurements, metadata, config)
        rescue
          _ -> detach(handler_id)
        end
      end

      :ok
    end

    @spec list_handlers([atom()]) :: [map()]
    def list_handlers(prefix) do
      ensure_table()

      for {id, event, function, config} <- :ets.tab2list(@table),
          List.starts_with?(event, prefix),
          do: %{id: id, event_name: event, function: function, config: config}
    end

    defp ensure_table do
      if :ets.whereis(@table) == :undefined do
        parent = self()

        owner =
          spawn(fn ->
            try do
              :ets.new(@table, [:bag, :public, :named_table])
            rescue
              ArgumentError -> :already_created
            end

            send(parent, {:table_ready, self()})
            Process.sleep(:infinity)
          end)

        receive do
          {:table_ready, ^owner} -> :ok
        end
      end

      :ok
    end
  end
end
