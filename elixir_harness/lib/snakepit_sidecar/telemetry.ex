defmodule SnakepitSidecar.Telemetry do
  @moduledoc """
  Telemetry events of the harness, and the bridge that turns the sidecar's `:telemetry` frames
  into `:telemetry.execute/3` calls.

  The harness does not depend on `:telemetry`. Whether it is there is checked at run time: the
  connection process calls `Code.ensure_loaded?(:telemetry)` once when it starts a sidecar,
  caches the answer for that sidecar's life and tells the sidecar in `:hello` (`telemetry: false`
  means the sidecar sends no telemetry frames at all). Events emitted in callers' processes check
  `function_exported?(:telemetry, :execute, 3)`, a cheap check of loaded code. When `:telemetry`
  is absent, nothing is emitted and nothing fails.

  Handlers run in the process that emits the event: the connection process for the sidecar's
  events and the connection events, the calling process for the call events. A handler that
  raises is contained (`:telemetry` detaches it); the harness never crashes because of one.

  ## Events from the sidecar (the contract's eight)

  Executed by the connection process, in the order the sidecar sent them, and always **before**
  the reply of the call that caused them is delivered: a caller that has its reply has had its
  events executed.

    * `[:snakepit, :session_store, :variable, :registered]` — a variable was registered.
      Measurements: `%{count: 1}`. Metadata: `%{session_id: binary, type: atom}`.
    * `[:snakepit, :session_store, :variable, :get]` — a variable was read (`get_variable`,
      `get_variable_value`, `has_variable?`). Measurements: `%{count: 1}`.
      Metadata: `%{session_id: binary, cache_hit: boolean}`: `false` from the sidecar; `true`
      when the read cache (`SnakepitSidecar.ReadCache`) served the read, emitted then in the
      calling process (so is `:batch_get` for a `get_variables` it served whole), with no
      `[:snakepit_sidecar, :call, :stop]` after it.
    * `[:snakepit, :session_store, :variable, :updated]` — a variable's value changed.
      Measurements: `%{count: 1, version: integer}` (the new version).
      Metadata: `%{session_id: binary, type: atom}`.
    * `[:snakepit, :session_store, :variable, :deleted]` — a variable was deleted.
      Measurements: `%{count: 1}`. Metadata: `%{session_id: binary}`.
    * `[:snakepit, :session_store, :variables, :batch_get]` — `get_variables` ran.
      Measurements: `%{count: n}` (identifiers asked for). Metadata: `%{session_id: binary}`.
    * `[:snakepit, :session_store, :variables, :batch_update]` — `update_variables` ran.
      Measurements: `%{count: n}` (updates given). Metadata: `%{session_id: binary, atomic: boolean}`.
    * `[:snakepit, :session_store, :variable, :validation_failed]` — a value was rejected by its
      type (not a number, not a string...). Measurements: `%{count: 1}`.
      Metadata: `%{session_id: binary, type: atom}`.
    * `[:snakepit, :session_store, :variable, :constraint_violation]` — a value of the right
      type broke a constraint (min, max, pattern...). Measurements: `%{count: 1}`.
      Metadata: `%{session_id: binary, type: atom}`.

  ## Events of the harness

    * `[:snakepit_sidecar, :connection, :up]` — a sidecar answered `:hello` with `:welcome`
      (at start, and again after each automatic restart).
      Measurements: `%{duration: native_time, system_time: integer}` (`duration`: from
      spawning the process to `:welcome`).
      Metadata: `%{server: pid, name: name | nil, os_pid: integer, version: binary,
      restart: boolean}`.
    * `[:snakepit_sidecar, :connection, :down]` — the sidecar is gone: it exited or was killed
      (`reason: {:exit_status, status}` or `{:port_exit, term}`) or the store is stopping
      (`reason: {:shutdown, term}`; emitted before the process is stopped).
      Measurements: `%{pending_calls: n, system_time: integer}` (`pending_calls`: callers
      that were waiting and got an exit).
      Metadata: `%{server: pid, name: name | nil, os_pid: integer | nil, reason: term}`.
    * `[:snakepit_sidecar, :call, :stop]` — a call got its reply. Emitted in the caller.
      Measurements: `%{duration: native_time}` (caller's view: request to reply).
      Metadata: `%{server: server, function: atom, arity: integer}`.
    * `[:snakepit_sidecar, :call, :exception]` — a call ended without a reply: it timed out, the
      sidecar died, the reply could not be decoded, or the store is not running. Emitted in the
      caller, just before the caller exits.
      Measurements: `%{duration: native_time}`.
      Metadata: `%{server: server, function: atom, arity: integer, kind: :exit, reason: term}`.

  Durations are in `:native` time units; convert with `System.convert_time_unit/3`.
  """

  require Logger

  @sidecar_events [
    [:snakepit, :session_store, :variable, :registered],
    [:snakepit, :session_store, :variable, :get],
    [:snakepit, :session_store, :variable, :updated],
    [:snakepit, :session_store, :variable, :deleted],
    [:snakepit, :session_store, :variables, :batch_get],
    [:snakepit, :session_store, :variables, :batch_update],
    [:snakepit, :session_store, :variable, :validation_failed],
    [:snakepit, :session_store, :variable, :constraint_violation]
  ]

  @harness_events [
    [:snakepit_sidecar, :connection, :up],
    [:snakepit_sidecar, :connection, :down],
    [:snakepit_sidecar, :call, :stop],
    [:snakepit_sidecar, :call, :exception]
  ]

  @doc "The eight events the sidecar sends (the contract's telemetry table)."
  @spec sidecar_events() :: [[atom()]]
  def sidecar_events, do: @sidecar_events

  @doc "The events the harness itself emits."
  @spec harness_events() :: [[atom()]]
  def harness_events, do: @harness_events

  @doc """
  Loads `:telemetry` if it can be found and says whether it is there. Used once per sidecar by
  the connection process; the answer is cached in its state.
  """
  @spec detect() :: boolean()
  def detect do
    Code.ensure_loaded?(:telemetry) and function_exported?(:telemetry, :execute, 3)
  end

  @doc "Whether `:telemetry` is loaded now (cheap; no code loading)."
  @spec available?() :: boolean()
  def available?, do: function_exported?(:telemetry, :execute, 3)

  @doc """
  Runs `:telemetry.execute(event, measurements, metadata)` when `available?` is true.
  Never raises: an exception from a handler is logged and swallowed.
  """
  @spec execute(boolean(), [atom()], map(), map()) :: :ok
  def execute(false, _event, _measurements, _metadata), do: :ok

  def execute(true, event, measurements, metadata) do
    apply(:telemetry, :execute, [event, measurements, metadata])
    :ok
  catch
    kind, reason ->
      Logger.error(
        "telemetry handler for #{inspect(event)} failed: " <>
          Exception.format_banner(kind, reason, __STACKTRACE__)
      )

      :ok
  end

  @doc "Like `execute/4`, checking `available?/0` first."
  @spec emit([atom()], map(), map()) :: :ok
  def emit(event, measurements, metadata),
    do: execute(available?(), event, measurements, metadata)
end
