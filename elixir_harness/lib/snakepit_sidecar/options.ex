defmodule SnakepitSidecar.Options do
  # The schema: one entry per start option, in the order they are checked and documented.
  #
  #   type:         what the value must be (see `check/2`: :pos_integer, :non_neg_integer,
  #                 :string, :non_empty_string, :module, :server_name, {:in, values},
  #                 {:or, types}, {:list, type})
  #   default:      the value when the option is not given
  #   default_from: where to look first, in order: :app_env (`config :snakepit_sidecar, key:`),
  #                 {:os_env, "NAME"}; read when the options are validated, never at compile time
  #   doc:          the type column of the table in the moduledoc
  #   doc_default:  the default column, when the default is not a plain value
  #
  # Adding an option is one entry here (and its line in `t/0`).
  @schema [
    name: [
      type: :server_name,
      default: SnakepitSidecar.SessionStore,
      doc: "`nil` (not registered), an atom, `{:global, term}` or `{:via, module, term}`",
      doc_default: "the store module"
    ],
    cleanup_interval: [
      type: :pos_integer,
      default: 60_000,
      doc: "positive integer, ms between the sidecar's periodic cleanups"
    ],
    default_ttl: [
      type: :non_neg_integer,
      default: 3600,
      doc: "non-negative integer, seconds"
    ],
    global_program_ttl: [
      type: :non_neg_integer,
      default: 3600,
      doc: "non-negative integer, seconds"
    ],
    python: [
      type: :non_empty_string,
      default: "python3",
      default_from: [:app_env, {:os_env, "SNAKEPIT_SIDECAR_PYTHON"}],
      doc: "non-empty string, an executable path or a name looked up in `PATH`"
    ],
    sidecar_path: [
      type: {:or, [{:in, [nil]}, :non_empty_string]},
      default: nil,
      default_from: [:app_env],
      doc:
        "`nil` (the `sidecar` package is installed in `:python`) or a directory holding the " <>
          "`sidecar` package, prepended to `PYTHONPATH`"
    ],
    sidecar_args: [
      type: {:list, :string},
      default: [],
      doc: "list of strings appended to `python -m sidecar` (e.g. `[\"--log-level\", \"debug\"]`)"
    ],
    storage: [
      type: :storage,
      default: :memory,
      doc:
        "`:memory`, `{:sqlite, path}` (durable: survives the sidecar; options " <>
          "`synchronous: :normal \\| :full`) or `{:redis, url}` (shared by every store on that " <>
          "Redis; options `prefix: string`, `timeout: ms`): `SnakepitSidecar.Storage`, `docs/storage.md`"
    ],
    read_cache: [
      type: {:in, [true, false]},
      default: true,
      default_from: [:app_env],
      doc:
        "boolean: keep variables read through the sidecar in ETS on this node and answer " <>
          "`get_variable`, `get_variable_value`, `has_variable?` and `get_variables` from there " <>
          "(`SnakepitSidecar.ReadCache`); off by itself while recording, and with `{:redis, _}` " <>
          "storage when the sidecar does not push other stores' changes"
    ],
    record: [
      type: {:or, [{:in, [nil]}, :non_empty_string]},
      default: nil,
      doc:
        "`nil` or a file path: every frame crossing the port is written there (`docs/replay.md`)"
    ],
    call_timeout: [
      type: {:or, [:pos_integer, {:in, [:infinity]}]},
      default: 5000,
      doc: "positive integer (ms) or `:infinity`: how long a caller waits for its reply"
    ],
    startup_timeout: [
      type: :pos_integer,
      default: 15_000,
      doc: "positive integer (ms): how long to wait for the sidecar's `:welcome`"
    ],
    session_struct: [
      type: :module,
      default: SnakepitSidecar.Session,
      doc: "module atom named by `__struct__` in sessions"
    ],
    variable_struct: [
      type: :module,
      default: SnakepitSidecar.Variable,
      doc: "module atom named by `__struct__` in variables"
    ]
  ]

  doc_default = fn spec ->
    plain =
      case spec[:default] do
        n when is_integer(n) and n >= 10_000 ->
          "`" <> (n |> Integer.to_string() |> String.replace(~r/\B(?=(\d{3})+$)/, "_")) <> "`"

        value ->
          "`#{inspect(value)}`"
      end

    from =
      for source <- Keyword.get(spec, :default_from, []) do
        case source do
          :app_env -> "`config :snakepit_sidecar, #{spec[:key]}: ...`"
          {:os_env, name} -> "`$#{name}`"
        end
      end

    spec[:doc_default] || Enum.join(from ++ [plain], ", else ")
  end

  @moduledoc """
  The store's start options: one schema (`@schema` in this file) gives each option its type,
  its default and its line in the table below.

  `validate/2` checks a keyword list against the schema and returns the complete option map
  (defaults filled in) or a human-readable message naming the offending option.
  `SnakepitSidecar.SessionStore.start_link/1` raises `ArgumentError` with that message.

  | option | type | default |
  |---|---|---|
  #{Enum.map_join(@schema, "\n", fn {key, spec} -> "| `#{inspect(key)}` | #{spec[:doc]} | #{doc_default.([key: key] ++ spec)} |" end)}

  ## Finding the sidecar

  Nothing about where the sidecar lives is fixed when the harness is compiled. `:python` and
  `:sidecar_path` are read when a store starts: from the start options, else from the
  application environment (`config :snakepit_sidecar, python: ..., sidecar_path: ...`), else
  `:python` from `$SNAKEPIT_SIDECAR_PYTHON` and then `"python3"`, and `:sidecar_path` is `nil`:
  the `sidecar` package must then be installed in that Python (`pip install snakepit-sidecar`,
  or the wheel). This project's own `config/config.exs` sets `:sidecar_path` to its checkout in
  `dev` and `test`, so its tests, demo, benchmark and recording task run the checkout's code; an
  application that has the harness as a dependency does not read that file.
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
          storage: SnakepitSidecar.Storage.t(),
          read_cache: boolean(),
          record: String.t() | nil,
          call_timeout: timeout(),
          startup_timeout: pos_integer(),
          session_struct: module(),
          variable_struct: module()
        }

  @keys Keyword.keys(@schema)

  @doc "The names of all accepted options."
  @spec keys() :: [atom()]
  def keys, do: @keys

  @doc """
  Validates `opts` and fills in defaults. `defaults` overrides the schema's defaults (used by
  `SnakepitSidecar.DropIn` for `:name` and the struct modules).
  """
  @spec validate(term(), keyword()) :: {:ok, t()} | {:error, String.t()}
  def validate(opts, defaults \\ []) do
    with :ok <- check_keyword(opts),
         :ok <- check_known(opts) do
      Enum.reduce_while(@schema, {:ok, %{}}, fn {key, spec}, {:ok, acc} ->
        value =
          case Keyword.fetch(opts, key) do
            {:ok, value} -> value
            :error -> Keyword.get_lazy(defaults, key, fn -> default(key, spec) end)
          end

        if check(spec[:type], value) do
          {:cont, {:ok, Map.put(acc, key, value)}}
        else
          {:halt,
           {:error,
            "invalid value for option #{inspect(key)}: expected #{describe(spec[:type])}, " <>
              "got: #{inspect(value)}"}}
        end
      end)
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
  The directory the sidecar package is found in when `:sidecar_path` is not given:
  `config :snakepit_sidecar, sidecar_path: dir` (this project's checkout in its own `dev` and
  `test`), else `nil` (the package must be installed in `:python`).
  """
  @spec default_sidecar_path() :: String.t() | nil
  def default_sidecar_path, do: default(:sidecar_path, @schema[:sidecar_path])

  defp default(key, spec) do
    Enum.find_value(Keyword.get(spec, :default_from, []), spec[:default], fn
      :app_env -> Application.get_env(:snakepit_sidecar, key)
      {:os_env, name} -> System.get_env(name)
    end)
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

  ## Types

  defp check(:pos_integer, value), do: is_integer(value) and value > 0
  defp check(:non_neg_integer, value), do: is_integer(value) and value >= 0
  defp check(:string, value), do: is_binary(value)
  defp check(:non_empty_string, value), do: is_binary(value) and value != ""
  defp check(:module, value), do: is_atom(value) and value not in [nil, true, false]
  defp check({:in, values}, value), do: value in values
  defp check({:or, types}, value), do: Enum.any?(types, &check(&1, value))
  defp check({:list, type}, value), do: is_list(value) and Enum.all?(value, &check(type, &1))
  defp check(:storage, value), do: SnakepitSidecar.Storage.valid?(value)

  defp check(:server_name, value) do
    case value do
      nil -> true
      name when is_atom(name) and not is_boolean(name) -> true
      {:global, _} -> true
      {:via, module, _} when is_atom(module) -> true
      _ -> false
    end
  end

  defp describe(:pos_integer), do: "a positive integer"
  defp describe(:non_neg_integer), do: "a non-negative integer"
  defp describe(:string), do: "a string"
  defp describe(:non_empty_string), do: "a non-empty string"
  defp describe(:module), do: "a module atom"
  defp describe(:server_name), do: "nil, an atom, {:global, term} or {:via, module, term}"
  defp describe({:in, [value]}), do: inspect(value)
  defp describe({:in, values}), do: "one of " <> Enum.map_join(values, ", ", &inspect/1)
  defp describe({:or, types}), do: Enum.map_join(types, " or ", &describe/1)
  defp describe({:list, type}), do: "a list, each element #{describe(type)}"
  defp describe(:storage), do: SnakepitSidecar.Storage.description()
end
