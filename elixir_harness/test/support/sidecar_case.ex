defmodule SnakepitSidecar.SidecarCase do
  @moduledoc """
  ExUnit case template for tests against the real Python sidecar.

  `use SnakepitSidecar.SidecarCase, drop_in: true` starts `Snakepit.Bridge.SessionStore` once for
  the test module (tests run serially in it; use `unique_id/1` for session ids). Helpers attach
  the `:telemetry` stand-in to the test process.
  """

  use ExUnit.CaseTemplate

  using opts do
    quote do
      import SnakepitSidecar.SidecarCase
      alias Snakepit.Bridge.SessionStore
      alias Snakepit.Bridge.Session
      alias Snakepit.Bridge.Variables.Variable

      if unquote(Keyword.get(opts, :drop_in, false)) do
        setup_all do
          start_supervised!(
            {Snakepit.Bridge.SessionStore, sidecar_args: ["--log-level", "warning"]}
          )

          :ok
        end
      end
    end
  end

  @doc "Sidecar arguments that keep its stderr quiet in tests."
  @spec quiet_args() :: [String.t()]
  def quiet_args, do: ["--log-level", "error"]

  @doc """
  Starts an unnamed store under the test's supervisor (so tests can run side by side), with
  `opts` merged over `name: nil, sidecar_args: quiet_args()`.
  """
  @spec start_store(keyword()) :: pid()
  def start_store(opts \\ []) do
    opts = Keyword.merge([name: nil, sidecar_args: quiet_args()], opts)
    ExUnit.Callbacks.start_supervised!({SnakepitSidecar.SessionStore, opts}, id: make_ref())
  end

  @doc "A session id unique in this test run."
  @spec unique_id(String.t()) :: String.t()
  def unique_id(prefix \\ "s"), do: "#{prefix}_#{System.unique_integer([:positive])}"

  @doc """
  Attaches a handler sending `{:telemetry_event, event, measurements, metadata}` to the calling
  process for `events`; detached when the test ends.
  """
  @spec capture_telemetry([[atom()]]) :: :ok
  def capture_telemetry(events) do
    test_pid = self()
    handler_id = {__MODULE__, make_ref()}

    :ok =
      :telemetry.attach_many(
        handler_id,
        events,
        fn event, measurements, metadata, _ ->
          send(test_pid, {:telemetry_event, event, measurements, metadata})
        end,
        nil
      )

    ExUnit.Callbacks.on_exit(fn -> :telemetry.detach(handler_id) end)
    :ok
  end

  @doc "Waits until `fun` returns a truthy value (polling every 20 ms, up to `timeout_ms`)."
  @spec eventually((() -> term()), non_neg_integer()) :: term()
  def eventually(fun, timeout_ms \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms
    do_eventually(fun, deadline)
  end

  defp do_eventually(fun, deadline) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          ExUnit.Assertions.flunk("condition not met in time")
        else
          Process.sleep(20)
          do_eventually(fun, deadline)
        end
    end
  end

  @doc "Whether an OS process is running."
  @spec os_alive?(non_neg_integer()) :: boolean()
  def os_alive?(os_pid), do: SnakepitSidecar.OSProcess.alive?(os_pid)
end
