defmodule SnakepitSidecar.OptionsConfigTest do
  # Where :python and :sidecar_path come from when the start options leave them out: read when
  # the options are validated, from the application environment, then the OS environment. This
  # module changes both, which every starting store reads: not async (ExUnit runs it alone,
  # after the async modules), and everything is put back after each test.
  use ExUnit.Case, async: false

  alias SnakepitSidecar.Options

  setup do
    saved_app =
      for key <- [:python, :sidecar_path],
          do: {key, Application.fetch_env(:snakepit_sidecar, key)}

    saved_os = System.get_env("SNAKEPIT_SIDECAR_PYTHON")

    on_exit(fn ->
      for {key, saved} <- saved_app do
        case saved do
          {:ok, value} -> Application.put_env(:snakepit_sidecar, key, value)
          :error -> Application.delete_env(:snakepit_sidecar, key)
        end
      end

      if saved_os,
        do: System.put_env("SNAKEPIT_SIDECAR_PYTHON", saved_os),
        else: System.delete_env("SNAKEPIT_SIDECAR_PYTHON")
    end)
  end

  test "with nothing configured, :sidecar_path is nil: the package must be installed" do
    Application.delete_env(:snakepit_sidecar, :sidecar_path)
    assert Options.default_sidecar_path() == nil
    assert {:ok, %{sidecar_path: nil}} = Options.validate([])
  end

  test ":sidecar_path: the option, else the application environment, read at validation" do
    Application.put_env(:snakepit_sidecar, :sidecar_path, "/configured/checkout")
    assert Options.default_sidecar_path() == "/configured/checkout"
    assert {:ok, %{sidecar_path: "/configured/checkout"}} = Options.validate([])
    assert {:ok, %{sidecar_path: "/given"}} = Options.validate(sidecar_path: "/given")
    assert {:ok, %{sidecar_path: nil}} = Options.validate(sidecar_path: nil)
  end

  test ":python: the option, else the application environment, else $SNAKEPIT_SIDECAR_PYTHON, else python3" do
    System.put_env("SNAKEPIT_SIDECAR_PYTHON", "/from/os/env/python")
    Application.put_env(:snakepit_sidecar, :python, "/from/config/python")
    assert {:ok, %{python: "/given/python"}} = Options.validate(python: "/given/python")
    assert {:ok, %{python: "/from/config/python"}} = Options.validate([])

    Application.delete_env(:snakepit_sidecar, :python)
    assert {:ok, %{python: "/from/os/env/python"}} = Options.validate([])

    System.delete_env("SNAKEPIT_SIDECAR_PYTHON")
    assert {:ok, %{python: "python3"}} = Options.validate([])
  end

  test "a configured value is checked like a given one" do
    Application.put_env(:snakepit_sidecar, :python, "")
    assert {:error, message} = Options.validate([])
    assert message =~ ":python"
  end
end
