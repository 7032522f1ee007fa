defmodule Bench.EchoFloor do
  @moduledoc """
  The floor: the bare `{:packet, 4}` port round trip, measured against `sidecar/echo.py`.

  The benchmark process itself owns a port to the echo program (opened with the same options
  the harness uses for the sidecar), sends the frame the harness would send for a
  `get_variable` call, receives it back unchanged and decodes it with
  `:erlang.binary_to_term(bytes)`, as the harness decodes a reply. No GenServer hop, no
  Python decoding: everything a real call costs on top of this is the harness and the sidecar.

  `Bench.EchoFloor.Owner` is the same echo behind a port-owning GenServer shaped like the
  harness's connection (pipelined ids, replies matched by id): an informational row that
  separates the cost of the harness's process hop from the sidecar's.
  """

  @echo_script Path.expand("../../../sidecar/echo.py", __DIR__)

  @doc "Opens the echo port with `python` (an executable path)."
  @spec open(String.t()) :: port()
  def open(python) do
    Port.open({:spawn_executable, python}, [
      :binary,
      {:packet, 4},
      :exit_status,
      :use_stdio,
      :hide,
      args: [@echo_script]
    ])
  end

  @doc "Closes the echo port (the echo program exits on end of stdin)."
  @spec close(port()) :: :ok
  def close(port) do
    Port.close(port)
    :ok
  end

  @doc "The request frame of call `i`: what the harness sends for a `get_variable`."
  @spec frame(non_neg_integer()) :: binary()
  def frame(i), do: :erlang.term_to_binary({:call, i, :get_variable, ["bench_1", :v0]})

  @doc """
  A one-argument function doing call `i`'s round trip: encode the request frame, send it,
  receive it back and decode it. Must run in the process that opened `port`.
  """
  @spec round_trip_fun(port()) :: (non_neg_integer() -> term())
  def round_trip_fun(port) do
    fn i ->
      true = Port.command(port, frame(i))

      receive do
        {^port, {:data, bytes}} -> :erlang.binary_to_term(bytes)
      after
        10_000 -> raise "the echo program did not answer"
      end
    end
  end
end

defmodule Bench.EchoFloor.Owner do
  @moduledoc """
  The echo program behind one GenServer that owns its port, shaped like
  `SnakepitSidecar.Connection`: a caller's request gets the next id, its frame is written at
  once, and the decoded echo is sent back to the caller whose id it carries.
  """

  use GenServer

  @doc "Starts the owner of a new echo port."
  def start_link(python), do: GenServer.start_link(__MODULE__, python)

  @doc "A one-argument function doing a round trip through the owner (any process may call it)."
  def round_trip_fun(owner),
    do: fn _i -> {:call, _, :get_variable, _} = GenServer.call(owner, :echo) end

  @impl true
  def init(python), do: {:ok, %{port: Bench.EchoFloor.open(python), next_id: 0, pending: %{}}}

  @impl true
  def handle_call(:echo, from, state) do
    id = state.next_id
    true = Port.command(state.port, Bench.EchoFloor.frame(id))
    {:noreply, %{state | next_id: id + 1, pending: Map.put(state.pending, id, from)}}
  end

  @impl true
  def handle_info({port, {:data, bytes}}, %{port: port} = state) do
    {:call, id, _, _} = term = :erlang.binary_to_term(bytes)
    {from, pending} = Map.pop(state.pending, id)
    GenServer.reply(from, term)
    {:noreply, %{state | pending: pending}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: Bench.EchoFloor.close(state.port)
end
