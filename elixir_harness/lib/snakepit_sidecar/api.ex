defmodule SnakepitSidecar.API do
  @moduledoc """
  The SessionStore contract's functions, generated from one call table (`@calls` in this file)
  into a module by `use SnakepitSidecar.API, default_server: server`. Used by
  `SnakepitSidecar.SessionStore` (default server `SnakepitSidecar.SessionStore`) and by
  `SnakepitSidecar.DropIn` (default server: the drop-in module itself, e.g.
  `Snakepit.Bridge.SessionStore`).

  Every function exists twice: without a server (talks to the default server) and with a
  server as first argument; both forms, with their docs and specs, come from the function's
  entry in the table. Every call goes to the sidecar through `SnakepitSidecar.Client.call/4`
  (what `SnakepitSidecar.Connection.call/4` runs), except `update_session`, which runs its
  function in the caller (`SnakepitSidecar.Transaction`). Results are exactly the contract's
  terms; transport failures (timeout, sidecar down, store not running) are exits, as with
  `GenServer.call/3`. `use` also defines `child_spec/1` and `sidecar_info/0,1`.

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

  # The call table: one entry per function of the contract.
  #
  #   name:     the function, and the call sent to the sidecar
  #   args:     the arguments of the default-server form, `[argument: "type"]`
  #   returns:  the return type
  #   doc:      the doc of the default-server form (the other forms' docs are generated)
  #   optional: `{argument, "type", note}`, a trailing argument callers may leave out (the
  #             original's default argument). The function then exists with and without it,
  #             and the arity with it collides with the server form of the one without (see
  #             the moduledoc); `note` ("" for none) follows it in that arity's doc.
  #   server_form_needs_binary_id: the colliding arity is the server form only when its
  #             second argument is a binary (`create_session/2`)
  #   runs:     `{module, function}`: not a sidecar call, `module.function(server, args...)`
  #             runs in the caller
  #
  # Types are written as in a @spec; this module's types (server, session_id, ident, session,
  # variable) are written bare and qualified when generated.
  @calls [
    # Sessions
    [
      name: :create_session,
      args: [session_id: "session_id()"],
      optional: {:opts, "keyword()", ""},
      server_form_needs_binary_id: true,
      returns: "{:ok, session()} | {:error, term()}",
      doc: """
      Creates session `session_id` (`{:ok, session}`), or returns the existing one untouched.
      `opts`: `:ttl`, `:metadata`, `:programs`, `:last_worker_id`. Errors: `:invalid_id`,
      `:invalid_ttl`, `:invalid_metadata`, `:invalid_programs`.
      """
    ],
    [
      name: :get_session,
      args: [session_id: "session_id()"],
      returns: "{:ok, session()} | {:error, :not_found}",
      doc: "The session, touched (`last_accessed` set to now). `{:error, :not_found}` if absent."
    ],
    [
      name: :update_session,
      args: [session_id: "session_id()", fun: "(map() -> map())"],
      runs: {SnakepitSidecar.Transaction, :update_session},
      returns: "{:ok, session()} | {:error, term()}",
      doc: """
      Runs `fun.(session)` in the calling process as an optimistic transaction
      (`SnakepitSidecar.Transaction`) and stores the result, validated and touched.
      `{:ok, session}` | `{:error, :not_found}` | `{:error, reason}` |
      `{:error, {:update_failed, exception}}` when `fun` raises. `fun` may run more than once.
      """
    ],
    [
      name: :delete_session,
      args: [session_id: "session_id()"],
      returns: ":ok",
      doc: "Deletes the session. Always `:ok`."
    ],
    [
      name: :session_exists?,
      args: [session_id: "session_id()"],
      returns: "boolean()",
      doc: "Whether the session exists (no touch)."
    ],
    [
      name: :list_sessions,
      args: [],
      returns: "[session_id()]",
      doc: "The ids of all sessions."
    ],
    [
      name: :cleanup_expired_sessions,
      args: [],
      returns: "non_neg_integer()",
      doc: "Removes expired sessions (`last_accessed + ttl < now`); returns how many."
    ],
    [
      name: :get_stats,
      args: [],
      returns: "map()",
      doc: """
      Store statistics: `sessions_created, sessions_deleted, sessions_expired, cleanup_runs,
      global_programs_stored, global_programs_deleted, global_programs_expired,
      current_sessions, memory_usage_bytes`.
      """
    ],
    [
      name: :store_worker_session,
      args: [session_id: "session_id()", worker_id: "term()"],
      returns: ":ok",
      doc: "Sets the session's `last_worker_id`, creating the session if missing. `:ok`."
    ],
    # Programs
    [
      name: :store_global_program,
      args: [program_id: "term()", data: "term()"],
      returns: ":ok | {:error, term()}",
      doc: "Stores a global program (any term). `:ok`."
    ],
    [
      name: :get_global_program,
      args: [program_id: "term()"],
      returns: "{:ok, term()} | {:error, :not_found}",
      doc: "`{:ok, data}` exactly as stored, or `{:error, :not_found}`."
    ],
    [
      name: :delete_global_program,
      args: [program_id: "term()"],
      returns: ":ok",
      doc: "Deletes a global program. Always `:ok`."
    ],
    [
      name: :store_program,
      args: [session_id: "session_id()", program_id: "term()", data: "term()"],
      returns: ":ok | {:error, :not_found}",
      doc: "Stores a program in a session. `:ok` | `{:error, :not_found}`."
    ],
    [
      name: :update_program,
      args: [session_id: "session_id()", program_id: "term()", data: "term()"],
      returns: ":ok | {:error, :not_found}",
      doc: "Replaces a program in a session. `:ok` | `{:error, :not_found}`."
    ],
    [
      name: :get_program,
      args: [session_id: "session_id()", program_id: "term()"],
      returns: "{:ok, term()} | {:error, :not_found}",
      doc: "`{:ok, data}` exactly as stored, or `{:error, :not_found}`."
    ],
    # Variables
    [
      name: :register_variable,
      args: [
        session_id: "session_id()",
        name: "ident()",
        type: "atom() | String.t()",
        value: "term()"
      ],
      optional: {:opts, "keyword() | map()", "opts: `:constraints`, `:metadata`, `:description`"},
      returns: "{:ok, String.t()} | {:error, term()}",
      doc: """
      Registers a typed variable: `{:ok, "var_<name>_<n>"}` or `{:error, reason}`
      (`:session_not_found`, `{:unknown_type, type}`, a binary validation message).
      """
    ],
    [
      name: :get_variable,
      args: [session_id: "session_id()", ident: "ident()"],
      returns: "{:ok, variable()} | {:error, term()}",
      doc: "A variable by id, then by name. Touches the session."
    ],
    [
      name: :get_variable_value,
      args: [session_id: "session_id()", ident: "ident()"],
      optional: {:default, "term()", ""},
      returns: "term()",
      doc: "The variable's value, or `nil` on any error."
    ],
    [
      name: :update_variable,
      args: [session_id: "session_id()", ident: "ident()", value: "term()"],
      optional: {:metadata, "map()", ""},
      returns: ":ok | {:error, term()}",
      doc: """
      Validates and stores a new value: `:ok` or `{:error, reason}`
      (`:variable_locked_for_optimization` while an optimizer holds it).
      """
    ],
    [
      name: :delete_variable,
      args: [session_id: "session_id()", ident: "ident()"],
      returns: ":ok | {:error, term()}",
      doc: "`:ok` | `{:error, :not_found}` | `{:error, :variable_locked_for_optimization}`."
    ],
    [
      name: :has_variable?,
      args: [session_id: "session_id()", ident: "ident()"],
      returns: "boolean()",
      doc: "Whether the variable exists (by id or name)."
    ],
    [
      name: :list_variables,
      args: [session_id: "session_id()"],
      optional: {:pattern, "String.t()", "`*` is a wildcard, unanchored match on the name"},
      returns: "{:ok, [variable()]} | {:error, term()}",
      doc: "`{:ok, variables}` in registration order."
    ],
    [
      name: :get_variables,
      args: [session_id: "session_id()", idents: "[ident()]"],
      returns: "{:ok, %{found: map(), missing: [String.t()]}} | {:error, term()}",
      doc: "`{:ok, %{found: %{string_ident => variable}, missing: [string_ident]}}`."
    ],
    [
      name: :update_variables,
      args: [session_id: "session_id()", updates: "map()"],
      optional:
        {:opts, "keyword()",
         "opts: `:atomic`, `:metadata`; atomic failures are " <>
           "`{:error, {:validation_failed, %{ident => reason}}}` and change nothing"},
      returns: "{:ok, map()} | {:error, term()}",
      doc: "Non-atomic batch update: `{:ok, %{string_ident => :ok | {:error, reason}}}`."
    ],
    [
      name: :export_variables,
      args: [session_id: "session_id()"],
      returns: "{:ok, [map()]} | {:error, term()}",
      doc: "`{:ok, [map]}`: every variable as a plain map (name as a string)."
    ],
    [
      name: :import_variables,
      args: [session_id: "session_id()", maps: "[map()]"],
      returns: "{:ok, non_neg_integer()} | {:error, term()}",
      doc: "Imports exported maps: `{:ok, count}`, or `{:error, reason}` and nothing imported."
    ]
  ]

  @own_types [:server, :session_id, :ident, :session, :variable]

  @doc """
  Every function (name and arity) `use SnakepitSidecar.API` defines from the call table, in
  the table's order (without `child_spec/1` and `sidecar_info/0,1`).
  """
  @spec functions() :: [{atom(), arity()}]
  def functions do
    Enum.flat_map(@calls, fn call ->
      n = length(call[:args])

      if call[:optional],
        do: [{call[:name], n}, {call[:name], n + 1}, {call[:name], n + 2}],
        else: [{call[:name], n}, {call[:name], n + 1}]
    end)
  end

  defmacro __using__(opts) do
    default_server = Keyword.fetch!(opts, :default_server)
    definitions = Enum.map(@calls, &definitions/1)

    quote location: :keep do
      import SnakepitSidecar.API, only: [is_server: 1]

      @sidecar_default_server unquote(default_server)

      unquote_splicing(definitions)

      @doc """
      A child spec starting `start_link/1` with `opts`. The child id is the `:name` option when
      given, else this module, so several stores with different names can live under one
      supervisor.
      """
      @spec child_spec(keyword()) :: Supervisor.child_spec()
      def child_spec(opts) do
        %{
          id: Keyword.get(opts, :name) || __MODULE__,
          start: {__MODULE__, :start_link, [opts]},
          type: :worker,
          shutdown: 5_000
        }
      end

      @doc "The current sidecar: `%{os_pid, welcome, pending_calls, restarts, read_cache}`."
      @spec sidecar_info(GenServer.server()) :: map()
      def sidecar_info(server \\ @sidecar_default_server),
        do: SnakepitSidecar.Connection.info(server)
    end
  end

  ## Generating the functions of one entry

  defp definitions(call) do
    name = Keyword.fetch!(call, :name)
    {arg_names, arg_types} = Enum.unzip(Keyword.fetch!(call, :args))
    types = Enum.map(arg_types, &type/1)
    returns = type(Keyword.fetch!(call, :returns))
    args = Enum.map(arg_names, &Macro.var(&1, nil))
    server = Macro.var(:server, nil)
    default = quote do: @sidecar_default_server
    server_type = type("server()")
    n = length(args)

    without_server =
      function(name, call[:doc], types, returns, [
        clause(name, args, nil, body(call, default, args))
      ])

    case call[:optional] do
      nil ->
        with_server =
          function(name, "`#{name}/#{n}` on `server`.", [server_type | types], returns, [
            clause(name, [server | args], nil, body(call, server, args))
          ])

        [without_server, with_server]

      {extra_name, extra_type, note} ->
        extra = Macro.var(extra_name, nil)
        extra_type = type(extra_type)
        note = if note == "", do: "", else: " (#{note})"

        either_doc =
          "`#{name}(#{Enum.join(arg_names ++ [extra_name], ", ")})`#{note} or " <>
            "`#{name}(#{Enum.join([:server | arg_names], ", ")})`."

        either_types = Enum.zip_with(types ++ [extra_type], [server_type | types], &union/2)

        server_guard =
          if call[:server_form_needs_binary_id],
            do: quote(do: is_server(unquote(server)) and is_binary(unquote(hd(args)))),
            else: quote(do: is_server(unquote(server)))

        either =
          function(name, either_doc, either_types, returns, [
            clause(name, [server | args], server_guard, body(call, server, args)),
            clause(name, args ++ [extra], nil, body(call, default, args ++ [extra]))
          ])

        with_server_and_extra =
          function(
            name,
            "`#{name}/#{n + 1}` (with #{extra_name}) on `server`.",
            [server_type | types] ++ [extra_type],
            returns,
            [clause(name, [server | args] ++ [extra], nil, body(call, server, args ++ [extra]))]
          )

        [without_server, either, with_server_and_extra]
    end
    |> then(&{:__block__, [], &1})
  end

  defp function(name, doc, types, returns, clauses) do
    quote do
      @doc unquote(doc)
      @spec unquote(name)(unquote_splicing(types)) :: unquote(returns)
      unquote_splicing(clauses)
    end
  end

  defp clause(name, params, nil, body) do
    quote do
      def unquote(name)(unquote_splicing(params)), do: unquote(body)
    end
  end

  defp clause(name, params, guard, body) do
    quote do
      def unquote(name)(unquote_splicing(params)) when unquote(guard), do: unquote(body)
    end
  end

  defp body(call, server, args) do
    case call[:runs] do
      nil ->
        quote do
          SnakepitSidecar.Client.call(unquote(server), unquote(call[:name]), unquote(args))
        end

      {module, function} ->
        quote do
          unquote(module).unquote(function)(unquote(server), unquote_splicing(args))
        end
    end
  end

  # A type of the table as quoted code, with this module's own types qualified (and no line
  # numbers of its own: it takes the @spec's).
  defp type(source) do
    source
    |> Code.string_to_quoted!()
    |> strip_meta()
    |> Macro.prewalk(fn
      {own, _meta, []} when own in @own_types -> quote(do: SnakepitSidecar.API.unquote(own)())
      other -> other
    end)
  end

  # Both readings of a colliding argument: `a | b`, once each, or `term()` if either is.
  defp union(a, b) do
    alternatives = Enum.uniq_by(alternatives(a) ++ alternatives(b), &strip_meta/1)

    if Enum.any?(alternatives, &(strip_meta(&1) == strip_meta(quote(do: term())))),
      do: quote(do: term()),
      else: alternatives |> Enum.reverse() |> Enum.reduce(&quote(do: unquote(&1) | unquote(&2)))
  end

  defp alternatives({:|, _, [left, right]}), do: alternatives(left) ++ alternatives(right)
  defp alternatives(type), do: [type]

  defp strip_meta(quoted) do
    Macro.prewalk(quoted, fn
      {form, _meta, args} -> {form, [], args}
      other -> other
    end)
  end
end
