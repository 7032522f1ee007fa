defmodule SnakepitSidecar.APITest do
  # The functions generated from the call table (SnakepitSidecar.API): every module that uses it
  # exports each of them with a doc (what `mix docs` shows) and a spec. Pure: no sidecar.
  use ExUnit.Case, async: true

  alias SnakepitSidecar.API

  @generated_modules [SnakepitSidecar.SessionStore, Snakepit.Bridge.SessionStore]

  defp docs(module) do
    {:docs_v1, _, :elixir, _, _, _, entries} = Code.fetch_docs(module)

    for {{:function, name, arity}, _, _signature, %{"en" => doc}, _} <- entries,
        into: %{},
        do: {{name, arity}, doc}
  end

  defp specs(module) do
    {:ok, specs} = Code.Typespec.fetch_specs(module)
    Map.new(specs)
  end

  test "the call table gives each contract function its arities" do
    functions = API.functions()
    assert length(functions) == length(Enum.uniq(functions))
    # 20 functions with and without a server, 6 with an optional trailing argument (3 arities)
    assert length(functions) == 20 * 2 + 6 * 3

    for name <-
          [:create_session, :register_variable, :get_variable_value, :update_variable] ++
            [:list_variables, :update_variables] do
      arities = for {^name, arity} <- functions, do: arity
      assert length(arities) == 3, "#{name}: #{inspect(arities)}"
    end

    assert {:list_sessions, 0} in functions and {:list_sessions, 1} in functions
    assert {:update_session, 2} in functions and {:update_session, 3} in functions
  end

  for module <- @generated_modules do
    test "#{inspect(module)} exports every generated function with its doc and spec" do
      module = unquote(module)
      exported = module.__info__(:functions)
      docs = docs(module)
      specs = specs(module)

      for {name, arity} = function <- API.functions() ++ [child_spec: 1, sidecar_info: 1] do
        assert function in exported, "#{name}/#{arity} not exported"
        assert is_binary(docs[function]) and docs[function] != "", "#{name}/#{arity}: no doc"
        assert Map.has_key?(specs, function), "#{name}/#{arity}: no spec"
      end
    end
  end

  test "a colliding arity's spec admits both readings" do
    {:ok, specs} = Code.Typespec.fetch_specs(SnakepitSidecar.SessionStore)
    [spec] = for {{:list_variables, 2}, [spec]} <- specs, do: spec

    spec =
      Code.Typespec.spec_to_quoted(:list_variables, spec)
      |> Macro.to_string()

    assert spec =~ "SnakepitSidecar.API.session_id() | SnakepitSidecar.API.server()"
    assert spec =~ "String.t() | SnakepitSidecar.API.session_id()"
  end

  test "the default-server docs are the table's, the server forms' are derived" do
    docs = docs(SnakepitSidecar.SessionStore)
    assert docs[{:get_session, 1}] =~ "The session, touched"
    assert docs[{:get_session, 2}] == "`get_session/1` on `server`."

    assert docs[{:update_variable, 4}] ==
             "`update_variable(session_id, ident, value, metadata)` or " <>
               "`update_variable(server, session_id, ident, value)`."

    assert docs[{:update_variable, 5}] == "`update_variable/4` (with metadata) on `server`."
  end
end
