defmodule SnakepitSidecar.Connection do
  @moduledoc """
  The process that owns the sidecar's port, and `call/4`, the one way to send it a request.

  ## Requests

  Callers are pipelined. `call/4` hands the request to this process, which gives it the next
  integer id, writes the `{:call, id, function, args}` frame to the port and goes on with the
  next message: many requests are in flight at once, and replies are matched to their callers by
  id in whatever order they come back. A slow call never blocks the others.

  Each request has its own timeout (the store's `:call_timeout`, or the one given to `call/4`),
  enforced by this process with a timer. When it fires, the caller exits with
  `{:timeout, {SnakepitSidecar.Connection, :call, [server, function, arity]}}` — the way
  `GenServer.call/3` exits — and the reply, if it ever comes, is dropped.

  ## Start and handshake

  `start_link/1` spawns the sidecar (`SnakepitSidecar.OSProcess`), sends
  `{:hello, 1, opts}` and waits (up to `:startup_timeout`) for `{:welcome, 1, info}` before it
  returns. `opts` carries the struct modules, the TTL defaults, the cleanup interval,
  `monotonic_time: System.monotonic_time(:second)` (so the sidecar's timestamps are on this
  node's monotonic clock) and `telemetry:` (whether `:telemetry` is loaded). Start errors:

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
    telemetry?: false,
    pending: %{},
    next_id: 0,
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
          pending: %{non_neg_integer() => {GenServer.from(), reference() | nil}},
          next_id: non_neg_integer(),
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
    started = System.monotonic_time()
    metadata = %{server: server, function: function, arity: length(args)}

    outcome =
      try do
        GenServer.call(server, {:call, function, args, timeout}, :infinity)
      catch
        :exit, reason -> {:caller_exit, reason}
      end

    measurements = %{duration: System.monotonic_time() - started}

    case outcome do
      {:reply, result} ->
        Telemetry.emit([:snakepit_sidecar, :call, :stop], measurements, metadata)
        result

      {:exit, reason} ->
        exception_event(measurements, metadata, reason)
        exit({reason, {__MODULE__, :call, [server, function, length(args)]}})

      {:caller_exit, reason} ->
        exception_event(measurements, metadata, reason)
        exit(reason)
    end
  end

  @doc """
  What the store knows about its current sidecar: `%{os_pid, welcome, pending_calls,
  restarts}` (`welcome` is the `info` map of `:welcome`).
  """
  @spec info(GenServer.server()) :: map()
  def info(server), do: GenServer.call(server, :info)

  defp exception_event(measurements, metadata, reason) do
    Telemetry.emit(
      [:snakepit_sidecar, :call, :exception],
      measurements,
      Map.merge(metadata, %{kind: :exit, reason: reason})
    )
  end

  ## GenServer callbacks

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)

    case Recorder.open(config.record) do
      {:ok, recorder} ->
        case connect(%__MODULE__{config: config, recorder: recorder}, false) do
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
    id = state.next_id
    send_frame(state, Protocol.encode_call(id, function, args))

    timer =
      case timeout || state.config.call_timeout do
        :infinity -> nil
        ms -> Process.send_after(self(), {:call_timeout, id}, ms)
      end

    {:noreply, %{state | next_id: id + 1, pending: Map.put(state.pending, id, {from, timer})}}
  end

  def handle_call(:info, _from, state) do
    info = %{
      os_pid: state.os_pid,
      welcome: state.welcome,
      pending_calls: map_size(state.pending),
      restarts: length(state.restarts)
    }

    {:reply, info, state}
  end

  @impl true
  def handle_info({port, {:data, bytes}}, %{port: port} = state) do
    Recorder.record(state.recorder, :in, bytes)
    {:noreply, handle_frame(Protocol.decode(bytes), state)}
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
    if state.port do
      emit_down(state, {:shutdown, reason})
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
          state = %{state | port: port, os_pid: os_pid, welcome: info}

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
      telemetry: telemetry?
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
        if kind == :reply, do: Logger.debug("dropped the late reply to request #{id}")
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
    pending_calls = map_size(state.pending)

    for {_id, {from, timer}} <- state.pending do
      if timer, do: Process.cancel_timer(timer)
      GenServer.reply(from, {:exit, {:sidecar_down, reason}})
    end

    emit_down(state, reason)
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

  defp emit_down(state, reason) do
    Telemetry.execute(
      state.telemetry?,
      [:snakepit_sidecar, :connection, :down],
      %{pending_calls: map_size(state.pending), system_time: System.system_time()},
      %{server: self(), name: state.config.name, os_pid: state.os_pid, reason: reason}
    )
  end
end
