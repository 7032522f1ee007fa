defmodule SnakepitSidecar.Recorder do
  @moduledoc """
  Writes (and reads back) recordings of every frame that crosses the port.

  The format (`docs/replay.md`, "File format"): the ASCII header line
  `snakepit-sidecar-recording 1\\n`, then one entry per frame in the order the frames crossed
  the port: 1 byte direction (`>` Elixir→sidecar, `<` sidecar→Elixir), a 4-byte big-endian
  length, then the frame's external-term-format bytes exactly as on the wire (without the
  `{:packet, 4}` header).

  The file is opened `:raw` with `:delayed_write` by the process that owns the port, so only that
  process may write to it; it is flushed and closed by `close/1` when the store stops.
  """

  @header "snakepit-sidecar-recording 1\n"

  @typedoc "An open recording, or `nil` when not recording."
  @type t :: :file.io_device() | nil

  @typedoc "`:out` is Elixir→sidecar (`>`), `:in` is sidecar→Elixir (`<`)."
  @type direction :: :out | :in

  @doc "The header line every recording starts with."
  @spec header() :: String.t()
  def header, do: @header

  @doc "Opens `path` for recording (truncating it) and writes the header. `nil` records nothing."
  @spec open(String.t() | nil) :: {:ok, t()} | {:error, term()}
  def open(nil), do: {:ok, nil}

  def open(path) when is_binary(path) do
    with {:ok, device} <- :file.open(path, [:write, :raw, :binary, :delayed_write]),
         :ok <- :file.write(device, @header) do
      {:ok, device}
    end
  end

  @doc "Appends one frame. Write errors are returned, never raised."
  @spec record(t(), direction(), binary()) :: :ok | {:error, term()}
  def record(nil, _direction, _frame), do: :ok
  def record(device, direction, frame), do: :file.write(device, entry(direction, frame))

  @doc "Flushes and closes the recording."
  @spec close(t()) :: :ok
  def close(nil), do: :ok

  def close(device) do
    _ = :file.close(device)
    :ok
  end

  @doc "The bytes of one entry (pure)."
  @spec entry(direction(), binary()) :: iodata()
  def entry(:out, frame), do: [?>, <<byte_size(frame)::32>>, frame]
  def entry(:in, frame), do: [?<, <<byte_size(frame)::32>>, frame]

  @doc """
  Parses a whole recording. Returns the entries in order as `{direction, frame_bytes}`, or
  `{:error, reason}` (`:bad_header`, `{:truncated_entry, offset}`, `{:bad_direction, offset}`, or
  a file error).
  """
  @spec parse(binary()) :: {:ok, [{direction(), binary()}]} | {:error, term()}
  def parse(<<@header, entries::binary>>), do: parse_entries(entries, byte_size(@header), [])
  def parse(_), do: {:error, :bad_header}

  @doc "Reads and parses the recording at `path`."
  @spec read(String.t()) :: {:ok, [{direction(), binary()}]} | {:error, term()}
  def read(path) do
    with {:ok, bytes} <- File.read(path), do: parse(bytes)
  end

  defp parse_entries(<<>>, _offset, acc), do: {:ok, Enum.reverse(acc)}

  defp parse_entries(<<dir, size::32, frame::binary-size(size), rest::binary>>, offset, acc)
       when dir in [?>, ?<] do
    direction = if dir == ?>, do: :out, else: :in
    parse_entries(rest, offset + 5 + size, [{direction, frame} | acc])
  end

  defp parse_entries(<<dir, _::binary>>, offset, _acc) when dir not in [?>, ?<],
    do: {:error, {:bad_direction, offset}}

  defp parse_entries(_truncated, offset, _acc), do: {:error, {:truncated_entry, offset}}
end
