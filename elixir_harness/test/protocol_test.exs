defmodule SnakepitSidecar.ProtocolTest do
  use ExUnit.Case, async: true

  alias SnakepitSidecar.Protocol

  describe "encoding" do
    test "hello is {:hello, 1, opts} in the external term format" do
      bytes = Protocol.encode_hello(%{default_ttl: 10})
      assert <<131, _::binary>> = bytes
      assert :erlang.binary_to_term(bytes) == {:hello, 1, %{default_ttl: 10}}
    end

    test "call is {:call, id, function, args}" do
      bytes = Protocol.encode_call(7, :get_session, ["s1"])
      assert :erlang.binary_to_term(bytes) == {:call, 7, :get_session, ["s1"]}
    end

    test "call refuses a negative id or a non-atom function" do
      assert_raise FunctionClauseError, fn -> Protocol.encode_call(-1, :ping, []) end
      assert_raise FunctionClauseError, fn -> Protocol.encode_call(1, "ping", []) end
    end
  end

  describe "decoding well-formed frames" do
    test "welcome, reply, telemetry, log, protocol_error" do
      frames = [
        {:welcome, 1, %{os_pid: 12, protocol_versions: [1]}},
        {:reply, 3, {:ok, %{a: [1.0, nil, true]}}},
        {:telemetry, [:snakepit, :session_store, :variable, :get], %{count: 1},
         %{cache_hit: false}},
        {:log, :warning, "careful", %{module: "x"}},
        {:protocol_error, :decode_error, "not a term"}
      ]

      for frame <- frames do
        assert Protocol.decode(:erlang.term_to_binary(frame)) == {:ok, frame}
      end
    end

    test "reply results keep their exact types" do
      result = {:ok, [1, 1.0, :one, "one", nil, true, {1}, %{"k" => <<0, 255>>}]}
      bytes = :erlang.term_to_binary({:reply, 0, result})
      assert {:ok, {:reply, 0, decoded}} = Protocol.decode(bytes)
      assert decoded === result
    end

    test "compressed frames decode" do
      frame = {:reply, 9, String.duplicate("x", 10_000)}
      bytes = :erlang.term_to_binary(frame, compressed: 9)
      assert Protocol.decode(bytes) == {:ok, frame}
    end
  end

  describe "decoding defensively" do
    test "garbage is a decode error, not an exception" do
      assert Protocol.decode(<<1, 2, 3>>) == {:error, :decode_error}
      assert Protocol.decode(<<>>) == {:error, :decode_error}
      assert Protocol.decode(<<131>>) == {:error, :decode_error}
    end

    test "valid terms that are not frames are unexpected frames" do
      for term <- [
            :hello,
            {:reply, -1, :ok},
            {:reply, "1", :ok},
            {:log, :loud, "x", %{}},
            {:telemetry, [], %{}, %{}},
            {:telemetry, ["a"], %{}, %{}},
            {:welcome, 1, :not_a_map},
            {:protocol_error, :x, :not_binary}
          ] do
        assert Protocol.decode(:erlang.term_to_binary(term)) ==
                 {:error, {:unexpected_frame, term}}
      end
    end

    test "a truncated reply still yields its id" do
      bytes = :erlang.term_to_binary({:reply, 5, String.duplicate("a", 100)})
      truncated = binary_part(bytes, 0, byte_size(bytes) - 10)
      assert Protocol.decode(truncated) == {:error, {:undecodable_reply, 5}}
    end

    test "peek_reply_id reads small, 32-bit and big ids" do
      for id <- [0, 255, 256, 2_000_000_000, 2 ** 40] do
        bytes = :erlang.term_to_binary({:reply, id, :ok})
        assert Protocol.peek_reply_id(bytes) == {:ok, id}
      end

      assert Protocol.peek_reply_id(:erlang.term_to_binary({:log, 1, 2, 3})) == :error
    end

    test "a reply holding an atom this node has never seen still decodes" do
      name = "never_seen_before_#{System.unique_integer([:positive])}"
      atom_ext = <<119, byte_size(name)>> <> name
      bytes = <<131, 104, 3, 119, 5, "reply", 97, 9, 104, 2, 119, 5, "error">> <> atom_ext
      assert {:ok, {:reply, 9, {:error, atom}}} = Protocol.decode(bytes)
      assert Atom.to_string(atom) == name
    end
  end

  describe "compact variables" do
    @status %{optimizing: false, optimizer_id: nil, optimizer_pid: nil, started_at: nil}
    @busy %{optimizing: true, optimizer_id: "o", optimizer_pid: nil, started_at: -5}

    defp compact(name, status) do
      {SnakepitSidecar.Variable, "var_#{name}_1", name, :float, 0.5, %{min: 0.0},
       %{"source" => "elixir"}, 3, -9, -8, status, []}
    end

    defp struct_of(name, status) do
      %SnakepitSidecar.Variable{
        id: "var_#{name}_1",
        name: name,
        type: :float,
        value: 0.5,
        constraints: %{min: 0.0},
        metadata: %{"source" => "elixir"},
        version: 3,
        created_at: -9,
        last_updated_at: -8,
        optimization_status: status || @status,
        access_rules: []
      }
    end

    test "get_variable's tuple becomes the struct; nil is the default optimization status" do
      assert Protocol.expand_variables(:get_variable, {:ok, compact(:t, nil)}) ==
               {:ok, struct_of(:t, nil)}

      assert Protocol.expand_variables(:get_variable, {:ok, compact(:t, @busy)}) ==
               {:ok, struct_of(:t, @busy)}
    end

    test "list_variables and get_variables expand every variable" do
      assert Protocol.expand_variables(
               :list_variables,
               {:ok, [compact(:a, nil), compact(:b, @busy)]}
             ) ==
               {:ok, [struct_of(:a, nil), struct_of(:b, @busy)]}

      found = %{"a" => compact(:a, nil), "b" => compact(:b, nil)}

      assert Protocol.expand_variables(:get_variables, {:ok, %{found: found, missing: ["c"]}}) ==
               {:ok,
                %{found: %{"a" => struct_of(:a, nil), "b" => struct_of(:b, nil)}, missing: ["c"]}}
    end

    test "structs, errors and the results of other calls are left alone" do
      struct = struct_of(:t, nil)
      assert Protocol.expand_variables(:get_variable, {:ok, struct}) == {:ok, struct}

      assert Protocol.expand_variables(:get_variable, {:error, :not_found}) ==
               {:error, :not_found}

      assert Protocol.expand_variables(:list_variables, {:ok, []}) == {:ok, []}
      tuple = compact(:t, nil)
      assert Protocol.expand_variables(:get_variable_value, {:ok, tuple}) == {:ok, tuple}
      assert Protocol.expand_variables(:get_session, {:ok, tuple}) == {:ok, tuple}
      assert Protocol.expand_variables(:get_variable, {:ok, {:a, :b}}) == {:ok, {:a, :b}}
    end
  end
end
