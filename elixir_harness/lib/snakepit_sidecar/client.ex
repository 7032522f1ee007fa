defmodule SnakepitSidecar.Client do
  @moduledoc """
  The caller's side of a request: `call/4` runs in the calling process, sends the request and
  waits for its reply.

  ## The read cache

  When the store keeps one (`SnakepitSidecar.ReadCache`), `get_variable`, `get_variable_value`,
  `has_variable?` and `get_variables` are first looked up there, in this process; a hit never
  reaches the sidecar (its `:get` event is emitted here, `cache_hit: true`). A miss takes the
  cache's stamp first, then goes to the sidecar as below (`get_variable_value` and
  `has_variable?` as `get_variable`) and keeps the answer under that stamp. Every other call
  registers what it invalidates (`ReadCache.scope/2`) with its request, for the owner to apply
  before it passes the reply on; a write that times out leaves its entry to the owner, marked
  abandoned, instead of taking it back.

  ## Two paths

  **Direct.** While the owner (`SnakepitSidecar.Connection`) has published its direct path
  (`SnakepitSidecar.DirectPath`), the caller monitors the owner (with an alias, like
  `GenServer.call/3`), takes the next id, registers `{id, alias}` in the table, encodes the frame
  and writes it to the port itself (`Port.command/2`: any process may write to a port). The
  owner reads the id from the reply frame's first bytes and sends the frame's bytes to the
  alias; the caller decodes them.

  **Through the owner.** When recording, during a restart, or when the server is not a local
  pid or registered name, the request goes to the owner (`GenServer.call/3` with
  `{:call, function, args, timeout}`): it takes the id, writes the frame (and records it) and
  answers the same way.

  Either way the answer is one of `{:bytes, reply_frame}`, `{:reply, result}` or
  `{:exit, reason}` — the whole seam between this module and the owner.

  ## Timeouts and exits

  Each request has its own timeout (the store's `:call_timeout`, or the one given to `call/4`),
  counted from when the caller made the call, whichever path it takes. On the direct path the
  caller waits with `receive ... after`; on the owner path it sends its deadline along
  (`{:call, function, args, timeout, deadline}`), waits for the owner no longer than that (the
  owner may be busy starting a new sidecar), and the owner answers a request whose deadline has
  passed with a timeout without sending it, and runs a timer for the rest of it otherwise. When
  it expires the caller exits with
  `{:timeout, {SnakepitSidecar.Connection, :call, [server, function, arity]}}` — the way
  `GenServer.call/3` exits, naming the public entry point `SnakepitSidecar.Connection.call/4` —
  its table entry is removed, and the reply, if it ever comes, is dropped (the alias is
  deactivated, so not even a stray message is left). A caller also exits at once if the owner
  dies while it waits (it monitors it, as `GenServer.call/3` does).

  ## The reply path

  Every reply reaches its caller through one place, `call/4`'s `{:reply, result}` branch, in the
  caller, after the bytes are decoded: compact variables are expanded there
  (`SnakepitSidecar.Protocol.expand_variables/2`) and the call's telemetry is emitted. Anything
  that must see every reply before its caller does belongs there.
  """

  alias SnakepitSidecar.{DirectPath, Protocol, ReadCache, Telemetry}

  @cached ReadCache.cached_calls()

  @doc """
  Sends `function(args...)` to the sidecar of `server` and returns its result term; exits when
  no reply comes (see the moduledoc). `timeout` (ms or `:infinity`) overrides the store's
  `:call_timeout` for this call.
  """
  @spec call(GenServer.server(), atom(), list(), timeout() | nil) :: term()
  def call(server, function, args, timeout \\ nil)
      when is_atom(function) and is_list(args) and
             (is_nil(timeout) or timeout == :infinity or (is_integer(timeout) and timeout > 0)) do
    if function in @cached,
      do: cached_call(server, function, args, timeout),
      else: sidecar_call(server, function, args, timeout)
  end

  ## Reads from the cache (SnakepitSidecar.ReadCache)

  defp cached_call(server, function, args, timeout) do
    case cache_of(server) do
      nil -> sidecar_call(server, function, args, timeout)
      cache -> from_cache(cache, server, function, args, timeout)
    end
  end

  defp cache_of(server) do
    case GenServer.whereis(server) do
      pid when is_pid(pid) and node(pid) == node() -> ReadCache.lookup(pid)
      _ -> nil
    end
  end

  defguardp is_ident(ident)
            when (is_atom(ident) and ident not in [nil, true, false]) or is_binary(ident)

  # A hit answers what the sidecar would (the variable struct, its :get event with
  # cache_hit: true); a miss asks the sidecar with a stamp taken first and keeps the answer.
  defp from_cache(cache, server, :get_variable, [session_id, ident] = args, timeout)
       when is_binary(session_id) and is_ident(ident) do
    case ReadCache.fetch(cache, session_id, ident) do
      {:hit, variable} ->
        get_event(session_id)
        {:ok, variable}

      {:miss, stamp} ->
        case sidecar_call(server, :get_variable, args, timeout) do
          {:ok, variable} = found ->
            ReadCache.fill(cache, session_id, ident, stamp, variable)
            found

          other ->
            other
        end
    end
  end

  # Asked as get_variable (the sidecar's get_variable_value and has_variable? are get_variable
  # too: same touch, same :get event, the default or false on any error).
  defp from_cache(cache, server, :get_variable_value, [session_id, ident | default], timeout)
       when is_binary(session_id) and is_ident(ident) and length(default) <= 1 do
    case from_cache(cache, server, :get_variable, [session_id, ident], timeout) do
      {:ok, variable} -> variable.value
      _ -> List.first(default)
    end
  end

  defp from_cache(cache, server, :has_variable?, [session_id, ident], timeout)
       when is_binary(session_id) and is_ident(ident),
       do:
         match?({:ok, _}, from_cache(cache, server, :get_variable, [session_id, ident], timeout))

  defp from_cache(cache, server, :get_variables, [session_id, [_ | _] = idents] = args, timeout)
       when is_binary(session_id) do
    if Enum.all?(idents, fn ident -> is_ident(ident) end),
      do: batch_from_cache(cache, server, session_id, idents, args, timeout),
      else: sidecar_call(server, :get_variables, args, timeout)
  end

  defp from_cache(_cache, server, function, args, timeout),
    do: sidecar_call(server, function, args, timeout)

  defp batch_from_cache(cache, server, session_id, idents, args, timeout) do
    case ReadCache.fetch_all(cache, session_id, idents) do
      {:hit, variables} ->
        Telemetry.emit(
          [:snakepit, :session_store, :variables, :batch_get],
          %{count: length(idents)},
          %{session_id: session_id}
        )

        found = idents |> Enum.zip(variables) |> Map.new(fn {i, var} -> {to_string(i), var} end)
        {:ok, %{found: found, missing: []}}

      {:miss, stamp} ->
        result = sidecar_call(server, :get_variables, args, timeout)

        with {:ok, %{found: found}} when is_map(found) <- result do
          for ident <- idents,
              {:ok, variable} <- [Map.fetch(found, to_string(ident))],
              do: ReadCache.fill(cache, session_id, ident, stamp, variable)
        end

        result
    end
  end

  defp get_event(session_id) do
    Telemetry.emit(
      [:snakepit, :session_store, :variable, :get],
      %{count: 1},
      %{session_id: session_id, cache_hit: true}
    )
  end

  ## Calls to the sidecar

  defp sidecar_call(server, function, args, timeout) do
    # The call events cost nothing when :telemetry is not loaded: one loaded-code check.
    started = if Telemetry.available?(), do: System.monotonic_time()

    case request(server, function, args, timeout) do
      {:reply, result} ->
        result = Protocol.expand_variables(function, result)

        if started do
          Telemetry.emit(
            [:snakepit_sidecar, :call, :stop],
            %{duration: System.monotonic_time() - started},
            %{server: server, function: function, arity: length(args)}
          )
        end

        result

      {:exit, reason} ->
        exception_event(started, server, function, args, reason)
        exit({reason, {SnakepitSidecar.Connection, :call, [server, function, length(args)]}})

      {:caller_exit, reason} ->
        exception_event(started, server, function, args, reason)
        exit(reason)
    end
  end

  defp exception_event(started, server, function, args, reason) do
    Telemetry.emit(
      [:snakepit_sidecar, :call, :exception],
      %{duration: if(started, do: System.monotonic_time() - started, else: 0)},
      %{server: server, function: function, arity: length(args), kind: :exit, reason: reason}
    )
  end

  defp request(server, function, args, timeout) do
    with pid when is_pid(pid) <- GenServer.whereis(server),
         {port, table, ids, alive, call_timeout} <- DirectPath.lookup(pid) do
      wait = timeout || call_timeout

      if DirectPath.open?(alive) do
        # What the call invalidates in the read cache, applied by the owner before it passes on
        # the reply (SnakepitSidecar.ReadCache, "Coherence").
        scope = if ReadCache.lookup(pid), do: ReadCache.scope(function, args)
        direct(pid, {port, table, ids, alive, scope}, {server, function, args, timeout}, wait)
      else
        # a restart is under way: the owner may be busy for a while, so the deadline goes along
        via_owner(server, function, args, timeout, deadline(wait))
      end
    else
      _ -> via_owner(server, function, args, timeout, deadline(timeout))
    end
  end

  # When a call's time runs out, in this node's monotonic milliseconds (nil: the owner's own
  # `:call_timeout`, or never).
  defp deadline(nil), do: nil
  defp deadline(:infinity), do: nil
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  # The caller registers itself and writes the frame; the owner only routes the reply back.
  defp direct(
         pid,
         {port, table, ids, alive, scope},
         {server, function, args, timeout} = context,
         wait
       ) do
    id = :atomics.add_get(ids, 1, 1) - 1
    frame = Protocol.encode_call(id, function, args)
    mref = :erlang.monitor(:process, pid, [{:alias, :demonitor}])

    cond do
      # The table died with its owner a moment ago.
      not DirectPath.register(table, id, mref, scope) ->
        :erlang.demonitor(mref, [:flush])
        via_owner(server, function, args, timeout, deadline(wait))

      # Checked after the insert: the owner clears `alive` before it fails the requests in
      # the table, so either it finds this entry or this caller sees the flag down.
      DirectPath.open?(alive) ->
        try do
          Port.command(port, frame)
        rescue
          # The port just closed; the owner fails this request when it handles the exit.
          ArgumentError -> :ok
        end

        await(mref, {table, id, scope != nil}, wait, context)

      true ->
        case DirectPath.take(table, id) do
          [_] ->
            :erlang.demonitor(mref, [:flush])
            via_owner(server, function, args, timeout, deadline(wait))

          [] ->
            # The owner took the entry: its answer (an exit) is on its way.
            await(mref, {table, id, scope != nil}, :infinity, context)
        end
    end
  end

  defp await(mref, {table, id, scoped?} = entry, timeout, context) do
    receive do
      {^mref, reply} ->
        :erlang.demonitor(mref, [:flush])
        unwrap(reply)

      {:DOWN, ^mref, _, _, reason} ->
        # The store died while this caller waited: exit as GenServer.call/3 would have.
        {server, function, args, call_timeout} = context

        {:caller_exit,
         {reason, {GenServer, :call, [server, {:call, function, args, call_timeout}, :infinity]}}}
    after
      timeout ->
        if give_up(table, id, scoped?) do
          # Nobody will answer this id now; a late reply is dropped (after its invalidation,
          # for a write), and demonitor deactivates the alias, so nothing can reach this
          # process later.
          :erlang.demonitor(mref, [:flush])
          {:exit, :timeout}
        else
          # The owner took the entry just now: its answer is on its way.
          await(mref, entry, :infinity, context)
        end
    end
  end

  # A write's entry stays for the owner, marked abandoned: its reply must still invalidate.
  defp give_up(table, id, true), do: DirectPath.abandon(table, id)
  defp give_up(table, id, false), do: DirectPath.take(table, id) != []

  defp via_owner(server, function, args, timeout, nil) do
    unwrap(GenServer.call(server, {:call, function, args, timeout}, :infinity))
  catch
    :exit, reason -> {:caller_exit, reason}
  end

  # With a deadline: the owner is asked to answer a request whose time has run out with a
  # timeout, and this caller waits for the owner no longer than the time that is left.
  defp via_owner(server, function, args, timeout, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)
    unwrap(GenServer.call(server, {:call, function, args, timeout, deadline}, wait))
  catch
    :exit, {:timeout, {GenServer, :call, _}} -> {:exit, :timeout}
    :exit, reason -> {:caller_exit, reason}
  end

  # Replies carry the frame's bytes, decoded here, in the caller, so the owner process is not
  # the bottleneck of many concurrent callers (and a large result is not copied between them).
  defp unwrap({:bytes, bytes}) do
    case Protocol.decode(bytes) do
      {:ok, {:reply, _id, result}} -> {:reply, result}
      _ -> {:exit, :undecodable_reply}
    end
  end

  defp unwrap({:reply, _result} = reply), do: reply
  defp unwrap({:exit, _reason} = exit), do: exit
end
