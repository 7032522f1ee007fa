defmodule SnakepitSidecar.API do
  @moduledoc """
  The SessionStore contract's functions, generated into a module by `use SnakepitSidecar.API,
  default_server: server`. Used by `SnakepitSidecar.SessionStore` (default server
  `SnakepitSidecar.SessionStore`) and by `SnakepitSidecar.DropIn` (default server: the drop-in
  module itself, e.g. `Snakepit.Bridge.SessionStore`).

  Every function exists twice: without a server (talks to the default server) and with a
  server as first argument. Every call goes to the sidecar through
  `SnakepitSidecar.Connection.call/3`, except `update_session`, which runs its function in the
  caller (`SnakepitSidecar.Transaction`). Results are exactly the contract's terms; transport
  failures (timeout, sidecar down, store not running) are exits, as with `GenServer.call/3`.

  ## Which reading when arities collide

  A few arities have two readings, e.g. `list_variables(session_id, pattern)` and
  `list_variables(server, session_id)`. A server is never a binary: it is a pid, an atom (a
  registered name) or a `{:global, _}`/`{:via, _, _}` tuple. So in those arities a first
  argument that is a pid, atom or tuple is taken as the server, anything else as the session id.
  `create_session/2` is read as `(server, session_id)` only when its second argument is a binary
  (`create_session("id", ttl: 10)` is the default-server form). The colliding arities are
  `create_session/2`, `register_variable/5`, `get_variable_value/3`, `update_variable/4`,
  `list_variables/2` and `update_variables/3`. Consequence: with the default server, session ids
  in those arities must not be atoms.
  """

  @typedoc "A store: pid, registered name, `{:global, term}` or `{:via, module, term}`."
  @type server :: GenServer.server()
  @typedoc "A session id (a non-empty binary)."
  @type session_id :: String.t()
  @typedoc "A variable id or name; `:temp` and `\"temp\"` are the same name."
  @type ident :: atom() | String.t()
  @typedoc "A session struct (see `:session_struct`)."
  @type session :: map()
  @typedoc "A variable struct (see `:variable_struct`)."
  @type variable :: map()

  @doc "Whether `term` can only be a server in a colliding arity (pid, atom or tuple)."
  defguard is_server(term) when is_atom(term) or is_pid(term) or is_tuple(term)

  defmacro __using__(opts) do
    default_server = Keyword.fetch!(opts, :default_server)

    quote location: :keep do
      import SnakepitSidecar.API, only: [is_server: 1]
      alias SnakepitSidecar.Connection, as: SidecarConnection

      @sidecar_default_server unquote(default_server)

      ## Sessions

      @doc """
      Creates session `session_id` (`{:ok, session}`), or returns the existing one untouched.
      `opts`: `:ttl`, `:metadata`, `:programs`, `:last_worker_id`. Errors: `:invalid_id`,
      `:invalid_ttl`, `:invalid_metadata`, `:invalid_programs`.
      """
      @spec create_session(SnakepitSidecar.API.session_id()) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, term()}
      def create_session(session_id),
        do: SidecarConnection.call(@sidecar_default_server, :create_session, [session_id])

      @doc "`create_session(session_id, opts)` or `create_session(server, session_id)`."
      @spec create_session(
              SnakepitSidecar.API.session_id() | SnakepitSidecar.API.server(),
              keyword() | SnakepitSidecar.API.session_id()
            ) :: {:ok, SnakepitSidecar.API.session()} | {:error, term()}
      def create_session(server, session_id) when is_server(server) and is_binary(session_id),
        do: SidecarConnection.call(server, :create_session, [session_id])

      def create_session(session_id, opts),
        do: SidecarConnection.call(@sidecar_default_server, :create_session, [session_id, opts])

      @doc "`create_session/2` on `server`."
      @spec create_session(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              keyword()
            ) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, term()}
      def create_session(server, session_id, opts),
        do: SidecarConnection.call(server, :create_session, [session_id, opts])

      @doc "The session, touched (`last_accessed` set to now). `{:error, :not_found}` if absent."
      @spec get_session(SnakepitSidecar.API.session_id()) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, :not_found}
      def get_session(session_id), do: get_session(@sidecar_default_server, session_id)

      @doc "`get_session/1` on `server`."
      @spec get_session(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id()) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, :not_found}
      def get_session(server, session_id),
        do: SidecarConnection.call(server, :get_session, [session_id])

      @doc """
      Runs `fun.(session)` in the calling process as an optimistic transaction
      (`SnakepitSidecar.Transaction`) and stores the result, validated and touched.
      `{:ok, session}` | `{:error, :not_found}` | `{:error, reason}` |
      `{:error, {:update_failed, exception}}` when `fun` raises. `fun` may run more than once.
      """
      @spec update_session(SnakepitSidecar.API.session_id(), (map() -> map())) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, term()}
      def update_session(session_id, fun),
        do: update_session(@sidecar_default_server, session_id, fun)

      @doc "`update_session/2` on `server`."
      @spec update_session(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              (map() -> map())
            ) ::
              {:ok, SnakepitSidecar.API.session()} | {:error, term()}
      def update_session(server, session_id, fun),
        do: SnakepitSidecar.Transaction.update_session(server, session_id, fun)

      @doc "Deletes the session. Always `:ok`."
      @spec delete_session(SnakepitSidecar.API.session_id()) :: :ok
      def delete_session(session_id), do: delete_session(@sidecar_default_server, session_id)

      @doc "`delete_session/1` on `server`."
      @spec delete_session(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id()) :: :ok
      def delete_session(server, session_id),
        do: SidecarConnection.call(server, :delete_session, [session_id])

      @doc "Whether the session exists (no touch)."
      @spec session_exists?(SnakepitSidecar.API.session_id()) :: boolean()
      def session_exists?(session_id), do: session_exists?(@sidecar_default_server, session_id)

      @doc "`session_exists?/1` on `server`."
      @spec session_exists?(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id()) ::
              boolean()
      def session_exists?(server, session_id),
        do: SidecarConnection.call(server, :session_exists?, [session_id])

      @doc "The ids of all sessions."
      @spec list_sessions() :: [SnakepitSidecar.API.session_id()]
      def list_sessions, do: list_sessions(@sidecar_default_server)

      @doc "`list_sessions/0` on `server`."
      @spec list_sessions(SnakepitSidecar.API.server()) :: [SnakepitSidecar.API.session_id()]
      def list_sessions(server), do: SidecarConnection.call(server, :list_sessions, [])

      @doc "Removes expired sessions (`last_accessed + ttl < now`); returns how many."
      @spec cleanup_expired_sessions() :: non_neg_integer()
      def cleanup_expired_sessions, do: cleanup_expired_sessions(@sidecar_default_server)

      @doc "`cleanup_expired_sessions/0` on `server`."
      @spec cleanup_expired_sessions(SnakepitSidecar.API.server()) :: non_neg_integer()
      def cleanup_expired_sessions(server),
        do: SidecarConnection.call(server, :cleanup_expired_sessions, [])

      @doc """
      Store statistics: `sessions_created, sessions_deleted, sessions_expired, cleanup_runs,
      global_programs_stored, global_programs_deleted, global_programs_expired,
      current_sessions, memory_usage_bytes`.
      """
      @spec get_stats() :: map()
      def get_stats, do: get_stats(@sidecar_default_server)

      @doc "`get_stats/0` on `server`."
      @spec get_stats(SnakepitSidecar.API.server()) :: map()
      def get_stats(server), do: SidecarConnection.call(server, :get_stats, [])

      @doc "Sets the session's `last_worker_id`, creating the session if missing. `:ok`."
      @spec store_worker_session(SnakepitSidecar.API.session_id(), term()) :: :ok
      def store_worker_session(session_id, worker_id),
        do: store_worker_session(@sidecar_default_server, session_id, worker_id)

      @doc "`store_worker_session/2` on `server`."
      @spec store_worker_session(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              term()
            ) ::
              :ok
      def store_worker_session(server, session_id, worker_id),
        do: SidecarConnection.call(server, :store_worker_session, [session_id, worker_id])

      ## Programs

      @doc "Stores a global program (any term). `:ok`."
      @spec store_global_program(term(), term()) :: :ok | {:error, term()}
      def store_global_program(program_id, data),
        do: store_global_program(@sidecar_default_server, program_id, data)

      @doc "`store_global_program/2` on `server`."
      @spec store_global_program(SnakepitSidecar.API.server(), term(), term()) ::
              :ok | {:error, term()}
      def store_global_program(server, program_id, data),
        do: SidecarConnection.call(server, :store_global_program, [program_id, data])

      @doc "`{:ok, data}` exactly as stored, or `{:error, :not_found}`."
      @spec get_global_program(term()) :: {:ok, term()} | {:error, :not_found}
      def get_global_program(program_id),
        do: get_global_program(@sidecar_default_server, program_id)

      @doc "`get_global_program/1` on `server`."
      @spec get_global_program(SnakepitSidecar.API.server(), term()) ::
              {:ok, term()} | {:error, :not_found}
      def get_global_program(server, program_id),
        do: SidecarConnection.call(server, :get_global_program, [program_id])

      @doc "Deletes a global program. Always `:ok`."
      @spec delete_global_program(term()) :: :ok
      def delete_global_program(program_id),
        do: delete_global_program(@sidecar_default_server, program_id)

      @doc "`delete_global_program/1` on `server`."
      @spec delete_global_program(SnakepitSidecar.API.server(), term()) :: :ok
      def delete_global_program(server, program_id),
        do: SidecarConnection.call(server, :delete_global_program, [program_id])

      @doc "Stores a program in a session. `:ok` | `{:error, :not_found}`."
      @spec store_program(SnakepitSidecar.API.session_id(), term(), term()) ::
              :ok | {:error, :not_found}
      def store_program(session_id, program_id, data),
        do: store_program(@sidecar_default_server, session_id, program_id, data)

      @doc "`store_program/3` on `server`."
      @spec store_program(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              term(),
              term()
            ) ::
              :ok | {:error, :not_found}
      def store_program(server, session_id, program_id, data),
        do: SidecarConnection.call(server, :store_program, [session_id, program_id, data])

      @doc "Replaces a program in a session. `:ok` | `{:error, :not_found}`."
      @spec update_program(SnakepitSidecar.API.session_id(), term(), term()) ::
              :ok | {:error, :not_found}
      def update_program(session_id, program_id, data),
        do: update_program(@sidecar_default_server, session_id, program_id, data)

      @doc "`update_program/3` on `server`."
      @spec update_program(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              term(),
              term()
            ) ::
              :ok | {:error, :not_found}
      def update_program(server, session_id, program_id, data),
        do: SidecarConnection.call(server, :update_program, [session_id, program_id, data])

      @doc "`{:ok, data}` exactly as stored, or `{:error, :not_found}`."
      @spec get_program(SnakepitSidecar.API.session_id(), term()) ::
              {:ok, term()} | {:error, :not_found}
      def get_program(session_id, program_id),
        do: get_program(@sidecar_default_server, session_id, program_id)

      @doc "`get_program/2` on `server`."
      @spec get_program(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id(), term()) ::
              {:ok, term()} | {:error, :not_found}
      def get_program(server, session_id, program_id),
        do: SidecarConnection.call(server, :get_program, [session_id, program_id])

      ## Variables

      @doc """
      Registers a typed variable: `{:ok, "var_<name>_<n>"}` or `{:error, reason}`
      (`:session_not_found`, `{:unknown_type, type}`, a binary validation message).
      """
      @spec register_variable(
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident(),
              atom() | String.t(),
              term()
            ) ::
              {:ok, String.t()} | {:error, term()}
      def register_variable(session_id, name, type, value),
        do:
          SidecarConnection.call(@sidecar_default_server, :register_variable, [
            session_id,
            name,
            type,
            value
          ])

      @doc """
      `register_variable(session_id, name, type, value, opts)` (opts: `:constraints`,
      `:metadata`, `:description`) or `register_variable(server, session_id, name, type, value)`.
      """
      @spec register_variable(term(), term(), term(), term(), term()) ::
              {:ok, String.t()} | {:error, term()}
      def register_variable(server, session_id, name, type, value) when is_server(server),
        do: SidecarConnection.call(server, :register_variable, [session_id, name, type, value])

      def register_variable(session_id, name, type, value, opts),
        do:
          SidecarConnection.call(@sidecar_default_server, :register_variable, [
            session_id,
            name,
            type,
            value,
            opts
          ])

      @doc "`register_variable/5` (with opts) on `server`."
      @spec register_variable(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident(),
              atom() | String.t(),
              term(),
              keyword() | map()
            ) ::
              {:ok, String.t()} | {:error, term()}
      def register_variable(server, session_id, name, type, value, opts),
        do:
          SidecarConnection.call(server, :register_variable, [session_id, name, type, value, opts])

      @doc "A variable by id, then by name. Touches the session."
      @spec get_variable(SnakepitSidecar.API.session_id(), SnakepitSidecar.API.ident()) ::
              {:ok, SnakepitSidecar.API.variable()} | {:error, term()}
      def get_variable(session_id, ident),
        do: get_variable(@sidecar_default_server, session_id, ident)

      @doc "`get_variable/2` on `server`."
      @spec get_variable(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident()
            ) ::
              {:ok, SnakepitSidecar.API.variable()} | {:error, term()}
      def get_variable(server, session_id, ident),
        do: SidecarConnection.call(server, :get_variable, [session_id, ident])

      @doc "The variable's value, or `nil` on any error."
      @spec get_variable_value(SnakepitSidecar.API.session_id(), SnakepitSidecar.API.ident()) ::
              term()
      def get_variable_value(session_id, ident),
        do:
          SidecarConnection.call(@sidecar_default_server, :get_variable_value, [session_id, ident])

      @doc """
      `get_variable_value(session_id, ident, default)` or
      `get_variable_value(server, session_id, ident)`.
      """
      @spec get_variable_value(term(), term(), term()) :: term()
      def get_variable_value(server, session_id, ident) when is_server(server),
        do: SidecarConnection.call(server, :get_variable_value, [session_id, ident])

      def get_variable_value(session_id, ident, default),
        do:
          SidecarConnection.call(@sidecar_default_server, :get_variable_value, [
            session_id,
            ident,
            default
          ])

      @doc "`get_variable_value/3` (with default) on `server`."
      @spec get_variable_value(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident(),
              term()
            ) ::
              term()
      def get_variable_value(server, session_id, ident, default),
        do: SidecarConnection.call(server, :get_variable_value, [session_id, ident, default])

      @doc """
      Validates and stores a new value: `:ok` or `{:error, reason}`
      (`:variable_locked_for_optimization` while an optimizer holds it).
      """
      @spec update_variable(SnakepitSidecar.API.session_id(), SnakepitSidecar.API.ident(), term()) ::
              :ok | {:error, term()}
      def update_variable(session_id, ident, value),
        do:
          SidecarConnection.call(@sidecar_default_server, :update_variable, [
            session_id,
            ident,
            value
          ])

      @doc """
      `update_variable(session_id, ident, value, metadata)` or
      `update_variable(server, session_id, ident, value)`.
      """
      @spec update_variable(term(), term(), term(), term()) :: :ok | {:error, term()}
      def update_variable(server, session_id, ident, value) when is_server(server),
        do: SidecarConnection.call(server, :update_variable, [session_id, ident, value])

      def update_variable(session_id, ident, value, metadata),
        do:
          SidecarConnection.call(@sidecar_default_server, :update_variable, [
            session_id,
            ident,
            value,
            metadata
          ])

      @doc "`update_variable/4` (with metadata) on `server`."
      @spec update_variable(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident(),
              term(),
              map()
            ) ::
              :ok | {:error, term()}
      def update_variable(server, session_id, ident, value, metadata),
        do: SidecarConnection.call(server, :update_variable, [session_id, ident, value, metadata])

      @doc "`:ok` | `{:error, :not_found}` | `{:error, :variable_locked_for_optimization}`."
      @spec delete_variable(SnakepitSidecar.API.session_id(), SnakepitSidecar.API.ident()) ::
              :ok | {:error, term()}
      def delete_variable(session_id, ident),
        do: delete_variable(@sidecar_default_server, session_id, ident)

      @doc "`delete_variable/2` on `server`."
      @spec delete_variable(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident()
            ) ::
              :ok | {:error, term()}
      def delete_variable(server, session_id, ident),
        do: SidecarConnection.call(server, :delete_variable, [session_id, ident])

      @doc "Whether the variable exists (by id or name)."
      @spec has_variable?(SnakepitSidecar.API.session_id(), SnakepitSidecar.API.ident()) ::
              boolean()
      def has_variable?(session_id, ident),
        do: has_variable?(@sidecar_default_server, session_id, ident)

      @doc "`has_variable?/2` on `server`."
      @spec has_variable?(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              SnakepitSidecar.API.ident()
            ) ::
              boolean()
      def has_variable?(server, session_id, ident),
        do: SidecarConnection.call(server, :has_variable?, [session_id, ident])

      @doc "`{:ok, variables}` in registration order."
      @spec list_variables(SnakepitSidecar.API.session_id()) ::
              {:ok, [SnakepitSidecar.API.variable()]} | {:error, term()}
      def list_variables(session_id),
        do: SidecarConnection.call(@sidecar_default_server, :list_variables, [session_id])

      @doc """
      `list_variables(session_id, pattern)` (`*` is a wildcard, unanchored match on the name)
      or `list_variables(server, session_id)`.
      """
      @spec list_variables(term(), term()) ::
              {:ok, [SnakepitSidecar.API.variable()]} | {:error, term()}
      def list_variables(server, session_id) when is_server(server),
        do: SidecarConnection.call(server, :list_variables, [session_id])

      def list_variables(session_id, pattern),
        do:
          SidecarConnection.call(@sidecar_default_server, :list_variables, [session_id, pattern])

      @doc "`list_variables/2` (with pattern) on `server`."
      @spec list_variables(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              String.t()
            ) ::
              {:ok, [SnakepitSidecar.API.variable()]} | {:error, term()}
      def list_variables(server, session_id, pattern),
        do: SidecarConnection.call(server, :list_variables, [session_id, pattern])

      @doc "`{:ok, %{found: %{string_ident => variable}, missing: [string_ident]}}`."
      @spec get_variables(SnakepitSidecar.API.session_id(), [SnakepitSidecar.API.ident()]) ::
              {:ok, %{found: map(), missing: [String.t()]}} | {:error, term()}
      def get_variables(session_id, idents),
        do: get_variables(@sidecar_default_server, session_id, idents)

      @doc "`get_variables/2` on `server`."
      @spec get_variables(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id(), [
              SnakepitSidecar.API.ident()
            ]) ::
              {:ok, %{found: map(), missing: [String.t()]}} | {:error, term()}
      def get_variables(server, session_id, idents),
        do: SidecarConnection.call(server, :get_variables, [session_id, idents])

      @doc "Non-atomic batch update: `{:ok, %{string_ident => :ok | {:error, reason}}}`."
      @spec update_variables(SnakepitSidecar.API.session_id(), map()) ::
              {:ok, map()} | {:error, term()}
      def update_variables(session_id, updates),
        do:
          SidecarConnection.call(@sidecar_default_server, :update_variables, [session_id, updates])

      @doc """
      `update_variables(session_id, updates, opts)` (opts: `:atomic`, `:metadata`; atomic
      failures are `{:error, {:validation_failed, %{ident => reason}}}` and change nothing) or
      `update_variables(server, session_id, updates)`.
      """
      @spec update_variables(term(), term(), term()) :: {:ok, map()} | {:error, term()}
      def update_variables(server, session_id, updates) when is_server(server),
        do: SidecarConnection.call(server, :update_variables, [session_id, updates])

      def update_variables(session_id, updates, opts),
        do:
          SidecarConnection.call(@sidecar_default_server, :update_variables, [
            session_id,
            updates,
            opts
          ])

      @doc "`update_variables/3` (with opts) on `server`."
      @spec update_variables(
              SnakepitSidecar.API.server(),
              SnakepitSidecar.API.session_id(),
              map(),
              keyword()
            ) ::
              {:ok, map()} | {:error, term()}
      def update_variables(server, session_id, updates, opts),
        do: SidecarConnection.call(server, :update_variables, [session_id, updates, opts])

      @doc "`{:ok, [map]}`: every variable as a plain map (name as a string)."
      @spec export_variables(SnakepitSidecar.API.session_id()) ::
              {:ok, [map()]} | {:error, term()}
      def export_variables(session_id), do: export_variables(@sidecar_default_server, session_id)

      @doc "`export_variables/1` on `server`."
      @spec export_variables(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id()) ::
              {:ok, [map()]} | {:error, term()}
      def export_variables(server, session_id),
        do: SidecarConnection.call(server, :export_variables, [session_id])

      @doc "Imports exported maps: `{:ok, count}`, or `{:error, reason}` and nothing imported."
      @spec import_variables(SnakepitSidecar.API.session_id(), [map()]) ::
              {:ok, non_neg_integer()} | {:error, term()}
      def import_variables(session_id, maps),
        do: import_variables(@sidecar_default_server, session_id, maps)

      @doc "`import_variables/2` on `server`."
      @spec import_variables(SnakepitSidecar.API.server(), SnakepitSidecar.API.session_id(), [
              map()
            ]) ::
              {:ok, non_neg_integer()} | {:error, term()}
      def import_variables(server, session_id, maps),
        do: SidecarConnection.call(server, :import_variables, [session_id, maps])
    end
  end
end
