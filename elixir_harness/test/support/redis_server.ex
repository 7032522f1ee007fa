defmodule SnakepitSidecar.RedisServer do
  @moduledoc """
  A `redis-server` of one's own for the Redis tests, the demo and the benchmark: started on a free
  loopback port (no persistence unless `args` ask for it), stopped by its OS pid. Nothing here
  uses a Redis it did not start.

  Compiled with the tests (`test/support`); the demo and the benchmark `Code.require_file/1` it.
  """

  defstruct [:port, :os_pid, :owner, :dir, :args, :executable]

  @type t :: %__MODULE__{}

  @doc "The `redis-server` executable, or nil when it is not installed."
  @spec executable() :: String.t() | nil
  def executable, do: System.find_executable("redis-server")

  @doc "Starts one (`args` replace the default `--save \"\" --appendonly no`)."
  @spec start(keyword()) :: t()
  def start(opts \\ []) do
    executable = executable() || raise "redis-server is not installed"
    dir = Keyword.get_lazy(opts, :dir, fn -> temp_dir() end)
    File.mkdir_p!(dir)

    server = %__MODULE__{
      port: Keyword.get_lazy(opts, :port, &free_port/0),
      dir: dir,
      args: Keyword.get(opts, :args, ["--save", "", "--appendonly", "no"]),
      executable: executable
    }

    launch(server)
  end

  @doc "The `redis://` URL of the server."
  @spec url(t()) :: String.t()
  def url(%__MODULE__{port: port}), do: "redis://127.0.0.1:#{port}/0"

  @doc """
  Sends one command (a list of binaries) on a connection of its own and returns Redis's raw
  answer (e.g. `["CLIENT", "KILL", "TYPE", "pubsub"]` gives `":2\\r\\n"`).
  """
  @spec command(t(), [String.t()]) :: binary()
  def command(%__MODULE__{port: port}, args) do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", port, [:binary, active: false], 1000)
    request = ["*#{length(args)}\r\n" | Enum.map(args, &"$#{byte_size(&1)}\r\n#{&1}\r\n")]
    :ok = :gen_tcp.send(socket, request)
    {:ok, answer} = :gen_tcp.recv(socket, 0, 5000)
    :gen_tcp.close(socket)
    answer
  end

  @doc "Stops it by its pid (`kill: true`: SIGKILL, nothing written on the way out)."
  @spec stop(t(), keyword()) :: t()
  def stop(%__MODULE__{os_pid: os_pid} = server, opts \\ []) do
    if os_pid do
      signal = if Keyword.get(opts, :kill, false), do: "-KILL", else: "-TERM"
      System.cmd("kill", [signal, Integer.to_string(os_pid)], stderr_to_stdout: true)
      wait_gone(os_pid, 200)
    end

    %{server | os_pid: nil}
  end

  @doc "Starts it again, on the same port and directory."
  @spec restart(t()) :: t()
  def restart(server), do: server |> stop() |> launch()

  @doc "Stops it and removes its directory."
  @spec close(t()) :: :ok
  def close(server) do
    stop(server)
    File.rm_rf(server.dir)
    :ok
  end

  defp launch(server) do
    args =
      ["--port", Integer.to_string(server.port), "--bind", "127.0.0.1", "--dir", server.dir] ++
        ["--logfile", Path.join(server.dir, "redis.log")] ++ server.args

    port = Port.open({:spawn_executable, server.executable}, [:binary, args: args])
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    server = %{server | os_pid: os_pid, owner: port}
    wait_ready(server, 500)
    server
  end

  defp wait_ready(server, 0), do: raise("redis-server did not answer on #{server.port}")

  defp wait_ready(server, tries) do
    case :gen_tcp.connect(~c"127.0.0.1", server.port, [:binary, active: false], 200) do
      {:ok, socket} ->
        :ok = :gen_tcp.send(socket, "PING\r\n")
        answer = :gen_tcp.recv(socket, 0, 1000)
        :gen_tcp.close(socket)

        case answer do
          {:ok, "+PONG" <> _} -> :ok
          _ -> retry_ready(server, tries)
        end

      {:error, _} ->
        retry_ready(server, tries)
    end
  end

  defp retry_ready(server, tries) do
    Process.sleep(20)
    wait_ready(server, tries - 1)
  end

  defp wait_gone(_os_pid, 0), do: :ok

  defp wait_gone(os_pid, tries) do
    case System.cmd("kill", ["-0", Integer.to_string(os_pid)], stderr_to_stdout: true) do
      {_, 0} ->
        Process.sleep(25)
        wait_gone(os_pid, tries - 1)

      _ ->
        :ok
    end
  end

  defp free_port do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    :gen_tcp.close(socket)
    port
  end

  defp temp_dir do
    Path.join(System.tmp_dir!(), "snakepit-redis-#{System.unique_integer([:positive])}")
  end
end
