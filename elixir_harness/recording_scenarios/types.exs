# The eight types: what each accepts and how it is stored, every validation and constraint
# message of the contract, and unknown types. Rejections emit :validation_failed and
# :constraint_violation telemetry. Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S
sid = "types"
{:ok, _} = S.create_session(store, sid)

reg = fn name, type, value, constraints ->
  S.register_variable(store, sid, name, type, value, constraints: constraints)
end

value_of = fn {:ok, id} -> S.get_variable_value(store, sid, id) end

# :float
1.0 = value_of.(reg.(:f_int, :float, 1, %{}))
:infinity = value_of.(reg.(:f_inf, :float, "Infinity", %{}))
:negative_infinity = value_of.(reg.(:f_ninf, :float, :negative_infinity, %{min: 0.0}))
:nan = value_of.(reg.(:f_nan, :float, "NaN", %{}))
{:error, "must be a number"} = reg.(:f_bad, :float, true, %{})
{:error, "must be a number"} = reg.(:f_bad, :float, "1.5", %{})
{:error, "value 1.5 is below minimum 2"} = reg.(:f_min, :float, 1.5, %{min: 2})
{:error, "value 1.0e-6 is below minimum 1.0e-5"} = reg.(:f_min2, :float, 1.0e-6, %{min: 1.0e-5})
{:error, "value 100.5 is above maximum 100"} = reg.(:f_max, :float, 100.5, %{max: 100})

# :integer
3 = value_of.(reg.(:i_whole, :integer, 3.0, %{}))
{:error, "must be a whole number, got 3.5"} = reg.(:i_frac, :integer, 3.5, %{})
{:error, "must be an integer"} = reg.(:i_bad, :integer, "3", %{})
{:error, "must be an integer"} = reg.(:i_bool, :integer, false, %{})
{:error, "value -1 is below minimum 0"} = reg.(:i_min, :integer, -1, %{min: 0})
{:error, "value 11 is above maximum 10"} = reg.(:i_max, :integer, 11, %{max: 10})

# :string
"atom_value" = value_of.(reg.(:s_atom, :string, :atom_value, %{}))
{:error, "cannot be nil"} = reg.(:s_nil, :string, nil, %{})
{:error, "must be a string"} = reg.(:s_bad, :string, 42, %{})
{:error, "must be at least 3 characters, got 2"} = reg.(:s_short, :string, "hé", %{min_length: 3})
{:error, "must be at most 2 characters, got 3"} = reg.(:s_long, :string, "abc", %{max_length: 2})
{:error, "must match pattern: ^[a-z]+$"} = reg.(:s_pat, :string, "ABC", %{pattern: "^[a-z]+$"})
{:ok, _} = reg.(:s_pat_ok, :string, "abc", %{pattern: "^[a-z]+$"})
{:error, "must be one of: red, green"} = reg.(:s_enum, :string, "blue", %{enum: ["red", "green"]})

# :boolean
true = value_of.(reg.(:b_str, :boolean, "true", %{}))
false = value_of.(reg.(:b_zero, :boolean, 0, %{}))
{:error, "must be a boolean (true or false)"} = reg.(:b_bad, :boolean, "yes", %{})

# :choice
"slow" = value_of.(reg.(:c_atom, :choice, :slow, %{choices: ["fast", "slow"]}))
{:error, "must be a string"} = reg.(:c_bad, :choice, 1, %{})

{:error, "must be one of: fast, slow"} =
  reg.(:c_out, :choice, "medium", %{choices: ["fast", "slow"]})

# :module
"Elixir.DSPex.Predict" = value_of.(reg.(:m_atom, :module, DSPex.Predict, %{}))
{:error, "must be a module name"} = reg.(:m_bad, :module, 12, %{})

{:error, "must be one of the allowed modules: Predict, ChainOfThought"} =
  reg.(:m_out, :module, "React", %{allowed_modules: ["Predict", "ChainOfThought"]})

# :embedding
[1.0, 0.5, 2.0] = value_of.(reg.(:e_ok, :embedding, [1, 0.5, 2], %{dimensions: 3}))
{:error, "must be a list of numbers"} = reg.(:e_bad, :embedding, [1, "x"], %{})
{:error, "must be a numeric list"} = reg.(:e_notlist, :embedding, "1,2", %{})

{:error, "must have exactly 3 dimensions"} =
  reg.(:e_dims, :embedding, [1.0, 2.0], %{dimensions: 3})

# :tensor
%{"shape" => [2, 2], "data" => _} =
  value_of.(reg.(:t_ok, :tensor, %{"shape" => [2, 2], "data" => [[1, 2], [3, 4]]}, %{}))

{:error, "data size doesn't match shape"} =
  reg.(:t_size, :tensor, %{"shape" => [2, 3], "data" => [1, 2]}, %{})

{:error, "must be a tensor with shape and data"} = reg.(:t_bad, :tensor, [1, 2], %{})

{:error, "shape must be [2, 3]"} =
  reg.(:t_shape, :tensor, %{"shape" => [3, 2], "data" => [1, 2, 3, 4, 5, 6]}, %{shape: [2, 3]})

# unknown types, as given
{:error, {:unknown_type, :complex}} = reg.(:u1, :complex, 1, %{})
{:error, {:unknown_type, "complex"}} = reg.(:u2, "complex", 1, %{})

# updates are validated the same way
{:ok, _} = reg.(:upd, :integer, 5, %{max: 10})
{:error, "must be an integer"} = S.update_variable(store, sid, :upd, "x")
{:error, "value 20 is above maximum 10"} = S.update_variable(store, sid, :upd, 20)
:ok = S.update_variable(store, sid, :upd, 7.0)
7 = S.get_variable_value(store, sid, :upd)
