defmodule SnakepitSidecar.Connection do
  @moduledoc """
  The process that owns the sidecar's port: it starts the sidecar, routes every reply to its
  caller, handles the sidecar's other frames and its faults. `call/4` (`SnakepitSidecar.Client`)
  is the one way to send it a request.

  ## Requests

  Callers are pipelined: many requests are in flight at once, and replies are matched to their
  callers by integer id in whatever order they come back. A slow call never blocks the others.

  The request path is the caller's (`SnakepitSidecar.Client`): while a sidecar is up and the
  store is not recording, this process publishes its port, its table of requests in flight and
  its id counter (`SnakepitSidecar.DirectPath`), and callers write their frames to the port
  themselves. Only the replies go through this process: it reads the id from the frame's first
  bytes (`SnakepitSidecar.Protocol.peek_reply_id/1`), takes the table's entry and sends the
  reply's bytes to the caller's alias; the caller decodes them. Telemetry and log frames are
  handled here, in order, so a call's sidecar events are executed before its reply is sent on.

  When recording (`:record`), during a restart, or when the server is not a local pid or
  registered name, requests come to this process instead (`handle_call/3` of
  `{:call, function, args, timeout}`): it takes the id, writes the frame (and records it, so a
  recording has the real order), runs the request's timer and replies the same way. Timeouts
  and the exits of callers are described in `SnakepitSidecar.Client`.

  ## Start and handshake

  `start_link/1` spawns the sidecar (`SnakepitSidecar.OSProcess`), sends `{:hello, 1, opts}` and
  waits (up to `:startup_timeout`) for `{:welcome, 1, info}` before it returns
  (`SnakepitSidecar.Handshake`). Start errors:

    * `{:error, {:python_not_found, python}}`
    * `{:error, {:sidecar_exited, status}}` — the process ended before `:welcome` (for example
      `python -m sidecar` could not import the package: check `:sidecar_path`); `status` is its
      exit status, or `:epipe` when it was gone before the `:hello` could be written (the port
      then reports no status)
    * `{:error, {:unsupported_protocol, versions}}` — the sidecar speaks no version we speak
    * `{:error, {:hello_refused, reason, message}}` — the sidecar answered `:hello` with a
      `:protocol_error` (e.g. `{:invalid_option, key, value}`)
    * `{:error, :startup_timeout}`
    * `{:error, {:record_failed, reason}}` — the `:record` file could not be opened

  ## Faults

  When the sidecar's OS process ends (crash, `kill -9`, ...), every caller with a request in
  flight exits at once with `{{:sidecar_down, {:exit_status, status}}, {SnakepitSidecar.Connection,
  :call, [server, function, arity]}}`. This process then starts a new sidecar in place (same pid,
  same registered name) on the same `:storage`, and serves the requests that arrived meanwhile.
  With `storage: :memory` (the default) the new sidecar is empty: every session, variable and
  program of the old one is lost. With `{:sqlite, path}` or `{:redis, url}` it finds every write
  that was acknowledged (`docs/storage.md`); a call that was in flight may or may not have
  landed (it got no reply). If the sidecar dies more than 3 times within
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

  alias SnakepitSidecar.{
    DirectPath,
    Handshake,
    OSProcess,
    Protocol,
    ReadCache,
    Recorder,
    Telemetry
  }

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
    :cache,
    telemetry?: false,
    pending: %{},
    abandoned: %{},
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
          cache: ReadCache.t() | nil,
          pending: %{
            non_neg_integer() =>
              {GenServer.from() | {:touches, list(), GenServer.from() | nil}, reference() | nil,
               ReadCache.scope()}
          },
          abandoned: %{non_neg_integer() => ReadCache.scope()},
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
  or the exit of `GenServer.call/3` when the store is not running. Runs in the caller
  (`SnakepitSidecar.Client.call/4`).
  """
  @spec call(GenServer.server(), atom(), list(), timeout() | nil) :: term()
  defdelegate call(server, function, args, timeout \\ nil), to: SnakepitSidecar.Client

  @doc """
  What the store knows about its current sidecar: `%{os_pid, welcome, pending_calls,
  restarts, read_cache}` (`welcome` is the `info` map of `:welcome`).
  """
  @spec info(GenServer.server()) :: map()
  def info(server), do: GenServer.call(server, :info)

  @doc """
  Sends the touches the read cache owes the sidecar now, instead of at the next tick
  (`SnakepitSidecar.ReadCache`, "Sessions stay alive"), and returns once the sidecar has
  answered them and every batch sent before (the periodic one may be on its way: its expiries
  are then known when this returns). For tests; `:ok` also when the store keeps no cache.
  """
  @spec flush_touches(GenServer.server()) :: :ok
  def flush_touches(server), do: GenServer.call(server, :flush_touches)

  ## GenServer callbacks

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)

    case Recorder.open(config.record) do
      {:ok, recorder} ->
        state = %__MODULE__{
          config: config,
          recorder: recorder,
          table: DirectPath.new_table(),
          ids: :atomics.new(1, signed: false),
          cache: if(ReadCache.enabled?(config), do: ReadCache.new())
        }

        if state.cache, do: schedule_touches()

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

  # A request whose caller counts its timeout from when it made the call (`Client`): one whose
  # deadline has passed (this process was busy, e.g. starting a new sidecar) is not sent.
  def handle_call({:call, function, args, _timeout, deadline}, from, state) do
    case deadline - System.monotonic_time(:millisecond) do
      left when left <= 0 -> {:reply, {:exit, :timeout}, state}
      left -> send_request(function, args, from, left, state)
    end
  end

  def handle_call(:flush_touches, from, state), do: {:noreply, send_touches(state, from)}

  def handle_call(:info, _from, state) do
    info = %{
      os_pid: state.os_pid,
      welcome: state.welcome,
      pending_calls: pending_calls(state),
      restarts: length(state.restarts),
      read_cache: state.cache != nil and ReadCache.lookup(self()) != nil
    }

    {:reply, info, state}
  end

  defp send_request(function, args, from, wait, state) do
    id = :atomics.add_get(state.ids, 1, 1) - 1
    send_frame(state, Protocol.encode_call(id, function, args))
    timer = if wait, do: Process.send_after(self(), {:call_timeout, id}, wait)
    scope = if state.cache, do: ReadCache.scope(function, args)
    {:noreply, %{state | pending: Map.put(state.pending, id, {from, timer, scope})}}
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

  def handle_info(:send_touches, state) do
    schedule_touches()
    ReadCache.bound(state.cache)
    {:noreply, send_touches(state, nil)}
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
    DirectPath.unpublish(self(), state.alive)
    ReadCache.unpublish(self())

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
      hello = Handshake.hello_frame(config, telemetry?, System.monotonic_time(:millisecond))
      send_frame(%{state | port: port}, hello)
      deadline = System.monotonic_time(:millisecond) + config.startup_timeout
      on_bytes = &Recorder.record(state.recorder, :in, &1)
      on_other = &handle_frame(&1, state)

      case Handshake.await_welcome(port, deadline, on_bytes, on_other) do
        {:ok, info} ->
          os_pid = Handshake.os_pid(info, os_pid)
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
    alive =
      DirectPath.publish(self(), state.port, state.table, state.ids, state.config.call_timeout)

    publish_cache(state)
    %{state | alive: alive}
  end

  defp publish(state), do: state

  # The read cache serves reads with this sidecar only when it can keep it coherent: on shared
  # storage, when its welcome says it pushes the other stores' changes (ReadCache.usable?/2).
  defp publish_cache(%{cache: nil}), do: :ok

  defp publish_cache(state) do
    if ReadCache.usable?(state.config, state.welcome) do
      ReadCache.publish(self(), state.cache)
    else
      ReadCache.unpublish(self())

      Logger.debug(
        "read cache off for sidecar #{state.os_pid}: #{inspect(elem(state.config.storage, 0))} " <>
          "storage is shared and the sidecar does not push other stores' changes " <>
          "(no invalidations: true in its welcome)"
      )
    end
  end

  # Closes the direct path: callers that see the flag down go through this process.
  defp close_direct_path(state) do
    DirectPath.close(state.alive)
    %{state | alive: nil}
  end

  # Callers' requests in flight (the read cache's own touch_sessions calls are not theirs).
  defp pending_calls(state) do
    touches = Enum.count(state.pending, &touch_batch?/1)
    map_size(state.pending) - touches + DirectPath.size(state.table)
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

  defp handle_frame({:ok, {:invalidate, scope}}, state) do
    ReadCache.invalidate(state.cache, scope)
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

  # A reply of a write invalidates what it changed in the read cache before anyone has it
  # (SnakepitSidecar.ReadCache, "Coherence"), also when its caller is gone.
  defp deliver(state, id, message, kind) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        case DirectPath.take(state.table, id) do
          [{_id, alias}] ->
            send(alias, {alias, message})
            state

          [{_id, alias, scope}] ->
            ReadCache.invalidate(state.cache, scope)
            if alias != :abandoned, do: send(alias, {alias, message})
            state

          [] ->
            late(state, id, kind)
        end

      {{{:touches, session_ids, waiter}, _timer, _scope}, pending} ->
        with {:bytes, bytes} <- message,
             {:ok, {:reply, _id, answers}} when is_list(answers) <- Protocol.decode(bytes) do
          ReadCache.expiries(state.cache, session_ids, answers)
        end

        if waiter, do: GenServer.reply(waiter, :ok)
        %{state | pending: pending}

      {{from, timer, scope}, pending} ->
        if timer, do: Process.cancel_timer(timer)

        # A write that timed out on this path still invalidates when its reply comes.
        abandoned =
          if kind == :timeout and scope != nil,
            do: Map.put(state.abandoned, id, scope),
            else: state.abandoned

        if kind == :reply, do: ReadCache.invalidate(state.cache, scope)
        GenServer.reply(from, message)
        %{state | pending: pending, abandoned: abandoned}
    end
  end

  defp late(state, id, kind) do
    case Map.pop(state.abandoned, id) do
      {nil, _} ->
        if kind == :reply, do: Logger.debug("dropped the late reply to request #{id}")
        state

      {scope, abandoned} ->
        if kind == :reply, do: ReadCache.invalidate(state.cache, scope)
        %{state | abandoned: abandoned}
    end
  end

  ## The read cache's touches

  defp schedule_touches,
    do: Process.send_after(self(), :send_touches, ReadCache.touch_interval_ms())

  # One touch_sessions call for every touch owed, through this process; its answer (each
  # session's expiry) is kept when it comes (deliver/4). `waiter` is told when it has come.
  defp send_touches(%{cache: cache, port: port, welcome: welcome} = state, waiter)
       when cache != nil and port != nil and welcome != nil do
    touches = ReadCache.take_touches(cache)

    # With nothing owed, a waiter still waits for a batch the tick sent and is not answered yet:
    # an empty batch sent behind it is answered after it (replies come in order).
    if touches == [] and (waiter == nil or not touches_in_flight?(state)) do
      if waiter, do: GenServer.reply(waiter, :ok)
      state
    else
      id = :atomics.add_get(state.ids, 1, 1) - 1
      send_frame(state, Protocol.encode_call(id, :touch_sessions, [touches]))
      entry = {{:touches, Enum.map(touches, &elem(&1, 0)), waiter}, nil, nil}
      %{state | pending: Map.put(state.pending, id, entry)}
    end
  end

  defp send_touches(state, waiter) do
    if waiter, do: GenServer.reply(waiter, :ok)
    state
  end

  defp touches_in_flight?(state),
    do: Enum.any?(state.pending, &touch_batch?/1)

  defp touch_batch?({_id, {{:touches, _, _}, _, _}}), do: true
  defp touch_batch?(_), do: false

  defp logger_metadata(metadata, state) do
    atom_keyed = for {key, value} <- metadata, is_atom(key), do: {key, value}
    [sidecar_os_pid: state.os_pid] ++ atom_keyed
  end

  ## Faults

  defp sidecar_down(state, reason) do
    # First the flag (callers registering from now on see it and come through this process),
    # then every request in the table: each entry is answered by whoever takes it.
    state = close_direct_path(state)
    # Writes in flight may or may not have landed: the cache forgets everything.
    ReadCache.clear(state.cache)
    pending_calls = pending_calls(state)
    message = {:exit, {:sidecar_down, reason}}

    for alias <- DirectPath.take_all(state.table), do: send(alias, {alias, message})

    for {_id, {from, timer, _scope}} <- state.pending do
      if timer, do: Process.cancel_timer(timer)

      case from do
        {:touches, _session_ids, nil} -> :ok
        {:touches, _session_ids, waiter} -> GenServer.reply(waiter, :ok)
        from -> GenServer.reply(from, message)
      end
    end

    emit_down(state, reason, pending_calls)
    OSProcess.close(state.port, state.os_pid, 0)

    now = System.monotonic_time(:millisecond)
    recent = Enum.filter(state.restarts, &(now - &1 < @restart_window_ms))

    state = %{
      state
      | port: nil,
        os_pid: nil,
        welcome: nil,
        pending: %{},
        abandoned: %{},
        restarts: recent
    }

    Logger.error(
      "sidecar went down (#{inspect(reason)}); #{pending_calls} call(s) in flight failed; " <>
        if(length(recent) >= @restart_limit,
          do: "too many restarts, stopping",
          else: restart_note(state.config)
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

  defp restart_note(config) do
    if SnakepitSidecar.Storage.durable?(config.storage),
      do: "starting a new sidecar on the same storage (#{inspect(elem(config.storage, 0))})",
      else: "starting a new, empty sidecar"
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
