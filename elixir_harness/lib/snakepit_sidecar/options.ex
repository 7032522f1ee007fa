defmodule SnakepitSidecar.Options do
  @moduledoc """
  Validation of the store's start options, with their defaults.

  `validate/2` checks a keyword list against the table below and returns the complete option map
  (defaults filled in) or a human-readable message naming the offending option.
  `SnakepitSidecar.SessionStore.start_link/1` raises `ArgumentError` with that message.

  | option | type | default |
  |---|---|---|
  | `:name` | `nil` (not registered), an atom, `{:global, term}` or `{:via, module, term}` | the store module |
  | `:cleanup_interval` | positive integer, ms between the sidecar's periodic cleanups | `60_000` |
  | `:default_ttl` | non-negative integer, seconds | `3600` |
  | `:global_program_ttl` | non-negative integer, seconds | `3600` |
  | `:python` | non-empty string, an executable path or a name looked up in `PATH` | `$SNAKEPIT_SIDECAR_PYTHON`, else `"python3"` |
  | `:sidecar_path` | `nil` or a directory holding the `sidecar` package, prepended to `PYTHONPATH` | the repository root this harness lives in, when it holds `sidecar/` |
  | `:sidecar_args` | list of strings appended to `python -m sidecar` (e.g. `["--log-level", "debug"]`) | `[]` |
  | `:record` | `nil` or a file path: every frame crossing the port is written there (`docs/replay.md`) | `nil` |
  | `:call_timeout` | positive integer (ms) or `:infinity`: how long a caller waits for its reply | `5000` |
  | `:startup_timeout` | positive integer (ms): how long to wait for the sidecar's `:welcome` | `15_000` |
  | `:session_struct` | module atom named by `__struct__` in sessions | `SnakepitSidecar.Session` |
  | `:variable_struct` | module atom named by `__struct__` in variables | `SnakepitSidecar.Variable` |
  """

  @typedoc "The validated options, every key present."
  @type t :: %{
          name: GenServer.name() | nil,
          cleanup_interval: pos_integer(),
          default_ttl: non_neg_integer(),
          global_program_ttl: non_neg_integer(),
          python: String.t(),
          sidecar_path: String.t() | nil,
          sidecar_args: [String.t()],
          record: String.t() | nil,
          call_timeout: timeout(),
          startup_timeout: pos_integer(),
          session_struct: module(),
          variable_struct: module()
        }

  @keys [
    :name,
    :cleanup_interval,
    :default_ttl,
    :global_program_ttl,
    :python,
    :sidecar_path,
    :sidecar_args,
    :record,
    :call_timeout,
    :startup_timeout,
    :session_struct,
    :variable_struct
  ]

  # The repository root, when this harness sits in `<root>/elixir_harness/lib/snakepit_sidecar`.
  @repo_root Path.expand("../../..", __DIR__)

  @doc "The names of all accepted options."
  @spec keys() :: [atom()]
  def keys, do: @keys

  @doc """
  Validates `opts` and fills in defaults. `defaults` overrides the built-in defaults (used by
  `SnakepitSidecar.DropIn` for `:name` and the struct modules).
  """
  @spec validate(term(), keyword()) :: {:ok, t()} | {:error, String.t()}
  def validate(opts, defaults \\ []) do
    with :ok <- check_keyword(opts),
         :ok <- check_known(opts) do
      merged = Keyword.merge(built_in_defaults(defaults), opts)
      check_all(merged)
    end
  end

  @doc """
  Like `validate/2` but raises `ArgumentError` with the message on invalid options.
  """
  @spec validate!(term(), keyword()) :: t()
  def validate!(opts, defaults \\ []) do
    case validate(opts, defaults) do
      {:ok, validated} -> validated
      {:error, message} -> raise ArgumentError, message
    end
  end

  @doc """
  The directory the sidecar package is found in by default: the repository root this harness
  was compiled in, if it holds `sidecar/__init__.py`; otherwise `nil` (the package must then be
  installed, e.g. `pip install -e .`).
  """
  @spec default_sidecar_path() :: String.t() | nil
  def default_sidecar_path do
    if File.regular?(Path.join([@repo_root, "sidecar", "__init__.py"])), do: @repo_root, else: nil
  end

  defp built_in_defaults(overrides) do
    Keyword.merge(
      [
        name: SnakepitSidecar.SessionStore,
        cleanup_interval: 60_000,
        default_ttl: 3600,
        global_program_ttl: 3600,
        python: System.get_env("SNAKEPIT_SIDECAR_PYTHON") || "python3",
        sidecar_path: default_sidecar_path(),
        sidecar_args: [],
        record: nil,
        call_timeout: 5000,
        startup_timeout: 15_000,
        session_struct: SnakepitSidecar.Session,
        variable_struct: SnakepitSidecar.Variable
      ],
      overrides
    )
  end

  defp check_keyword(opts) do
    if is_list(opts) and Keyword.keyword?(opts),
      do: :ok,
      else: {:error, "expected start options to be a keyword list, got: #{inspect(opts)}"}
  end

  defp check_known(opts) do
    case Enum.reject(Keyword.keys(opts), &(&1 in @keys)) do
      [] ->
        :ok

      [unknown | _] ->
        {:error,
         "unknown option #{inspect(unknown)}; known options: " <>
           Enum.map_join(@keys, ", ", &inspect/1)}
    end
  end

  defp check_all(merged) do
    Enum.reduce_while(@keys, {:ok, %{}}, fn key, {:ok, acc} ->
      value = Keyword.fetch!(merged, key)

      case check(key, value) do
        :ok ->
          {:cont, {:ok, Map.put(acc, key, value)}}

        {:expected, description} ->
          {:halt,
           {:error,
            "invalid value for option #{inspect(key)}: expected #{description}, got: " <>
              inspect(value)}}
      end
    end)
  end

  defp check(:name, nil), do: :ok
  defp check(:name, name) when is_atom(name) and not is_boolean(name), do: :ok
  defp check(:name, {:global, _}), do: :ok
  defp check(:name, {:via, module, _}) when is_atom(module), do: :ok
  defp check(:name, _), do: {:expected, "nil, an atom, {:global, term} or {:via, module, term}"}

  defp check(:cleanup_interval, value), do: positive_integer(value, "a positive integer (ms)")
  defp check(:default_ttl, value), do: non_negative_integer(value)
  defp check(:global_program_ttl, value), do: non_negative_integer(value)

  defp check(:python, value) when is_binary(value) and value != "", do: :ok
  defp check(:python, _), do: {:expected, "a non-empty string (executable path or name)"}

  defp check(:sidecar_path, nil), do: :ok
  defp check(:sidecar_path, value) when is_binary(value) and value != "", do: :ok
  defp check(:sidecar_path, _), do: {:expected, "nil or a directory path (string)"}

  defp check(:sidecar_args, value) when is_list(value) do
    if Enum.all?(value, &is_binary/1), do: :ok, else: {:expected, "a list of strings"}
  end

  defp check(:sidecar_args, _), do: {:expected, "a list of strings"}

  defp check(:record, nil), do: :ok
  defp check(:record, value) when is_binary(value) and value != "", do: :ok
  defp check(:record, _), do: {:expected, "nil or a file path (string)"}

  defp check(:call_timeout, :infinity), do: :ok

  defp check(:call_timeout, value),
    do: positive_integer(value, "a positive integer (ms) or :infinity")

  defp check(:startup_timeout, value), do: positive_integer(value, "a positive integer (ms)")

  defp check(struct_key, value) when struct_key in [:session_struct, :variable_struct] do
    if is_atom(value) and value not in [nil, true, false],
      do: :ok,
      else: {:expected, "a module atom"}
  end

  defp positive_integer(value, _) when is_integer(value) and value > 0, do: :ok
  defp positive_integer(_, description), do: {:expected, description}

  defp non_negative_integer(value) when is_integer(value) and value >= 0, do: :ok
  defp non_negative_integer(_), do: {:expected, "a non-negative integer (seconds)"}
end
