defmodule SnakepitSidecar.Structs do
  @moduledoc """
  The fields (with defaults) of the session and variable structs of the contract, and
  `ensure_defined/2`, which defines a struct module with them when no such module exists.

  Sessions and variables come back from the sidecar as maps whose `__struct__` is the module
  named in `:hello` (`:session_struct`, `:variable_struct`). For them to be usable as structs
  (pattern matching on `%Module{}`, `Map.from_struct/1`, field access in `Kernel.struct/2`), the
  module must exist. `SnakepitSidecar.Session` and `SnakepitSidecar.Variable` are the harness's
  own; `SnakepitSidecar.DropIn` uses `ensure_defined/2` for `Snakepit.Bridge.Session` and
  `Snakepit.Bridge.Variables.Variable` when the real Snakepit is not in the project.
  """

  @doc "The session struct's fields and defaults (the contract's session)."
  @spec session_fields() :: keyword()
  def session_fields do
    [
      id: nil,
      created_at: nil,
      last_accessed: nil,
      last_worker_id: nil,
      ttl: nil,
      programs: %{},
      variables: %{},
      variable_index: %{},
      metadata: %{},
      stats: %{variable_count: 0, program_count: 0, total_variable_updates: 0}
    ]
  end

  @doc "The variable struct's fields and defaults (the contract's variable)."
  @spec variable_fields() :: keyword()
  def variable_fields do
    [
      id: nil,
      name: nil,
      type: nil,
      value: nil,
      constraints: %{},
      metadata: %{},
      version: 0,
      created_at: nil,
      last_updated_at: nil,
      optimization_status: %{
        optimizing: false,
        optimizer_id: nil,
        optimizer_pid: nil,
        started_at: nil
      },
      access_rules: []
    ]
  end

  @doc """
  Defines `module` as a struct with `fields` unless a module of that name can be found
  (already loaded, compiled, or being compiled in the same project: `Code.ensure_compiled/1`
  waits for it). Returns `:existing` or `:defined`. Meant to be called at compile time.
  """
  @spec ensure_defined(module(), keyword()) :: :existing | :defined
  def ensure_defined(module, fields) do
    case Code.ensure_compiled(module) do
      {:module, ^module} ->
        :existing

      {:error, _} ->
        contents =
          quote do
            @moduledoc """
            Struct defined by `SnakepitSidecar.DropIn` with the SessionStore contract's fields,
            because no `#{inspect(__MODULE__)}` was found at compile time.
            """
            defstruct unquote(Macro.escape(fields))
          end

        Module.create(module, contents, Macro.Env.location(__ENV__))
        :defined
    end
  end
end
