# Programs: global and per-session, with data that must come back term for term (atoms, tuples,
# nested maps, floats, nil, booleans, charlists, binaries that are not UTF-8). Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S

data = %{
  signature: {:question, :answer},
  modules: [Predict, :"Elixir.DSPex.ChainOfThought"],
  config: %{"temperature" => 0.7, "max_tokens" => 256, "stop" => nil, "stream" => false},
  nested: %{1 => 1.0, {:a, 1} => [1 | 2], [1, 2] => %{"k" => <<255, 0>>}},
  charlist: 'abc',
  empty: {%{}, [], ""}
}

:ok = S.store_global_program(store, "prog-global", data)
{:ok, ^data} = S.get_global_program(store, "prog-global")
{:error, :not_found} = S.get_global_program(store, "prog-missing")
:ok = S.store_global_program(store, "prog-list", [:x, 2.5])
{:ok, [:x, 2.5]} = S.get_global_program(store, "prog-list")
:ok = S.delete_global_program(store, "prog-global")
:ok = S.delete_global_program(store, "prog-global")
{:error, :not_found} = S.get_global_program(store, "prog-global")

{:ok, _} = S.create_session(store, "prog-session")
:ok = S.store_program(store, "prog-session", "p1", data)
{:ok, ^data} = S.get_program(store, "prog-session", "p1")
:ok = S.update_program(store, "prog-session", "p1", %{version: 2})
{:ok, %{version: 2}} = S.get_program(store, "prog-session", "p1")
{:error, :not_found} = S.get_program(store, "prog-session", "p-missing")
{:error, :not_found} = S.store_program(store, "no-session", "p1", data)
{:error, :not_found} = S.update_program(store, "no-session", "p1", data)
{:error, :not_found} = S.get_program(store, "no-session", "p1")

{:ok, %{programs: %{"p1" => %{version: 2}}, stats: %{program_count: 1}}} =
  S.get_session(store, "prog-session")

%{global_programs_stored: 2, global_programs_deleted: _} = S.get_stats(store)
