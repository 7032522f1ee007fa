defmodule SnakepitSidecar.Handshake do
  @moduledoc """
  The start of a conversation with a new sidecar: `{:hello, 1, opts}` out, `{:welcome, 1, info}`
  back (`docs/protocol.md`). Pure functions, except `await_welcome/4`, which receives the port's
  messages in the calling process (the port's owner, `SnakepitSidecar.Connection`).

  `opts` carries the struct modules, the TTL defaults, the cleanup interval,
  `monotonic_time:` and `monotonic_time_ms:` (this node's monotonic clock in seconds and in
  milliseconds: the sidecar presents its timestamps on that clock, and the milliseconds let it
  line its stored times up with it exactly), `time_offset_ms:` (`System.time_offset/1`: every
  sidecar of this node then stores times on the same offset, `docs/storage.md`, "Time"),
  `telemetry:` (whether `:telemetry` is loaded), `compact_variables: true`
  (`SnakepitSidecar.Client` expands the compact variables,
  `SnakepitSidecar.Protocol.expand_variables/2`) and `read_cache:` (whether the store keeps a
  read cache: the sidecar then sends `{:invalidate, :all}` after its periodic cleanup removed
  sessions and, on shared storage, pushes the other stores' changes and says
  `invalidations: true` in its welcome, `SnakepitSidecar.ReadCache`).

  Outcomes of a handshake that fails:

    * `{:error, {:sidecar_exited, status}}` — the process ended before `:welcome`: its exit
      status, or the port's reason (`:epipe`) when it was gone before the `:hello` was written
    * `{:error, {:unsupported_protocol, versions}}` — the sidecar speaks no version we speak
    * `{:error, {:storage_unavailable, message}}` — the sidecar could not open its storage (a
      SQLite path that does not open or is in use, a Redis that cannot be reached)
    * `{:error, {:hello_refused, reason, message}}` — the sidecar answered `:hello` with another
      `:protocol_error` (e.g. `{:invalid_option, key, value}`)
    * `{:error, :startup_timeout}`
  """

  alias SnakepitSidecar.Protocol

  @doc """
  The `:hello` frame for the store's validated options `config`; `now_ms` is this node's
  `System.monotonic_time(:millisecond)`.
  """
  @spec hello_frame(SnakepitSidecar.Options.t(), boolean(), integer()) :: binary()
  def hello_frame(config, telemetry?, now_ms),
    do: Protocol.encode_hello(hello_options(config, telemetry?, now_ms))

  @doc "The options map of `:hello`."
  @spec hello_options(SnakepitSidecar.Options.t(), boolean(), integer()) :: map()
  def hello_options(config, telemetry?, now_ms) do
    %{
      session_struct: config.session_struct,
      variable_struct: config.variable_struct,
      default_ttl: config.default_ttl,
      global_program_ttl: config.global_program_ttl,
      cleanup_interval: config.cleanup_interval,
      monotonic_time: Integer.floor_div(now_ms, 1000),
      monotonic_time_ms: now_ms,
      time_offset_ms: System.time_offset(:millisecond),
      telemetry: telemetry?,
      compact_variables: true,
      read_cache: SnakepitSidecar.ReadCache.enabled?(config)
    }
  end

  @doc """
  What a decoded frame means before `:welcome`: `{:ok, info}` (the handshake is done),
  `{:error, reason}` (it failed) or `:other` (a frame to handle as usual, e.g. a log frame).
  """
  @spec step({:ok, term()} | {:error, term()}) :: {:ok, map()} | {:error, term()} | :other
  def step({:ok, {:welcome, version, info}}) do
    versions = Map.get(info, :protocol_versions, [version])

    if version == Protocol.version() or Protocol.version() in List.wrap(versions),
      do: {:ok, info},
      else: {:error, {:unsupported_protocol, versions}}
  end

  def step({:ok, {:protocol_error, {:unsupported_version, _, versions}, _}}),
    do: {:error, {:unsupported_protocol, versions}}

  def step({:ok, {:protocol_error, {:storage_unavailable, message}, _}}),
    do: {:error, {:storage_unavailable, message}}

  # Before :welcome, a protocol error can only be about our :hello (e.g. an option refused).
  def step({:ok, {:protocol_error, reason, message}}),
    do: {:error, {:hello_refused, reason, message}}

  def step(_decoded), do: :other

  @doc """
  Waits for `port`'s `:welcome` until `deadline` (`System.monotonic_time(:millisecond)`).
  `on_bytes` is called with every frame that arrives (for the recording), `on_other` with every
  decoded frame that is not part of the handshake.
  """
  @spec await_welcome(port(), integer(), (binary() -> term()), (term() -> term())) ::
          {:ok, map()} | {:error, term()}
  def await_welcome(port, deadline, on_bytes, on_other) do
    remaining = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, bytes}} ->
        on_bytes.(bytes)
        decoded = Protocol.decode(bytes)

        case step(decoded) do
          :other ->
            on_other.(decoded)
            await_welcome(port, deadline, on_bytes, on_other)

          result ->
            result
        end

      {^port, {:exit_status, status}} ->
        {:error, {:sidecar_exited, status}}

      {:EXIT, ^port, reason} ->
        {:error, {:sidecar_exited, reason}}
    after
      remaining -> {:error, :startup_timeout}
    end
  end

  @doc "The sidecar's OS pid: the one it reports in `:welcome`, else the port's."
  @spec os_pid(map(), non_neg_integer() | nil) :: non_neg_integer() | nil
  def os_pid(%{os_pid: pid}, _port_os_pid) when is_integer(pid) and pid > 0, do: pid
  def os_pid(_info, port_os_pid), do: port_os_pid
end
