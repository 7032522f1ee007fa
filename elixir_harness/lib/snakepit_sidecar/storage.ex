defmodule SnakepitSidecar.Storage do
  @moduledoc """
  The `:storage` start option: where the sidecar keeps the store (`docs/storage.md`). Pure.

    * `:memory` (the default) — in the sidecar's memory; a sidecar that dies takes it along.
    * `{:sqlite, path}` or `{:sqlite, path, synchronous: :normal | :full}` — in a SQLite file
      the sidecar owns: no acknowledged write is lost when the sidecar is killed, and the
      restarted sidecar (or a later store on the same path) finds everything. `:full` also
      survives a power loss, at the price of an fdatasync per chunk of calls. One sidecar per
      file.
    * `{:redis, url}` or `{:redis, url, prefix: "...", timeout: ms}` — on a Redis server that
      several stores (on several nodes) share as one store. `url` is
      `redis://[:password@]host:port/db` (or `rediss://`, `unix://`); `prefix` namespaces the
      keys, so independent stores can share one Redis (no braces); `timeout` is the sidecar's
      Redis connect and read timeout (default 1000 ms): with Redis unreachable a call answers
      `{:error, {:storage_error, message}}` within about twice that.

  `valid?/1` is the check `SnakepitSidecar.Options` uses; `args/1` the sidecar's command line
  for a valid value.
  """

  @typedoc "A value of the `:storage` option."
  @type t ::
          :memory
          | {:sqlite, Path.t()}
          | {:sqlite, Path.t(), [synchronous: :normal | :full]}
          | {:redis, String.t()}
          | {:redis, String.t(), [prefix: String.t(), timeout: pos_integer()]}

  @redis_schemes ["redis://", "rediss://", "unix://"]

  @doc "Whether `value` is a valid `:storage` option."
  @spec valid?(term()) :: boolean()
  def valid?(:memory), do: true
  def valid?({:sqlite, path}), do: path?(path)

  def valid?({:sqlite, path, opts}),
    do: path?(path) and options?(opts, synchronous: [:normal, :full])

  def valid?({:redis, url}), do: url?(url)

  def valid?({:redis, url, opts}),
    do: url?(url) and options?(opts, prefix: :prefix, timeout: :pos_integer)

  def valid?(_), do: false

  @doc "What `valid?/1` accepts, for the option's error message and docs."
  @spec description() :: String.t()
  def description,
    do:
      ":memory, {:sqlite, path}, {:sqlite, path, synchronous: :normal | :full}, " <>
        "{:redis, \"redis://host:port/db\"} or {:redis, url, prefix: string, timeout: ms}"

  @doc """
  The sidecar's arguments for a valid `storage`. A relative SQLite path is made absolute here
  (against this node's current directory), so the file is the same whatever the sidecar's.
  """
  @spec args(t()) :: [String.t()]
  def args(:memory), do: []
  def args({:sqlite, path}), do: ["--storage", "sqlite:" <> Path.expand(path)]

  def args({:sqlite, path, opts}) do
    synchronous = Keyword.get(opts, :synchronous, :normal)
    args({:sqlite, path}) ++ ["--sqlite-synchronous", Atom.to_string(synchronous)]
  end

  def args({:redis, url}), do: ["--storage", url]

  def args({:redis, url, opts}) do
    prefix = if p = opts[:prefix], do: ["--redis-prefix", p], else: []
    timeout = if t = opts[:timeout], do: ["--redis-timeout-ms", Integer.to_string(t)], else: []
    args({:redis, url}) ++ prefix ++ timeout
  end

  @doc "Whether the storage outlives the sidecar (everything but `:memory`)."
  @spec durable?(t()) :: boolean()
  def durable?(storage), do: storage != :memory

  @doc "Whether other stores may write the same data (Redis)."
  @spec shared?(t()) :: boolean()
  def shared?(storage), do: elem_kind(storage) == :redis

  defp elem_kind(:memory), do: :memory
  defp elem_kind(tuple) when is_tuple(tuple), do: elem(tuple, 0)

  defp path?(path), do: is_binary(path) and path != "" and not String.contains?(path, <<0>>)
  # the sidecar refuses braces in a prefix (they would move the keys' Redis Cluster hash tag)
  defp prefix?(prefix),
    do: is_binary(prefix) and prefix != "" and not String.contains?(prefix, ["{", "}"])

  defp url?(url), do: is_binary(url) and String.starts_with?(url, @redis_schemes)

  defp options?(opts, allowed) do
    Keyword.keyword?(opts) and
      Enum.all?(opts, fn {key, value} ->
        case Keyword.fetch(allowed, key) do
          {:ok, :string} -> is_binary(value) and value != ""
          {:ok, :prefix} -> prefix?(value)
          {:ok, :pos_integer} -> is_integer(value) and value > 0
          {:ok, values} when is_list(values) -> value in values
          :error -> false
        end
      end)
  end
end
