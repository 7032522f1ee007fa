defmodule SnakepitSidecar.Contract.TypesTest do
  @moduledoc ~s(Contract rows of docs/contract.md, "Types", through the real port.)
  use SnakepitSidecar.SidecarCase, drop_in: true

  setup do
    sid = unique_id()
    {:ok, _} = SessionStore.create_session(sid)
    %{sid: sid}
  end

  # Registers a variable and returns {:ok, stored_value} or the error term.
  defp store(sid, type, value, constraints \\ %{}) do
    case SessionStore.register_variable(sid, unique_id("v"), type, value, constraints: constraints) do
      {:ok, id} ->
        {:ok, %Variable{value: stored}} = SessionStore.get_variable(sid, id)
        {:ok, stored}

      error ->
        error
    end
  end

  test "float", %{sid: sid} do
    assert {:ok, 1.5} = store(sid, :float, 1.5)
    assert {:ok, stored} = store(sid, :float, 2)
    assert stored === 2.0
    assert store(sid, :float, :infinity) == {:ok, :infinity}
    assert store(sid, :float, "-Infinity") == {:ok, :negative_infinity}
    assert store(sid, :float, "NaN") == {:ok, :nan}
    assert store(sid, :float, true) == {:error, "must be a number"}
    assert store(sid, :float, "1.0") == {:error, "must be a number"}
    assert store(sid, :float, 0.5, %{min: 1.0}) == {:error, "value 0.5 is below minimum 1.0"}

    assert store(sid, :float, 1.0e-6, %{min: 1.0e-5}) ==
             {:error, "value 1.0e-6 is below minimum 1.0e-5"}

    assert store(sid, :float, 150, %{max: 100}) == {:error, "value 150.0 is above maximum 100"}
    assert store(sid, :float, :infinity, %{max: 1.0}) == {:ok, :infinity}
  end

  test "integer", %{sid: sid} do
    assert store(sid, :integer, 3) == {:ok, 3}
    assert {:ok, stored} = store(sid, :integer, 4.0)
    assert stored === 4
    assert store(sid, :integer, 4.5) == {:error, "must be a whole number, got 4.5"}
    assert store(sid, :integer, "4") == {:error, "must be an integer"}
    assert store(sid, :integer, true) == {:error, "must be an integer"}
    assert store(sid, :integer, 2 ** 70) == {:ok, 2 ** 70}
    assert store(sid, :integer, 5, %{min: 10}) == {:error, "value 5 is below minimum 10"}
  end

  test "string", %{sid: sid} do
    assert store(sid, :string, "héllo") == {:ok, "héllo"}
    assert store(sid, :string, :atom_value) == {:ok, "atom_value"}
    assert store(sid, :string, nil) == {:error, "cannot be nil"}
    assert store(sid, :string, 42) == {:error, "must be a string"}

    assert store(sid, :string, "ab", %{min_length: 3}) ==
             {:error, "must be at least 3 characters, got 2"}

    assert store(sid, :string, "abcd", %{max_length: 3}) ==
             {:error, "must be at most 3 characters, got 4"}

    assert store(sid, :string, "héé", %{max_length: 3}) == {:ok, "héé"}
    assert store(sid, :string, "abc", %{pattern: "^x"}) == {:error, "must match pattern: ^x"}
    assert store(sid, :string, "xyz", %{pattern: "^x"}) == {:ok, "xyz"}
    assert store(sid, :string, "c", %{enum: ["a", "b"]}) == {:error, "must be one of: a, b"}
  end

  test "boolean", %{sid: sid} do
    for {given, stored} <- [
          {true, true},
          {false, false},
          {"true", true},
          {"false", false},
          {1, true},
          {0, false}
        ] do
      assert store(sid, :boolean, given) == {:ok, stored}
    end

    assert store(sid, :boolean, 2) == {:error, "must be a boolean (true or false)"}
    assert store(sid, :boolean, nil) == {:error, "must be a boolean (true or false)"}
  end

  test "choice and module", %{sid: sid} do
    assert store(sid, :choice, :fast) == {:ok, "fast"}
    assert store(sid, :choice, 1) == {:error, "must be a string"}
    assert store(sid, :choice, "c", %{choices: ["a", "b"]}) == {:error, "must be one of: a, b"}
    assert store(sid, :choice, "c", %{choices: []}) == {:ok, "c"}
    assert store(sid, :module, Enum) == {:ok, "Elixir.Enum"}
    assert store(sid, :module, 1) == {:error, "must be a module name"}

    assert store(sid, :module, "X", %{allowed_modules: ["A", "B"]}) ==
             {:error, "must be one of the allowed modules: A, B"}
  end

  test "embedding", %{sid: sid} do
    assert {:ok, stored} = store(sid, :embedding, [1, 2.5])
    assert stored === [1.0, 2.5]
    assert store(sid, :embedding, [1, "x"]) == {:error, "must be a list of numbers"}
    assert store(sid, :embedding, "x") == {:error, "must be a numeric list"}

    assert store(sid, :embedding, [1.0], %{dimensions: 2}) ==
             {:error, "must have exactly 2 dimensions"}
  end

  test "tensor", %{sid: sid} do
    tensor = %{"shape" => [2, 2], "data" => [[1, 2], [3, 4]]}
    assert {:ok, %{"shape" => [2, 2]}} = store(sid, :tensor, tensor)

    assert store(sid, :tensor, %{"shape" => [3], "data" => [1]}) ==
             {:error, "data size doesn't match shape"}

    assert store(sid, :tensor, [1]) == {:error, "must be a tensor with shape and data"}
    assert store(sid, :tensor, tensor, %{shape: [2, 3]}) == {:error, "shape must be [2, 3]"}
  end
end
