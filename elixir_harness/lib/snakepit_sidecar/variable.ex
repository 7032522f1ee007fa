defmodule SnakepitSidecar.Variable do
  @moduledoc """
  A typed variable as returned by the store when `:variable_struct` is left at its default: the
  contract's fields, with the contract's defaults (`SnakepitSidecar.Structs.variable_fields/0`).
  """

  @type t :: %__MODULE__{
          id: String.t(),
          name: atom() | String.t(),
          type: atom(),
          value: term(),
          constraints: map(),
          metadata: map(),
          version: non_neg_integer(),
          created_at: integer(),
          last_updated_at: integer(),
          optimization_status: %{
            optimizing: boolean(),
            optimizer_id: term(),
            optimizer_pid: term(),
            started_at: integer() | nil
          },
          access_rules: list()
        }

  defstruct SnakepitSidecar.Structs.variable_fields()
end
