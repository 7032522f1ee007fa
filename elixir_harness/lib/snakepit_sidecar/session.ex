defmodule SnakepitSidecar.Session do
  @moduledoc """
  A session as returned by the store when `:session_struct` is left at its default: the
  contract's fields, with the contract's defaults (`SnakepitSidecar.Structs.session_fields/0`).

  Timestamps (`created_at`, `last_accessed`) are whole seconds of this node's monotonic clock
  (`System.monotonic_time(:second)`).
  """

  @type t :: %__MODULE__{
          id: String.t(),
          created_at: integer(),
          last_accessed: integer(),
          last_worker_id: term(),
          ttl: non_neg_integer(),
          programs: map(),
          variables: %{String.t() => SnakepitSidecar.Variable.t() | map()},
          variable_index: %{String.t() => String.t()},
          metadata: map(),
          stats: %{
            variable_count: non_neg_integer(),
            program_count: non_neg_integer(),
            total_variable_updates: non_neg_integer()
          }
        }

  defstruct SnakepitSidecar.Structs.session_fields()
end
