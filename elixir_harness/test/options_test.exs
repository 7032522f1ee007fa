defmodule SnakepitSidecar.OptionsTest do
  use ExUnit.Case, async: true

  alias SnakepitSidecar.Options

  test "defaults are the contract's" do
    assert {:ok, opts} = Options.validate([])
    assert opts.name == SnakepitSidecar.SessionStore
    assert opts.cleanup_interval == 60_000
    assert opts.default_ttl == 3600
    assert opts.global_program_ttl == 3600
    assert opts.call_timeout == 5000
    assert opts.record == nil
    assert opts.session_struct == SnakepitSidecar.Session
    assert opts.variable_struct == SnakepitSidecar.Variable
    assert Map.keys(opts) |> Enum.sort() == Enum.sort(Options.keys())
  end

  test "given options and overriding defaults win" do
    assert {:ok, opts} =
             Options.validate([default_ttl: 5, name: nil], name: Foo, session_struct: Bar)

    assert opts.default_ttl == 5
    assert opts.name == nil
    assert opts.session_struct == Bar
  end

  test "the sidecar is found through the repository root by default" do
    assert path = Options.default_sidecar_path()
    assert File.regular?(Path.join([path, "sidecar", "__init__.py"]))
  end

  test "bad values are refused with a message naming the option" do
    bad = [
      cleanup_interval: 0,
      cleanup_interval: "60",
      default_ttl: -1,
      global_program_ttl: 1.5,
      call_timeout: 0,
      call_timeout: :never,
      python: "",
      python: :python3,
      record: 42,
      sidecar_path: ~c"/tmp",
      session_struct: "Mod",
      variable_struct: nil,
      name: "store",
      startup_timeout: -5
    ]

    for {key, value} <- bad do
      assert {:error, message} = Options.validate([{key, value}])
      assert message =~ inspect(key)
      assert message =~ inspect(value)
    end
  end

  test "unknown options and non-keyword input are refused" do
    assert {:error, message} = Options.validate(colour: :blue)
    assert message =~ "unknown option :colour"
    assert {:error, message} = Options.validate(%{default_ttl: 1})
    assert message =~ "keyword list"
  end

  test "validate! raises ArgumentError" do
    assert_raise ArgumentError, ~r/:default_ttl/, fn -> Options.validate!(default_ttl: -3) end
  end

  test "the moduledoc's table is the schema: every option, with its default" do
    {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Options)

    for key <- Options.keys(), do: assert(moduledoc =~ "| `#{inspect(key)}` |")

    assert moduledoc =~ "| `:default_ttl` | non-negative integer, seconds | `3600` |"
    assert moduledoc =~ "| `:cleanup_interval` |"
    assert moduledoc =~ "| `60_000` |"
    assert moduledoc =~ "`$SNAKEPIT_SIDECAR_PYTHON`, else `\"python3\"` |"
  end

  test "list and alternative types are checked element by element" do
    assert {:ok, %{sidecar_args: ["--x", ""]}} = Options.validate(sidecar_args: ["--x", ""])
    assert {:error, message} = Options.validate(sidecar_args: ["--x", :y])
    assert message =~ "a list, each element a string"
    assert {:ok, %{call_timeout: :infinity}} = Options.validate(call_timeout: :infinity)
    assert {:error, message} = Options.validate(call_timeout: :forever)
    assert message =~ "a positive integer or :infinity"
  end
end
