defmodule SnakepitSidecar.Contract.VariablesTest do
  @moduledoc ~s(Contract rows of docs/contract.md, "Variables", through the real port.)
  use SnakepitSidecar.SidecarCase, drop_in: true

  setup do
    sid = unique_id()
    {:ok, _} = SessionStore.create_session(sid)
    %{sid: sid}
  end

  describe "register_variable" do
    test "returns a var_<name>_<n> id and stores a %Variable{}", %{sid: sid} do
      assert {:ok, id} =
               SessionStore.register_variable(sid, :temperature, :float, 0.7,
                 constraints: %{min: 0.0, max: 2.0},
                 description: "LLM temperature"
               )

      assert [_, n] = Regex.run(~r/^var_temperature_(\d+)$/, id)
      assert String.to_integer(n) > 0

      assert {:ok, %Variable{} = var} = SessionStore.get_variable(sid, id)
      assert var.id == id
      assert var.name === :temperature
      assert var.type === :float
      assert var.value === 0.7
      assert var.constraints == %{min: 0.0, max: 2.0}
      assert var.version === 0
      assert var.created_at == var.last_updated_at
      assert is_integer(var.created_at)
      assert var.access_rules == []

      assert var.optimization_status ==
               %{optimizing: false, optimizer_id: nil, optimizer_pid: nil, started_at: nil}

      assert var.metadata == %{
               "source" => "elixir",
               "created_by" => "session_store",
               "description" => "LLM temperature"
             }
    end

    test "a binary name stays a binary; a string type becomes the atom", %{sid: sid} do
      assert {:ok, _} = SessionStore.register_variable(sid, "max_tokens", "integer", 5)
      assert {:ok, var} = SessionStore.get_variable(sid, "max_tokens")
      assert var.name === "max_tokens"
      assert var.type === :integer
    end

    test "opts as a map and :metadata merged over the defaults", %{sid: sid} do
      assert {:ok, _} =
               SessionStore.register_variable(sid, :m, :string, "x", %{
                 metadata: %{"source" => "python", "k" => 1}
               })

      assert {:ok, var} = SessionStore.get_variable(sid, :m)
      assert var.metadata == %{"source" => "python", "created_by" => "session_store", "k" => 1}
    end

    test "re-registering a name points the index to the new id", %{sid: sid} do
      {:ok, id1} = SessionStore.register_variable(sid, :x, :integer, 1)
      {:ok, id2} = SessionStore.register_variable(sid, :x, :integer, 2)
      assert id1 != id2
      assert SessionStore.get_variable_value(sid, :x) == 2
    end

    test "errors: unknown type (as given), invalid value, constraint", %{sid: sid} do
      assert SessionStore.register_variable(sid, :a, :complex, 1) ==
               {:error, {:unknown_type, :complex}}

      assert SessionStore.register_variable(sid, :a, "complex", 1) ==
               {:error, {:unknown_type, "complex"}}

      assert SessionStore.register_variable(sid, :a, :float, "x") == {:error, "must be a number"}

      assert SessionStore.register_variable(sid, :a, :float, 3.0, constraints: %{max: 2.0}) ==
               {:error, "value 3.0 is above maximum 2.0"}

      refute SessionStore.has_variable?(sid, :a)
    end

    test "the server-first and opts forms of arity 5 are told apart", %{sid: sid} do
      assert {:ok, _} = SessionStore.register_variable(SessionStore, sid, :srv, :boolean, true)
      assert {:ok, _} = SessionStore.register_variable(sid, :opt, :boolean, false, [])
      assert {:ok, _} = SessionStore.register_variable(SessionStore, sid, :both, :boolean, 1, [])
      assert SessionStore.get_variable_value(sid, :srv) === true
      assert SessionStore.get_variable_value(sid, :opt) === false
      assert SessionStore.get_variable_value(sid, :both) === true
    end
  end

  describe "reading" do
    test "get_variable by id, by atom name and by string name", %{sid: sid} do
      {:ok, id} = SessionStore.register_variable(sid, :temp, :float, 1.0)
      assert {:ok, %Variable{id: ^id}} = SessionStore.get_variable(sid, id)
      assert {:ok, %Variable{id: ^id}} = SessionStore.get_variable(sid, :temp)
      assert {:ok, %Variable{id: ^id}} = SessionStore.get_variable(sid, "temp")
      assert SessionStore.get_variable(sid, :nope) == {:error, :not_found}
    end

    test "get_variable_value with and without default", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :v, :string, "hello")
      assert SessionStore.get_variable_value(sid, :v) == "hello"
      assert SessionStore.get_variable_value(sid, :missing) == nil
      assert SessionStore.get_variable_value(sid, :missing, :dflt) == :dflt
      assert SessionStore.get_variable_value(unique_id("nosession"), :v, 42) == 42
      # server-first arity 3 and 4
      assert SessionStore.get_variable_value(SessionStore, sid, :v) == "hello"
      assert SessionStore.get_variable_value(SessionStore, sid, :missing, 0) == 0
    end

    test "has_variable?", %{sid: sid} do
      {:ok, id} = SessionStore.register_variable(sid, :h, :integer, 1)
      assert SessionStore.has_variable?(sid, :h) === true
      assert SessionStore.has_variable?(sid, id) === true
      assert SessionStore.has_variable?(sid, "other") === false
    end

    test "list_variables in registration order, and by pattern", %{sid: sid} do
      names = [:temp_cpu, :zeta, :my_temp_x, :alpha, "temp_gpu"]
      for name <- names, do: {:ok, _} = SessionStore.register_variable(sid, name, :integer, 1)

      assert {:ok, vars} = SessionStore.list_variables(sid)
      assert Enum.map(vars, & &1.name) == names

      assert {:ok, matched} = SessionStore.list_variables(sid, "temp_*")
      assert Enum.map(matched, & &1.name) == [:temp_cpu, :my_temp_x, "temp_gpu"]

      assert {:ok, ^vars} = SessionStore.list_variables(SessionStore, sid)
      assert {:ok, ^matched} = SessionStore.list_variables(SessionStore, sid, "temp_*")
    end

    test "get_variables: found keyed by string, missing in request order", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :a, :integer, 1)
      {:ok, _} = SessionStore.register_variable(sid, "b", :integer, 2)

      assert {:ok, %{found: found, missing: missing}} =
               SessionStore.get_variables(sid, [:a, :zz, "b", "yy"])

      assert Map.keys(found) |> Enum.sort() == ["a", "b"]
      assert %Variable{value: 1} = found["a"]
      assert missing == ["zz", "yy"]
    end
  end

  describe "update_variable" do
    test "bumps version, sets metadata with source and updated_at", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :u, :integer, 1, metadata: %{"keep" => 1})
      assert SessionStore.update_variable(sid, :u, 2.0) == :ok
      assert {:ok, var} = SessionStore.get_variable(sid, :u)
      assert var.value === 2
      assert var.version == 1
      assert var.metadata["keep"] == 1
      assert var.metadata["source"] == "elixir"
      assert {:ok, _, _} = DateTime.from_iso8601(var.metadata["updated_at"])

      assert SessionStore.update_variable(sid, :u, 3, %{"source" => "optimizer", "why" => "x"}) ==
               :ok

      assert {:ok, var} = SessionStore.get_variable(sid, :u)
      assert var.version == 2
      assert var.metadata["source"] == "optimizer"
      assert var.metadata["why"] == "x"
    end

    test "validation and constraint errors leave the variable unchanged", %{sid: sid} do
      {:ok, _} =
        SessionStore.register_variable(sid, :n, :integer, 5, constraints: %{min: 0, max: 10})

      assert SessionStore.update_variable(sid, :n, 1.5) ==
               {:error, "must be a whole number, got 1.5"}

      assert SessionStore.update_variable(sid, :n, 11) == {:error, "value 11 is above maximum 10"}
      assert SessionStore.update_variable(sid, :n, -1) == {:error, "value -1 is below minimum 0"}
      assert {:ok, %Variable{value: 5, version: 0}} = SessionStore.get_variable(sid, :n)
      assert SessionStore.update_variable(sid, :nope, 1) == {:error, :not_found}
    end

    test "server-first arity 4 vs metadata arity 4", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :s, :string, "a")
      assert SessionStore.update_variable(SessionStore, sid, :s, "b") == :ok
      assert SessionStore.update_variable(sid, :s, "c", %{"m" => 1}) == :ok
      assert SessionStore.update_variable(SessionStore, sid, :s, "d", %{}) == :ok
      assert {:ok, %Variable{value: "d", version: 3}} = SessionStore.get_variable(sid, :s)
    end

    test "a variable being optimized is locked", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :opt, :float, 1.0)

      assert SnakepitSidecar.SessionStore.start_optimization(
               SessionStore,
               sid,
               :opt,
               "opt1",
               self()
             ) == :ok

      assert {:ok, var} = SessionStore.get_variable(sid, :opt)
      assert var.optimization_status.optimizing == true
      assert var.optimization_status.optimizer_pid == self()

      assert SessionStore.update_variable(sid, :opt, 2.0) ==
               {:error, :variable_locked_for_optimization}

      assert SessionStore.delete_variable(sid, :opt) ==
               {:error, :variable_locked_for_optimization}

      assert {:ok, %Variable{value: 1.0}} = SessionStore.get_variable(sid, :opt)
      assert SnakepitSidecar.SessionStore.end_optimization(SessionStore, sid, :opt) == :ok
      assert SessionStore.update_variable(sid, :opt, 2.0) == :ok
    end
  end

  describe "delete_variable" do
    test "removes it from variables and the index", %{sid: sid} do
      {:ok, id} = SessionStore.register_variable(sid, :d, :integer, 1)
      assert SessionStore.delete_variable(sid, :d) == :ok
      refute SessionStore.has_variable?(sid, id)
      refute SessionStore.has_variable?(sid, :d)
      assert SessionStore.delete_variable(sid, :d) == {:error, :not_found}
    end
  end

  describe "update_variables" do
    setup %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :a, :integer, 1, constraints: %{max: 10})
      {:ok, _} = SessionStore.register_variable(sid, :b, :string, "x")
      :ok
    end

    test "non-atomic applies the valid ones", %{sid: sid} do
      assert {:ok, results} = SessionStore.update_variables(sid, %{a: 99, b: "y"})
      assert results == %{"a" => {:error, "value 99 is above maximum 10"}, "b" => :ok}
      assert SessionStore.get_variable_value(sid, :a) == 1
      assert SessionStore.get_variable_value(sid, :b) == "y"
    end

    test "atomic with a failure changes nothing", %{sid: sid} do
      assert SessionStore.update_variables(sid, %{a: 2, b: nil}, atomic: true) ==
               {:error, {:validation_failed, %{"b" => "cannot be nil"}}}

      assert SessionStore.get_variable_value(sid, :a) == 1
      assert SessionStore.get_variable_value(sid, :b) == "x"
    end

    test "atomic success applies all, with :metadata", %{sid: sid} do
      assert SessionStore.update_variables(sid, %{"a" => 3, "b" => :z},
               atomic: true,
               metadata: %{"batch" => 1}
             ) ==
               {:ok, %{"a" => :ok, "b" => :ok}}

      assert {:ok, %Variable{value: 3, metadata: %{"batch" => 1}}} =
               SessionStore.get_variable(sid, :a)

      assert SessionStore.get_variable_value(sid, :b) == "z"
    end

    test "server-first forms", %{sid: sid} do
      assert {:ok, %{"a" => :ok}} = SessionStore.update_variables(SessionStore, sid, %{a: 4})

      assert {:ok, %{"a" => :ok}} =
               SessionStore.update_variables(SessionStore, sid, %{a: 5}, atomic: true)

      assert SessionStore.get_variable_value(sid, :a) == 5
    end
  end

  describe "export / import" do
    test "export gives plain maps; import recreates them in another session", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :e1, :float, 1.5, constraints: %{min: 0.0})
      {:ok, _} = SessionStore.register_variable(sid, "e2", :embedding, [1, 2, 3])
      assert {:ok, exported} = SessionStore.export_variables(sid)
      assert [first, second] = exported
      refute Map.has_key?(first, :__struct__)

      for key <- [
            :id,
            :name,
            :type,
            :value,
            :constraints,
            :metadata,
            :version,
            :created_at,
            :last_updated_at
          ] do
        assert Map.has_key?(first, key), "export lacks #{key}"
      end

      assert first.name == "e1"
      assert second.value === [1.0, 2.0, 3.0]

      other = unique_id()
      {:ok, _} = SessionStore.create_session(other)
      assert SessionStore.import_variables(other, exported) == {:ok, 2}
      assert {:ok, %Variable{value: 1.5, type: :float}} = SessionStore.get_variable(other, "e1")
      assert SessionStore.get_variable_value(other, "e2") == [1.0, 2.0, 3.0]
    end

    test "a malformed map is an error and imports nothing", %{sid: sid} do
      {:ok, _} = SessionStore.register_variable(sid, :ok_one, :integer, 1)
      {:ok, [good]} = SessionStore.export_variables(sid)
      other = unique_id()
      {:ok, _} = SessionStore.create_session(other)
      assert {:error, _reason} = SessionStore.import_variables(other, [good, %{name: "x"}])
      assert SessionStore.list_variables(other) == {:ok, []}
    end
  end

  test "every variable call on a missing session is :session_not_found" do
    sid = unique_id("missing")

    calls = [
      fn -> SessionStore.register_variable(sid, :a, :integer, 1) end,
      fn -> SessionStore.get_variable(sid, :a) end,
      fn -> SessionStore.update_variable(sid, :a, 1) end,
      fn -> SessionStore.delete_variable(sid, :a) end,
      fn -> SessionStore.list_variables(sid) end,
      fn -> SessionStore.list_variables(sid, "a*") end,
      fn -> SessionStore.get_variables(sid, [:a]) end,
      fn -> SessionStore.update_variables(sid, %{a: 1}) end,
      fn -> SessionStore.update_variables(sid, %{a: 1}, atomic: true) end,
      fn -> SessionStore.export_variables(sid) end,
      fn -> SessionStore.import_variables(sid, []) end
    ]

    for call <- calls, do: assert(call.() == {:error, :session_not_found})
    assert SessionStore.has_variable?(sid, :a) === false
  end
end
