# The read-cache pass runs "with :telemetry loaded, as a real application runs" (issue 15): the
# harness then asks the sidecar for its event frames, and every update sends one across the port.
# The project has no dependencies, so when no real :telemetry can be found this defines one with
# the same calling shape (handlers in :persistent_term; the pass attaches none, as an application
# with the library loaded but no handler for these events would run).
unless Code.ensure_loaded?(:telemetry) do
  defmodule :telemetry do
    @moduledoc false
    def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

    def attach_many(id, events, fun, config) do
      handlers = :persistent_term.get(__MODULE__, [])
      :persistent_term.put(__MODULE__, [{id, events, fun, config} | handlers])
      :ok
    end

    def detach(id) do
      :persistent_term.put(
        __MODULE__,
        Enum.reject(:persistent_term.get(__MODULE__, []), &(elem(&1, 0) == id))
      )
    end

    def execute(event, measurements, metadata) do
      for {_id, events, fun, config} <- :persistent_term.get(__MODULE__, []),
          event in events,
          do: fun.(event, measurements, metadata, config)

      :ok
    end
  end
end
