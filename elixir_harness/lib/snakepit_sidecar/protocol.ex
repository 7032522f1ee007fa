defmodule SnakepitSidecar.Protocol do
  @moduledoc """
  The sidecar wire protocol (`docs/protocol.md`, version 1) as pure functions: terms to frame
  bytes and frame bytes to terms. No processes, no I/O.

  Frames are the payload of one `{:packet, 4}` packet: one term in the external term format.
  Outgoing frames are `{:hello, 1, opts}` and `{:call, id, function, args}`; incoming frames are
  `:welcome`, `:reply`, `:telemetry`, `:log`, `:protocol_error` and `:invalidate` (what the read
  cache must forget, `SnakepitSidecar.ReadCache`).

  ## Defensive decoding

  `decode/1` never raises. A frame that is not a valid term, or a term that is not a frame of
  the protocol, becomes an error value. When its first bytes show it is a `{:reply, id, ...}`,
  the error carries the id (`{:error, {:undecodable_reply, id}}`) so that the one caller waiting
  for it is told at once instead of timing out.

  ## Compact variables

  The harness says `compact_variables: true` in `:hello`, and the sidecar then answers
  `get_variable`, `get_variables` and `list_variables` with each variable as a tuple,
  `{module, id, name, type, value, constraints, metadata, version, created_at, last_updated_at,
  optimization_status, access_rules}`, the default optimization status as `nil`.
  `expand_variables/2` turns those back into the structs the contract returns, so callers
  never see the tuples. Decoding the tuple costs the BEAM about a quarter of decoding the struct
  (`docs/benchmarks.md`, the fourth pass).

  Frames are decoded without `[:safe]`. The sidecar is a child process of this node, not a
  network peer, and the only atoms it sends are the ones it was sent plus the fixed vocabulary
  of `docs/protocol.md` and the contract; with `[:safe]`, every atom the sidecar ever starts to
  return would have to be pre-registered here, and one forgotten atom turns a correct reply
  into a failed call at run time.
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
          | {:invalidate, :all | [String.t()]}

  @typedoc "Why an incoming frame could not be used."
  @type decode_error ::
          :decode_error
          | {:undecodable_reply, request_id()}
          | {:unexpected_frame, term()}

  @log_levels [:debug, :info, :warning, :error]

  @doc "The protocol version this harness speaks."
  @spec version() :: pos_integer()
  def version, do: @protocol_version

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
    case try_binary_to_term(bytes) do
      {:ok, term} -> classify(term)
      :error -> undecodable(bytes)
    end
  end

  def decode(other), do: {:error, {:unexpected_frame, other}}

  @doc """
  The result of `function` with its compact variables (see "Compact variables") turned back into
  structs. Results of other functions, errors and variables already in struct form are returned
  unchanged.
  """
  @spec expand_variables(atom(), term()) :: term()
  def expand_variables(:get_variable, {:ok, variable}), do: {:ok, expand_variable(variable)}

  def expand_variables(:list_variables, {:ok, variables}) when is_list(variables),
    do: {:ok, Enum.map(variables, &expand_variable/1)}

  def expand_variables(:get_variables, {:ok, %{found: found} = result}) when is_map(found),
    do: {:ok, %{result | found: Map.new(found, fn {key, var} -> {key, expand_variable(var)} end)}}

  def expand_variables(_function, result), do: result

  @default_optimization_status %{
    optimizing: false,
    optimizer_id: nil,
    optimizer_pid: nil,
    started_at: nil
  }

  defp expand_variable(
         {module, id, name, type, value, constraints, metadata, version, created_at,
          last_updated_at, optimization_status, access_rules}
       )
       when is_atom(module) do
    %{
      __struct__: module,
      id: id,
      name: name,
      type: type,
      value: value,
      constraints: constraints,
      metadata: metadata,
      version: version,
      created_at: created_at,
      last_updated_at: last_updated_at,
      optimization_status: optimization_status || @default_optimization_status,
      access_rules: access_rules
    }
  end

  defp expand_variable(other), do: other

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

  defp try_binary_to_term(bytes) do
    {:ok, :erlang.binary_to_term(bytes)}
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

  defp classify({:invalidate, scope} = frame) when scope == :all or is_list(scope),
    do: {:ok, frame}

  defp classify(other), do: {:error, {:unexpected_frame, other}}
end
