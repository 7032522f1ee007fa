defmodule SnakepitSidecar.Protocol do
  @moduledoc """
  The sidecar wire protocol (`docs/protocol.md`, version 1) as pure functions: terms to frame
  bytes and frame bytes to terms. No processes, no I/O.

  Frames are the payload of one `{:packet, 4}` packet: one term in the external term format.
  Outgoing frames are `{:hello, 1, opts}` and `{:call, id, function, args}`; incoming frames are
  `:welcome`, `:reply`, `:telemetry`, `:log` and `:protocol_error`.

  ## Defensive decoding

  `decode/1` never raises. Incoming bytes are decoded with `:erlang.binary_to_term(bin, [:safe])`,
  which refuses to create atoms that do not exist yet. That is what we want: every atom the
  sidecar legitimately sends already exists on this node, because it is either

    * an atom a caller sent (program data, variable names, struct modules from `:hello`...), which
      the caller created before sending it, or
    * part of the contract's fixed vocabulary, listed in `vocabulary/0` so that loading this module
      puts those atoms in the atom table.

  A frame that still fails (corrupt bytes, or atoms nobody here ever used) becomes an error value.
  When its first bytes show it is a `{:reply, id, ...}`, the error carries the id
  (`{:error, {:undecodable_reply, id}}`) so that the one caller waiting for it can be told at once
  instead of timing out.
  """

  @protocol_version 1

  @typedoc "A request id, unique among the requests in flight."
  @type request_id :: non_neg_integer()

  @typedoc "A log level the sidecar may send."
  @type log_level :: :debug | :info | :warning | :error

  @typedoc "A decoded, well-formed incoming frame."
  @type incoming ::
          {:welcome, pos_integer(), map()}
          | {:reply, request_id(), term()}
          | {:telemetry, [atom()], map(), map()}
          | {:log, log_level(), String.t(), map()}
          | {:protocol_error, term(), String.t()}

  @typedoc "Why an incoming frame could not be used."
  @type decode_error ::
          :decode_error
          | {:undecodable_reply, request_id()}
          | {:unexpected_frame, term()}

  @log_levels [:debug, :info, :warning, :error]

  # Atoms the sidecar may send on its own (contract vocabulary). Being literals of this module,
  # they exist as soon as it is loaded, so `[:safe]` decoding accepts them.
  @vocabulary [
    # frames and protocol errors
    :hello,
    :call,
    :welcome,
    :reply,
    :telemetry,
    :log,
    :protocol_error,
    :unsupported_version,
    :decode_error,
    :bad_frame,
    :frame_too_large,
    :unknown_call,
    :bad_arity,
    :bad_argument,
    :internal_error,
    :implementation,
    :version,
    :os_pid,
    :max_frame_bytes,
    :protocol_versions,
    :debug,
    :info,
    :warning,
    :error,
    :ok,
    :pong,
    :conflict,
    # sessions
    :id,
    :created_at,
    :last_accessed,
    :last_worker_id,
    :ttl,
    :programs,
    :variables,
    :variable_index,
    :metadata,
    :stats,
    :variable_count,
    :program_count,
    :total_variable_updates,
    :sessions_created,
    :sessions_deleted,
    :sessions_expired,
    :cleanup_runs,
    :global_programs_stored,
    :global_programs_deleted,
    :global_programs_expired,
    :current_sessions,
    :memory_usage_bytes,
    :sessions,
    :global_programs,
    # variables
    :name,
    :type,
    :value,
    :constraints,
    :last_updated_at,
    :optimization_status,
    :access_rules,
    :optimizing,
    :optimizer_id,
    :optimizer_pid,
    :started_at,
    :found,
    :missing,
    :float,
    :integer,
    :string,
    :boolean,
    :choice,
    :module,
    :embedding,
    :tensor,
    :infinity,
    :negative_infinity,
    :nan,
    # errors
    :invalid_id,
    :invalid_ttl,
    :invalid_metadata,
    :invalid_programs,
    :not_found,
    :session_not_found,
    :variable_locked_for_optimization,
    :unknown_type,
    :validation_failed,
    :already_optimizing,
    :update_failed,
    :invalid_variable,
    :invalid_variables,
    :invalid_variable_index,
    :invalid_constraints,
    :invalid_created_at,
    :invalid_last_accessed,
    :invalid_last_worker_id,
    :invalid_name,
    :invalid_pattern,
    :invalid_stats,
    :invalid_timestamps,
    :not_a_session,
    :invalid_option,
    :already_welcomed,
    :truncated_frame,
    :description,
    :source,
    :function,
    :opts,
    :line,
    :logger,
    :monotonic_time,
    Regex,
    # telemetry
    :snakepit,
    :session_store,
    :variable,
    :registered,
    :get,
    :updated,
    :deleted,
    :batch_get,
    :batch_update,
    :constraint_violation,
    :count,
    :session_id,
    :cache_hit,
    :atomic
  ]

  @doc "The protocol version this harness speaks."
  @spec version() :: pos_integer()
  def version, do: @protocol_version

  @doc "Atoms of the contract's vocabulary, guaranteed to exist once this module is loaded."
  @spec vocabulary() :: [atom()]
  def vocabulary, do: @vocabulary

  @doc """
  Encodes the `{:hello, 1, opts}` frame. `opts` is the map described in `docs/protocol.md`.
  """
  @spec encode_hello(map()) :: binary()
  def encode_hello(opts) when is_map(opts) do
    :erlang.term_to_binary({:hello, @protocol_version, opts})
  end

  @doc """
  Encodes the `{:call, id, function, args}` frame.
  """
  @spec encode_call(request_id(), atom(), list()) :: binary()
  def encode_call(id, function, args)
      when is_integer(id) and id >= 0 and is_atom(function) and is_list(args) do
    :erlang.term_to_binary({:call, id, function, args})
  end

  @doc """
  Decodes one incoming frame. Never raises.

  Returns `{:ok, frame}` for a well-formed frame of `t:incoming/0`, otherwise `{:error, reason}`
  (see `t:decode_error/0`).
  """
  @spec decode(binary()) :: {:ok, incoming()} | {:error, decode_error()}
  def decode(bytes) when is_binary(bytes) do
    case safe_binary_to_term(bytes) do
      {:ok, term} -> classify(term)
      :error -> undecodable(bytes)
    end
  end

  def decode(other), do: {:error, {:unexpected_frame, other}}

  @doc """
  Reads the request id of a `{:reply, id, ...}` frame from its first bytes without decoding
  the rest (which may hold unknown atoms or be corrupt). Returns `{:ok, id}` or `:error`.
  """
  @spec peek_reply_id(binary()) :: {:ok, request_id()} | :error
  def peek_reply_id(<<131, 80, _size::32, compressed::binary>>) do
    try do
      peek_reply_id(<<131, :zlib.uncompress(compressed)::binary>>)
    rescue
      _ -> :error
    end
  end

  def peek_reply_id(<<131, 104, 3, rest::binary>>), do: peek_reply_tag(rest)
  def peek_reply_id(<<131, 105, 3::32, rest::binary>>), do: peek_reply_tag(rest)
  def peek_reply_id(_), do: :error

  defp peek_reply_tag(<<119, 5, "reply", rest::binary>>), do: peek_integer(rest)
  defp peek_reply_tag(<<115, 5, "reply", rest::binary>>), do: peek_integer(rest)
  defp peek_reply_tag(<<118, 5::16, "reply", rest::binary>>), do: peek_integer(rest)
  defp peek_reply_tag(<<100, 5::16, "reply", rest::binary>>), do: peek_integer(rest)
  defp peek_reply_tag(_), do: :error

  defp peek_integer(<<97, int, _::binary>>), do: {:ok, int}
  defp peek_integer(<<98, int::signed-32, _::binary>>) when int >= 0, do: {:ok, int}

  defp peek_integer(<<110, n, 0, digits::binary-size(n), _::binary>>),
    do: {:ok, :binary.decode_unsigned(digits, :little)}

  defp peek_integer(_), do: :error

  defp safe_binary_to_term(bytes) do
    {:ok, :erlang.binary_to_term(bytes, [:safe])}
  rescue
    ArgumentError -> :error
  end

  defp undecodable(bytes) do
    case peek_reply_id(bytes) do
      {:ok, id} -> {:error, {:undecodable_reply, id}}
      :error -> {:error, :decode_error}
    end
  end

  defp classify({:welcome, version, info} = frame)
       when is_integer(version) and version > 0 and is_map(info),
       do: {:ok, frame}

  defp classify({:reply, id, _result} = frame) when is_integer(id) and id >= 0, do: {:ok, frame}

  defp classify({:telemetry, event, measurements, metadata} = frame)
       when is_list(event) and is_map(measurements) and is_map(metadata) do
    if event != [] and Enum.all?(event, &is_atom/1),
      do: {:ok, frame},
      else: {:error, {:unexpected_frame, frame}}
  end

  defp classify({:log, level, message, metadata} = frame)
       when level in @log_levels and is_binary(message) and is_map(metadata),
       do: {:ok, frame}

  defp classify({:protocol_error, _reason, message} = frame) when is_binary(message),
    do: {:ok, frame}

  defp classify(other), do: {:error, {:unexpected_frame, other}}
end
