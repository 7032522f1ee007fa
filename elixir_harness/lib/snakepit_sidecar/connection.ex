defmodule SnakepitSidecar.Connection do
  @moduledoc """
  The process that owns the sidecar's port, and `call/4`, the one way to send it a request.

  ## Requests

  Callers are pipelined: many requests are in flight at once, and replies are matched to their
  callers by integer id in whatever order they come back. A slow call never blocks the others.

  The request path skips this process. While a sidecar is up (and the store is not recording),
  this process publishes its port, a public ETS table of the requests in flight and an
  `:atomics` id counter under `{SnakepitSidecar.Connection, pid}` in `:persistent_term`. A
  caller monitors this process (with an alias, like `GenServer.call/3`), takes the next id,
  inserts `{id, alias}` into the table, encodes the frame and writes it to the port itself
  (`Port.command/2`: any process may write to a port). Only the replies go through this process:
  it reads the id from the frame's first bytes (`SnakepitSidecar.Protocol.peek_reply_id/1`),
  takes the table's entry and sends the reply's bytes to the caller's alias; the caller decodes
  them. Telemetry and log frames are still handled here, in order, so a call's sidecar events
  are executed before its reply is sent on.

  When recording (`:record`), during a restart, or when the server is not a local pid or
  registered name, requests go through this process instead (`GenServer.call/3`): it takes the
  id, writes the frame (and records it, so a recording has the real order) and replies the same
  way.

  Each request has its own timeout (the store's `:call_timeout`, or the one given to `call/4`),
  counted from when the caller made the call, whichever path it takes. On the direct path the
  caller waits with `receive ... after`; on the owner path it sends its deadline along, waits
  for this process no longer than that (this process may be busy starting a new sidecar), and
  this process answers a request whose deadline has passed with a timeout without sending it,
  and runs a timer for the rest of it otherwise. Either way, when it expires the caller exits
  with `{:timeout, {SnakepitSidecar.Connection, :call, [server, function, arity]}}` — the way
  `GenServer.call/3` exits — its table entry is removed, and the reply, if it ever comes, is
  dropped (the alias is deactivated, so not even a stray message is left). A caller also exits
  at once if this process dies while it waits (it monitors it, as `GenServer.call/3` does).

  ## Start and handshake

  `start_link/1` spawns the sidecar (`SnakepitSidecar.OSProcess`), sends
  `{:hello, 1, opts}` and waits (up to `:startup_timeout`) for `{:welcome, 1, info}` before it
  returns. `opts` carries the struct modules, the TTL defaults, the cleanup interval,
  `monotonic_time: System.monotonic_time(:second)` (so the sidecar's timestamps are on this
  node's monotonic clock), `telemetry:` (whether `:telemetry` is loaded) and
  `compact_variables: true` (`call/4` expands the compact variables,
  `SnakepitSidecar.Protocol.expand_variables/2`). Start errors:

    * `{:error, {:python_not_found, python}}`
    * `{:error, {:sidecar_exited, status}}` — the process ended before `:welcome` (for example
      `python -m sidecar` could not import the package: check `:sidecar_path`)
    * `{:error, {:unsupported_protocol, versions}}` — the sidecar speaks no version we speak
    * `{:error, {:hello_refused, reason, message}}` — the sidecar answered `:hello` with a
      `:protocol_error` (e.g. `{:invalid_option, key, value}`)
    * `{:error, :startup_timeout}`
    * `{:error, {:record_failed, reason}}` — the `:record` file could not be opened

  ## Faults

  When the sidecar's OS process ends (crash, `kill -9`, ...), every caller with a request in
  flight exits at once with `{{:sidecar_down, {:exit_status, status}}, {SnakepitSidecar.Connection,
  :call, [server, function, arity]}}`. This process then starts a **new, empty** sidecar in place
  (same pid, same registered name) and serves the requests that arrived meanwhile: every session,
  variable and program of the old sidecar is lost. If the sidecar dies more than 3 times within
  5 seconds, or a new one cannot be started, this process stops with
  `{:sidecar_down, reason}` and its supervisor decides what happens next.

  When this process stops (normally or by its supervisor), it closes the port: the sidecar sees
  EOF on stdin and exits. If its OS process is still there 500 ms later, it is killed with
  SIGKILL. If this process is killed brutally (`:kill`), the port closes with it and the sidecar
  exits on EOF.

  ## Incoming frames

  Everything from the port is decoded defensively (`SnakepitSidecar.Protocol.decode/1`); a frame
  that makes no sense is logged and dropped, never a crash of this process. `:telemetry` frames
  are executed (see `SnakepitSidecar.Telemetry`), `:log` frames go to `Logger` at their level,
  `:protocol_error` frames are logged as errors.
  """

  use GenServer
  require Logger

  alias SnakepitSidecar.{OSProcess, Protocol, Recorder, Telemetry}

  @restart_limit 3
  @restart_window_ms 5_000

  defstruct [
    :config,
    :port,
    :os_pid,
    :welcome,
    :recorder,
    :table,
    :ids,
    :alive,
    telemetry?: false,
    pending: %{},
    restarts: []
  ]

  @typedoc false
  @type t :: %__MODULE__{
          config: SnakepitSidecar.Options.t(),
          port: port() | nil,
          os_pid: non_neg_integer() | nil,
          welcome: map() | nil,
          recorder: Recorder.t(),
          telemetry?: boolean(),
          table: :ets.tid(),
          ids: :atomics.atomics_ref(),
          alive: :atomics.atomics_ref() | nil,
          pending: %{non_neg_integer() => {GenServer.from(), reference() | nil}},
          restarts: [integer()]
        }

  @doc """
  Starts the connection with validated options (`SnakepitSidecar.Options.validate/2`).
  """
  @spec start_link(SnakepitSidecar.Options.t()) :: GenServer.on_start()
  def start_link(%{} = config) do
    case config.name do
      nil -> GenServer.start_link(__MODULE__, config)
      name -> GenServer.start_link(__MODULE__, config, name: name)
    end
  end

  @doc """
  Sends `function(args...)` to the sidecar and returns its result term.

  `timeout` (ms or `:infinity`) overrides the store's `:call_timeout` for this call. Exits when
  no reply comes: `{:timeout, ...}`, `{{:sidecar_down, reason}, ...}`, `{:undecodable_reply, ...}`
  (all with `{SnakepitSidecar.Connection, :call, [server, function, arity]}` as second element),
  or the exit of `GenServer.call/3` when the store is not running.
  """
  @spec call(GenServer.server(), atom(), list(), timeout() | nil) :: term()
  def call(server, function, args, timeout \\ nil)
      when is_atom(function) and is_list(args) and
             (is_nil(timeout) or timeout == :infinity or (is_integer(timeout) and timeout > 0)) do
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
        exit({reason, {__MODULE__, :call, [server, function, length(args)]}})

      {:caller_exit, reason} ->
        exception_event(started, server, function, args, reason)
        exit(reason)
    end
  end

  @doc """
  What the store knows about its current sidecar: `%{os_pid, welcome, pending_calls,
  restarts}` (`welcome` is the `info` map of `:welcome`).
  """
  @spec info(GenServer.server()) :: map()
  def info(server), do: GenServer.call(server, :info)

  defp exception_event(started, server, function, args, reason) do
    Telemetry.emit(
      [:snakepit_sidecar, :call, :exception],
      %{duration: if(started, do: System.monotonic_time() - started, else: 0)},
      %{server: server, function: function, arity: length(args), kind: :exit, reason: reason}
    )
  end

  ## The request path (in the caller)

  defp request(server, function, args, timeout) do
    with pid when is_pid(pid) <- GenServer.whereis(server),
         {port, table, ids, alive, call_timeout} <- :persistent_term.get({__MODULE__, pid}, nil) do
      wait = timeout || call_timeout

      if :atomics.get(alive, 1) == 1 do
        direct(pid, {port, table, ids, alive}, {server, function, args, timeout}, wait)
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
  defp direct(pid, {port, table, ids, alive}, {server, function, args, timeout} = context, wait) do
    id = :atomics.add_get(ids, 1, 1) - 1
    frame = Protocol.encode_call(id, function, args)
    mref = :erlang.monitor(:process, pid, [{:alias, :demonitor}])

    registered =
      try do
        :ets.insert(table, {id, mref})
      rescue
        # The table died with its owner a moment ago.
        ArgumentError -> false
      end

    cond do
      not registered ->
        :erlang.demonitor(mref, [:flush])
        via_owner(server, function, args, timeout, deadline(wait))

      # Checked after the insert: the owner clears `alive` before it fails the requests in
      # the table, so either it finds this entry or this caller sees the flag down.
      :atomics.get(alive, 1) == 1 ->
        try do
          Port.command(port, frame)
        rescue
          # The port just closed; the owner fails this request when it handles the exit.
          ArgumentError -> :ok
        end

        await(mref, table, id, wait, context)

      true ->
        case take(table, id) do
          [_] ->
            :erlang.demonitor(mref, [:flush])
            via_owner(server, function, args, timeout, deadline(wait))

          [] ->
            # The owner took the entry: its answer (an exit) is on its way.
            await(mref, table, id, :infinity, context)
        end
    end
  end

  defp await(mref, table, id, timeout, context) do
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
        case take(table, id) do
          [_] ->
            # Nobody will answer this id now; a late reply finds no entry and is dropped, and
            # demonitor deactivates the alias, so nothing can reach this process later.
            :erlang.demonitor(mref, [:flush])
            {:exit, :timeout}

          [] ->
            # The owner took the entry just now: its answer is on its way.
            await(mref, table, id, :infinity, context)
        end
    end
  end

  defp take(table, id) do
    :ets.take(table, id)
  rescue
    ArgumentError -> []
  end

  defp via_owner(server, function, args, timeout, nil) do
    unwrap(GenServer.call(server, {:call, function, args, timeout}, :infinity))
  catch
    :exit, reason -> {:caller_exit, reason}
  end

  defp via_owner(server, function, args, timeout, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)
    unwrap(GenServer.call(server, {:call, function, args, timeout, deadline}, wait))
  catch
    # the owner did not get to it in time (starting a new sidecar): the call's own timeout
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

  ## GenServer callbacks

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)

    case Recorder.open(config.record) do
      {:ok, recorder} ->
        state = %__MODULE__{
          config: config,
          recorder: recorder,
          table: :ets.new(__MODULE__, [:set, :public, write_concurrency: true]),
          ids: :atomics.new(1, signed: false)
        }

        case connect(state, false) do
          {:ok, state} ->
            {:ok, state}

          {:error, reason} ->
            Recorder.close(recorder)
            {:stop, reason}
        end

      {:error, reason} ->
        {:stop, {:record_failed, reason}}
    end
  end

  @impl true
  def handle_call({:call, function, args, timeout}, from, state) do
    case timeout || state.config.call_timeout do
      :infinity -> send_request(function, args, from, nil, state)
      ms -> send_request(function, args, from, ms, state)
    end
  end

  # A request that carries its caller's deadline (it may have waited for a restart).
  def handle_call({:call, function, args, _timeout, deadline}, from, state) do
    case deadline - System.monotonic_time(:millisecond) do
      # its caller has given up (or is about to): do not send what nobody waits for
      left when left <= 0 -> {:reply, {:exit, :timeout}, state}
      left -> send_request(function, args, from, left, state)
    end
  end

  def handle_call(:info, _from, state) do
    info = %{
      os_pid: state.os_pid,
      welcome: state.welcome,
      pending_calls: pending_calls(state),
      restarts: length(state.restarts)
    }

    {:reply, info, state}
  end

  defp send_request(function, args, from, wait, state) do
    id = :atomics.add_get(state.ids, 1, 1) - 1
    send_frame(state, Protocol.encode_call(id, function, args))
    timer = if wait, do: Process.send_after(self(), {:call_timeout, id}, wait)
    {:noreply, %{state | pending: Map.put(state.pending, id, {from, timer})}}
  end

  @impl true
  def handle_info({port, {:data, bytes}}, %{port: port} = state) do
    Recorder.record(state.recorder, :in, bytes)

    # A reply is routed by the id in its first bytes and decoded by its caller; anything else
    # is decoded and handled here.
    case Protocol.peek_reply_id(bytes) do
      {:ok, id} -> {:noreply, deliver(state, id, {:bytes, bytes}, :reply)}
      :error -> {:noreply, handle_frame(Protocol.decode(bytes), state)}
    end
  end

  def handle_info({:call_timeout, id}, state) do
    {:noreply, deliver(state, id, {:exit, :timeout}, :timeout)}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    sidecar_down(state, {:exit_status, status})
  end

  def handle_info({:EXIT, port, reason}, %{port: port} = state) do
    sidecar_down(state, {:port_exit, reason})
  end

  def handle_info(_stale_or_unknown, state) do
    # Messages of a previous port, EXITs of ports we closed, stray messages: nothing to do.
    {:noreply, state}
  end

  @impl true
  def terminate(reason, state) do
    unpublish(state)

    if state.port do
      emit_down(state, {:shutdown, reason}, pending_calls(state))
      OSProcess.close(state.port, state.os_pid, 500)
    end

    Recorder.close(state.recorder)
    :ok
  end

  ## Connecting

  defp connect(state, restart?) do
    config = state.config
    started = System.monotonic_time()
    telemetry? = Telemetry.detect()
    state = %{state | telemetry?: telemetry?}

    with {:ok, port, os_pid} <- OSProcess.open(config) do
      send_frame(%{state | port: port}, Protocol.encode_hello(hello_options(config, telemetry?)))
      deadline = System.monotonic_time(:millisecond) + config.startup_timeout

      case await_welcome(state, port, deadline) do
        {:ok, info} ->
          os_pid = welcome_os_pid(info, os_pid)
          state = publish(%{state | port: port, os_pid: os_pid, welcome: info})

          Telemetry.execute(
            telemetry?,
            [:snakepit_sidecar, :connection, :up],
            %{duration: System.monotonic_time() - started, system_time: System.system_time()},
            %{
              server: self(),
              name: config.name,
              os_pid: os_pid,
              version: Map.get(info, :version),
              restart: restart?
            }
          )

          {:ok, state}

        {:error, reason} ->
          OSProcess.close(port, os_pid, 200)
          {:error, reason}
      end
    end
  end

  # Opens the direct request path for this sidecar (see the moduledoc), unless recording: a
  # recording must have the frames in the order they really crossed the port.
  defp publish(%{recorder: nil} = state) do
    alive = :atomics.new(1, [])
    :atomics.put(alive, 1, 1)
    term = {state.port, state.table, state.ids, alive, state.config.call_timeout}
    :persistent_term.put({__MODULE__, self()}, term)
    %{state | alive: alive}
  end

  defp publish(state), do: state

  # Closes the direct path: callers that see the flag down go through this process.
  defp close_direct_path(%{alive: nil} = state), do: state

  defp close_direct_path(state) do
    :atomics.put(state.alive, 1, 0)
    %{state | alive: nil}
  end

  defp unpublish(state) do
    _ = close_direct_path(state)
    _ = :persistent_term.erase({__MODULE__, self()})
    :ok
  end

  defp pending_calls(state), do: map_size(state.pending) + :ets.info(state.table, :size)

  defp welcome_os_pid(%{os_pid: pid}, _port_os_pid) when is_integer(pid) and pid > 0, do: pid
  defp welcome_os_pid(_info, port_os_pid), do: port_os_pid

  defp hello_options(config, telemetry?) do
    %{
      session_struct: config.session_struct,
      variable_struct: config.variable_struct,
      default_ttl: config.default_ttl,
      global_program_ttl: config.global_program_ttl,
      cleanup_interval: config.cleanup_interval,
      monotonic_time: System.monotonic_time(:second),
      telemetry: telemetry?,
      compact_variables: true
    }
  end

  defp await_welcome(state, port, deadline) do
    remaining = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, bytes}} ->
        Recorder.record(state.recorder, :in, bytes)

        case handshake_step(Protocol.decode(bytes), state) do
          :continue -> await_welcome(state, port, deadline)
          result -> result
        end

      {^port, {:exit_status, status}} ->
        {:error, {:sidecar_exited, status}}

      {:EXIT, ^port, reason} ->
        {:error, {:sidecar_exited, reason}}
    after
      remaining -> {:error, :startup_timeout}
    end
  end

  defp handshake_step({:ok, {:welcome, version, info}}, _state) do
    versions = Map.get(info, :protocol_versions, [version])

    if version == Protocol.version() or Protocol.version() in List.wrap(versions),
      do: {:ok, info},
      else: {:error, {:unsupported_protocol, versions}}
  end

  defp handshake_step({:ok, {:protocol_error, {:unsupported_version, _, versions}, _}}, _state),
    do: {:error, {:unsupported_protocol, versions}}

  # Before :welcome, a protocol error can only be about our :hello (e.g. an option refused).
  defp handshake_step({:ok, {:protocol_error, reason, message}}, _state),
    do: {:error, {:hello_refused, reason, message}}

  defp handshake_step(decoded, state) do
    _ = handle_frame(decoded, state)
    :continue
  end

  ## Frames

  defp send_frame(state, frame) do
    Recorder.record(state.recorder, :out, frame)

    try do
      Port.command(state.port, frame)
    rescue
      # The port is already closed; its exit message is on its way and fails the request.
      ArgumentError -> :ok
    end
  end

  defp handle_frame({:ok, {:reply, id, result}}, state),
    do: deliver(state, id, {:reply, result}, :reply)

  defp handle_frame({:ok, {:telemetry, event, measurements, metadata}}, state) do
    Telemetry.execute(state.telemetry?, event, measurements, metadata)
    state
  end

  defp handle_frame({:ok, {:log, level, message, metadata}}, state) do
    Logger.log(level, message, logger_metadata(metadata, state))
    state
  end

  defp handle_frame({:ok, {:protocol_error, reason, message}}, state) do
    Logger.error("sidecar protocol error #{inspect(reason)}: #{message}")
    state
  end

  defp handle_frame({:ok, {:welcome, _, _}}, state) do
    Logger.warning("unexpected :welcome from the sidecar after the handshake; ignored")
    state
  end

  defp handle_frame({:error, {:undecodable_reply, id}}, state),
    do: deliver(state, id, {:exit, :undecodable_reply}, :reply)

  defp handle_frame({:error, reason}, state) do
    Logger.error("dropped a frame from the sidecar: #{inspect(reason, limit: 20)}")
    state
  end

  defp deliver(state, id, message, kind) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        case :ets.take(state.table, id) do
          [{_id, alias}] ->
            send(alias, {alias, message})

          [] ->
            if kind == :reply, do: Logger.debug("dropped the late reply to request #{id}")
        end

        state

      {{from, timer}, pending} ->
        if timer, do: Process.cancel_timer(timer)
        GenServer.reply(from, message)
        %{state | pending: pending}
    end
  end

  defp logger_metadata(metadata, state) do
    atom_keyed = for {key, value} <- metadata, is_atom(key), do: {key, value}
    [sidecar_os_pid: state.os_pid] ++ atom_keyed
  end

  ## Faults

  defp sidecar_down(state, reason) do
    # First the flag (callers registering from now on see it and come through this process),
    # then every request in the table: each entry is answered by whoever takes it.
    state = close_direct_path(state)
    pending_calls = pending_calls(state)
    message = {:exit, {:sidecar_down, reason}}

    for {id, _alias} <- :ets.tab2list(state.table),
        [{_, alias}] <- [:ets.take(state.table, id)] do
      send(alias, {alias, message})
    end

    for {_id, {from, timer}} <- state.pending do
      if timer, do: Process.cancel_timer(timer)
      GenServer.reply(from, message)
    end

    emit_down(state, reason, pending_calls)
    OSProcess.close(state.port, state.os_pid, 0)

    now = System.monotonic_time(:millisecond)
    recent = Enum.filter(state.restarts, &(now - &1 < @restart_window_ms))
    state = %{state | port: nil, os_pid: nil, welcome: nil, pending: %{}, restarts: recent}

    Logger.error(
      "sidecar went down (#{inspect(reason)}); #{pending_calls} call(s) in flight failed; " <>
        if(length(recent) >= @restart_limit,
          do: "too many restarts, stopping",
          else: "starting a new, empty sidecar"
        )
    )

    if length(recent) >= @restart_limit do
      {:stop, {:sidecar_down, reason}, state}
    else
      case connect(%{state | restarts: [now | recent]}, true) do
        {:ok, state} ->
          {:noreply, state}

        {:error, restart_error} ->
          {:stop, {:sidecar_down, {:restart_failed, restart_error}}, state}
      end
    end
  end

  defp emit_down(state, reason, pending_calls) do
    Telemetry.execute(
      state.telemetry?,
      [:snakepit_sidecar, :connection, :down],
      %{pending_calls: pending_calls, system_time: System.system_time()},
      %{server: self(), name: state.config.name, os_pid: state.os_pid, reason: reason}
    )
  end
end
