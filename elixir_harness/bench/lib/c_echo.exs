defmodule Bench.CEcho do
  @moduledoc """
  The read-cache pass's floor (`Bench.CachePass`): the bare `{:packet, 4}` round trip to a C
  echo (`bench/c/echo.c`, compiled here with `cc -O2` into the mix project's `_build`), the
  floor the issue's write target is stated against. Measured exactly as `Bench.EchoFloor`
  measures the Python echo: the benchmark process owns the port, sends the frame the harness
  sends for a `get_variable`, receives it back and decodes it.
  """

  @source Path.expand("../c/echo.c", __DIR__)

  @doc "Compiles the echo if needed; `{:ok, path}` or `{:error, why}` (no C compiler, ...)."
  @spec build() :: {:ok, String.t()} | {:error, String.t()}
  def build do
    target = Path.join(Mix.Project.build_path(), "bench_c_echo")

    cond do
      File.exists?(target) and
          File.stat!(target).mtime >= File.stat!(@source).mtime ->
        {:ok, target}

      cc = System.find_executable("cc") || System.find_executable("gcc") ->
        case System.cmd(cc, ["-O2", "-o", target, @source], stderr_to_stdout: true) do
          {_, 0} -> {:ok, target}
          {out, status} -> {:error, "cc failed (#{status}): #{out}"}
        end

      true ->
        {:error, "no C compiler (cc) on PATH"}
    end
  end

  @doc "Opens the echo port."
  @spec open(String.t()) :: port()
  def open(path) do
    Port.open({:spawn_executable, path}, [:binary, {:packet, 4}, :exit_status, :use_stdio, :hide])
  end

  @doc "Call `i`'s round trip (run in the process that opened `port`)."
  @spec round_trip_fun(port()) :: (non_neg_integer() -> term())
  def round_trip_fun(port) do
    fn i ->
      true = Port.command(port, Bench.EchoFloor.frame(i))

      receive do
        {^port, {:data, bytes}} -> :erlang.binary_to_term(bytes)
      after
        10_000 -> raise "the C echo did not answer"
      end
    end
  end
end
