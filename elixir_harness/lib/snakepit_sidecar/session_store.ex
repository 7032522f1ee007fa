defmodule SnakepitSidecar.SessionStore do
  @moduledoc """
  The Snakepit SessionStore contract (`docs/contract.md`) served by the Python sidecar.

  Start it under a supervisor:

      children = [
        {SnakepitSidecar.SessionStore, default_ttl: 600, record: "/tmp/store.rec"}
      ]

  and call it like `Snakepit.Bridge.SessionStore`: every function of the contract exists with and
  without a server as first argument (see `SnakepitSidecar.API` for how colliding arities are
  read). Results are exactly the contract's terms.

  For code written against `Snakepit.Bridge.SessionStore`, see `SnakepitSidecar.DropIn`.

  ## Options

  See `SnakepitSidecar.Options` for the full table. Invalid options make `start_link/1` raise
  `ArgumentError` naming the option; a sidecar that cannot be started makes it return
  `{:error, reason}` (see `SnakepitSidecar.Connection`). A second `start_link/1` under a taken
  name returns `{:error, {:already_started, pid}}`.

  ## Failures

  A call that gets no reply exits like `GenServer.call/3` would: on timeout (`:call_timeout`), when
  the sidecar dies while the call is in flight, or when the store is not running. When the sidecar
  dies, the store starts a new one at once and serves the next calls: empty with the default
  `storage: :memory`, holding every acknowledged write with `{:sqlite, path}` or `{:redis, url}`
  (`docs/storage.md`); see `SnakepitSidecar.Connection`.

  ## Telemetry

  The sidecar's eight contract events and the harness's own events are documented in
  `SnakepitSidecar.Telemetry` and `docs/telemetry.md`.
  """

  use SnakepitSidecar.API, default_server: SnakepitSidecar.SessionStore

  alias SnakepitSidecar.{Client, Connection, Options}

  @doc """
  Starts the store (and its sidecar) linked to the caller. Returns once the sidecar has
  answered the handshake. Raises `ArgumentError` on invalid options.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: start_link(opts, [])

  @doc """
  Like `start_link/1`, with `defaults` replacing the built-in defaults of options (used by
  `SnakepitSidecar.DropIn` for `:name` and the struct modules).
  """
  @spec start_link(keyword(), keyword()) :: GenServer.on_start()
  def start_link(opts, defaults) do
    opts
    |> Options.validate!(defaults)
    |> Connection.start_link()
  end

  @doc """
  Sends any call of the protocol (`docs/protocol.md`), e.g. `call(server, :ping, [])`.
  `timeout` overrides the store's `:call_timeout` for this call.
  """
  @spec call(GenServer.server(), atom(), list(), timeout() | nil) :: term()
  defdelegate call(server, function, args, timeout \\ nil), to: Client

  @doc "`:pong` when the sidecar answers."
  @spec ping(GenServer.server()) :: :pong
  def ping(server \\ __MODULE__), do: Client.call(server, :ping, [])

  @doc """
  Marks a variable as being optimized (updates and deletes then answer
  `{:error, :variable_locked_for_optimization}`). `:ok` | `{:error, :session_not_found}` |
  `{:error, :not_found}` | `{:error, :already_optimizing}`.
  """
  @spec start_optimization(GenServer.server(), String.t(), atom() | String.t(), term(), term()) ::
          :ok | {:error, term()}
  def start_optimization(server \\ __MODULE__, session_id, ident, optimizer_id, optimizer_pid),
    do:
      Client.call(server, :start_optimization, [
        session_id,
        ident,
        optimizer_id,
        optimizer_pid
      ])

  @doc "Clears a variable's optimization status."
  @spec end_optimization(GenServer.server(), String.t(), atom() | String.t()) ::
          :ok | {:error, term()}
  def end_optimization(server \\ __MODULE__, session_id, ident),
    do: Client.call(server, :end_optimization, [session_id, ident])

  @doc """
  Runs what the periodic cleanup runs (expired sessions, then global programs older than
  `:global_program_ttl`): `%{sessions: n, global_programs: m}`.
  """
  @spec run_cleanup(GenServer.server()) :: %{
          sessions: non_neg_integer(),
          global_programs: non_neg_integer()
        }
  def run_cleanup(server \\ __MODULE__), do: Client.call(server, :run_cleanup, [])
end
