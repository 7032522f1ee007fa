# Variables: registration (atom and binary names, options as keyword list and map), lookups by
# id and by name, updates with metadata, deletes, listing and patterns, batch get and update
# (non-atomic, atomic, atomic with a failure), export and import (and a bad import), the
# optimization lock, and :session_not_found from every variable call. Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S
sid = "vars"
{:ok, _} = S.create_session(store, sid)

{:ok, temp_id} =
  S.register_variable(store, sid, :temperature, :float, 0.7,
    constraints: %{min: 0.0, max: 2.0},
    metadata: %{"owner" => "tuner"},
    description: "sampling temperature"
  )

"var_temperature_" <> _ = temp_id

{:ok, tokens_id} =
  S.register_variable(store, sid, "max_tokens", "integer", 256, %{
    constraints: %{min: 1, max: 4096}
  })

{:ok, _} = S.register_variable(store, sid, :temp_cpu, :float, 41, [])
{:ok, _} = S.register_variable(store, sid, :my_temp_x, :string, :hot)

{:ok, _} =
  S.register_variable(store, sid, :mode, :choice, :fast, constraints: %{choices: ["fast", "slow"]})

{:ok, %{id: ^temp_id, name: :temperature, type: :float, value: 0.7, version: 0}} =
  S.get_variable(store, sid, temp_id)

{:ok, %{id: ^temp_id}} = S.get_variable(store, sid, :temperature)

{:ok, %{id: ^tokens_id, name: "max_tokens", type: :integer}} =
  S.get_variable(store, sid, "max_tokens")

{:ok, %{value: 41.0}} = S.get_variable(store, sid, "temp_cpu")
{:error, :not_found} = S.get_variable(store, sid, :nope)

0.7 = S.get_variable_value(store, sid, :temperature)
nil = S.get_variable_value(store, sid, :nope)
:fallback = S.get_variable_value(store, sid, :nope, :fallback)
:fallback = S.get_variable_value(store, "no-session", :temperature, :fallback)

:ok = S.update_variable(store, sid, :temperature, 0.9)
:ok = S.update_variable(store, sid, temp_id, 1, %{"source" => "optimizer", "round" => 2})

{:ok,
 %{value: 1.0, version: 2, metadata: %{"source" => "optimizer", "round" => 2, "updated_at" => _}}} =
  S.get_variable(store, sid, temp_id)

{:error, "value 2.5 is above maximum 2.0"} = S.update_variable(store, sid, :temperature, 2.5)
{:error, "must be a number"} = S.update_variable(store, sid, :temperature, "hot")
{:error, :not_found} = S.update_variable(store, sid, :nope, 1.0)

true = S.has_variable?(store, sid, :temperature)
true = S.has_variable?(store, sid, temp_id)
false = S.has_variable?(store, sid, :nope)

{:ok, all} = S.list_variables(store, sid)
[:temperature, "max_tokens", :temp_cpu, :my_temp_x, :mode] = Enum.map(all, & &1.name)
{:ok, matching} = S.list_variables(store, sid, "temp_*")
[:temp_cpu, :my_temp_x] = Enum.map(matching, & &1.name)
{:ok, []} = S.list_variables(store, sid, "zzz*")

{:ok, %{found: found, missing: ["nope", "also_nope"]}} =
  S.get_variables(store, sid, [:temperature, "max_tokens", temp_id, :nope, "also_nope"])

3 = map_size(found)

{:ok, %{"temperature" => :ok, "max_tokens" => {:error, "must be an integer"}}} =
  S.update_variables(store, sid, %{"temperature" => 0.5, "max_tokens" => "many"})

{:error, {:validation_failed, %{"max_tokens" => "value 0 is below minimum 1"}}} =
  S.update_variables(store, sid, %{"temperature" => 0.1, "max_tokens" => 0}, atomic: true)

0.5 = S.get_variable_value(store, sid, :temperature)

{:ok, %{"temperature" => :ok, "max_tokens" => :ok}} =
  S.update_variables(store, sid, %{"temperature" => 0.2, "max_tokens" => 512},
    atomic: true,
    metadata: %{"batch" => true}
  )

# the optimization lock
:ok = S.start_optimization(store, sid, :temperature, "opt-1", self())
{:error, :already_optimizing} = S.start_optimization(store, sid, :temperature, "opt-2", self())

{:ok, %{optimization_status: %{optimizing: true, optimizer_id: "opt-1"}}} =
  S.get_variable(store, sid, :temperature)

{:error, :variable_locked_for_optimization} = S.update_variable(store, sid, :temperature, 0.3)
{:error, :variable_locked_for_optimization} = S.delete_variable(store, sid, :temperature)
:ok = S.end_optimization(store, sid, :temperature)
{:error, :not_found} = S.start_optimization(store, sid, :nope, "opt-1", self())
{:error, :not_found} = S.end_optimization(store, sid, :nope)

{:error, :session_not_found} =
  S.start_optimization(store, "no-session", :temperature, "opt-1", self())

{:error, :session_not_found} = S.end_optimization(store, "no-session", :temperature)

# export, then import into another session
{:ok, exported} = S.export_variables(store, sid)
5 = length(exported)
{:ok, _} = S.create_session(store, "vars-copy")
{:ok, 5} = S.import_variables(store, "vars-copy", exported)
{:ok, %{value: 0.2}} = S.get_variable(store, "vars-copy", "temperature")
# (the pattern names the reason's atom, which also puts it in this VM's atom table: the harness
# decodes replies with binary_to_term(:safe))
{:error, {:invalid_variable, 0, _}} =
  S.import_variables(store, "vars-copy", [%{name: "broken", type: :float}])

{:ok, copied} = S.list_variables(store, "vars-copy")
5 = length(copied)

:ok = S.delete_variable(store, sid, :temp_cpu)
{:error, :not_found} = S.delete_variable(store, sid, :temp_cpu)
false = S.has_variable?(store, sid, :temp_cpu)

# re-registering a name points the index at a new id
{:ok, second_id} = S.register_variable(store, sid, :temperature, :float, 0.4)
true = second_id != temp_id
{:ok, %{id: ^second_id}} = S.get_variable(store, sid, :temperature)

{:ok, %{variable_index: %{"temperature" => ^second_id}, stats: %{variable_count: _}}} =
  S.get_session(store, sid)

# every variable call on a missing session
missing = "no-session"
{:error, :session_not_found} = S.register_variable(store, missing, :x, :float, 1.0)
{:error, :session_not_found} = S.get_variable(store, missing, :x)
{:error, :session_not_found} = S.update_variable(store, missing, :x, 1.0)
{:error, :session_not_found} = S.delete_variable(store, missing, :x)
false = S.has_variable?(store, missing, :x)
{:error, :session_not_found} = S.list_variables(store, missing)
{:error, :session_not_found} = S.list_variables(store, missing, "x*")
{:error, :session_not_found} = S.get_variables(store, missing, [:x])
{:error, :session_not_found} = S.update_variables(store, missing, %{"x" => 1.0})
{:error, :session_not_found} = S.export_variables(store, missing)
{:error, :session_not_found} = S.import_variables(store, missing, [])
