defmodule SnakepitSidecar.OSProcess do
  @moduledoc """
  Spawning the Python sidecar as a port, and making sure its OS process is gone.

  The sidecar runs as `python -m sidecar`. With `:sidecar_path` set, that directory is prepended
  to `PYTHONPATH`, so a checkout runs without installing the package (this project's dev and
  test config); with `:sidecar_path` `nil`, the package must be installed in `:python`
  (`SnakepitSidecar.Options`, "Finding the sidecar"). Its stdin/stdout carry `{:packet, 4}`
  frames; its stderr is inherited (Python tracebacks and the sidecar's own stderr logging show up
  on the BEAM's stderr).
  """

  @typedoc "Where and how to start the sidecar."
  @type spec :: %{
          required(:python) => String.t(),
          required(:sidecar_path) => String.t() | nil,
          required(:sidecar_args) => [String.t()],
          optional(:storage) => SnakepitSidecar.Storage.t(),
          optional(atom()) => term()
        }

  @doc """
  Resolves the Python executable: a value containing `/` must be an executable file; any
  other value is looked up in `PATH`.
  """
  @spec find_python(String.t()) :: {:ok, String.t()} | {:error, {:python_not_found, String.t()}}
  def find_python(python) do
    found =
      if String.contains?(python, "/"),
        do: if(File.regular?(python), do: Path.expand(python)),
        else: System.find_executable(python)

    if found, do: {:ok, found}, else: {:error, {:python_not_found, python}}
  end

  @doc """
  Opens the port running the sidecar. Returns the port and the OS pid of the process.
  """
  @spec open(spec()) :: {:ok, port(), non_neg_integer() | nil} | {:error, term()}
  def open(%{python: python, sidecar_path: sidecar_path, sidecar_args: sidecar_args} = spec) do
    storage_args = SnakepitSidecar.Storage.args(Map.get(spec, :storage, :memory))

    with {:ok, executable} <- find_python(python) do
      options = [
        :binary,
        {:packet, 4},
        :exit_status,
        :use_stdio,
        :hide,
        args: ["-m", "sidecar" | storage_args ++ sidecar_args],
        env: env(sidecar_path)
      ]

      try do
        port = Port.open({:spawn_executable, executable}, options)

        os_pid =
          case Port.info(port, :os_pid) do
            {:os_pid, pid} -> pid
            _ -> nil
          end

        {:ok, port, os_pid}
      rescue
        error in ErlangError -> {:error, {:spawn_failed, error.original}}
      end
    end
  end

  @doc """
  Closes the port (the sidecar sees EOF on stdin and exits) and waits up to `grace_ms` for the
  OS process to be gone; if it lingers, sends it SIGKILL.
  """
  @spec close(port() | nil, non_neg_integer() | nil, non_neg_integer()) :: :ok
  def close(port, os_pid, grace_ms \\ 500) do
    if is_port(port) do
      try do
        Port.close(port)
      rescue
        ArgumentError -> :ok
      end
    end

    ensure_gone(os_pid, grace_ms)
  end

  @doc "Waits up to `grace_ms` for `os_pid` to exit, then kills it with SIGKILL."
  @spec ensure_gone(non_neg_integer() | nil, non_neg_integer()) :: :ok
  def ensure_gone(nil, _grace_ms), do: :ok

  def ensure_gone(os_pid, grace_ms) do
    deadline = System.monotonic_time(:millisecond) + grace_ms
    wait_or_kill(os_pid, deadline)
  end

  @doc """
  Whether the OS process `os_pid` is running (a zombie counts as gone). Uses `/proc` where it
  exists, `kill -0` elsewhere.
  """
  @spec alive?(non_neg_integer()) :: boolean()
  def alive?(os_pid) do
    if File.dir?("/proc/self") do
      case File.read("/proc/#{os_pid}/stat") do
        {:ok, stat} -> not zombie?(stat)
        {:error, _} -> false
      end
    else
      {_, status} = System.cmd("kill", ["-0", Integer.to_string(os_pid)], stderr_to_stdout: true)
      status == 0
    end
  end

  @doc "Sends SIGKILL to `os_pid`."
  @spec kill(non_neg_integer()) :: :ok
  def kill(os_pid) do
    _ = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)], stderr_to_stdout: true)
    :ok
  end

  defp wait_or_kill(os_pid, deadline) do
    cond do
      not alive?(os_pid) ->
        :ok

      System.monotonic_time(:millisecond) >= deadline ->
        kill(os_pid)

      true ->
        Process.sleep(10)
        wait_or_kill(os_pid, deadline)
    end
  end

  # /proc/<pid>/stat is "pid (comm) S ..."; comm may contain spaces and parentheses.
  defp zombie?(stat) do
    case :binary.matches(stat, ")") do
      [] ->
        false

      matches ->
        {last, _} = List.last(matches)
        String.starts_with?(binary_part(stat, last + 1, byte_size(stat) - last - 1), [" Z", " X"])
    end
  end

  defp env(nil), do: []

  defp env(sidecar_path) do
    python_path =
      case System.get_env("PYTHONPATH") do
        nil -> sidecar_path
        "" -> sidecar_path
        existing -> sidecar_path <> ":" <> existing
      end

    [{~c"PYTHONPATH", String.to_charlist(python_path)}]
  end
end
