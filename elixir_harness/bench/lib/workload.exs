defmodule Bench.Workload do
  @moduledoc """
  The sessions the cells run in, and the four operations measured, as one-argument functions of
  the call index.

  A session `"bench_<n>"` holds `n` float variables named `:v0` .. `:v<n-1>`, registered
  through the harness. Per-variable calls walk the variables in turn (call `i` uses variable
  `i rem n`); batch calls take 10 consecutive names, wrapping around. Batch operations need 10
  variables, so where a cell asks for a session of 1 they run in a session of 10 instead (the
  table says which size was used).
  """

  alias SnakepitSidecar.SessionStore, as: Store

  @batch_size 10

  @operations [:get_variable, :update_variable, :get_variables, :update_variables]

  @doc "The operations, in table order."
  @spec operations() :: [atom()]
  def operations, do: @operations

  @doc "How many variables `operation` actually gets when a cell asks for `size`."
  @spec effective_size(atom(), pos_integer()) :: pos_integer()
  def effective_size(op, size) when op in [:get_variables, :update_variables],
    do: max(size, @batch_size)

  def effective_size(_op, size), do: size

  @doc "A label for the table: `get_variables(10)` for the batch operations."
  @spec label(atom()) :: String.t()
  def label(op) when op in [:get_variables, :update_variables], do: "#{op}(#{@batch_size})"
  def label(op), do: Atom.to_string(op)

  @doc "Creates session `\"bench_<size>\"` with `size` float variables; returns its names."
  @spec create_session(GenServer.server(), pos_integer()) :: tuple()
  def create_session(server, size) do
    session_id = session_id(size)
    {:ok, _} = Store.create_session(server, session_id)
    names = for i <- 0..(size - 1), do: :"v#{i}"

    names
    |> Task.async_stream(
      fn name -> {:ok, _} = Store.register_variable(server, session_id, name, :float, 0.0) end,
      max_concurrency: 16,
      ordered: false
    )
    |> Stream.run()

    List.to_tuple(names)
  end

  @doc "The session id of the session of `size` variables."
  @spec session_id(pos_integer()) :: String.t()
  def session_id(size), do: "bench_#{size}"

  @doc """
  The function of call index `i` doing `operation` in the session whose names are `names`. It
  checks the result's shape, so a cell that measured errors fails loudly.
  """
  @spec call_fun(GenServer.server(), atom(), tuple()) :: (non_neg_integer() -> term())
  def call_fun(server, :get_variable, names) do
    {session_id, size} = {session_id(tuple_size(names)), tuple_size(names)}

    fn i ->
      {:ok, _variable} = Store.get_variable(server, session_id, elem(names, rem(i, size)))
    end
  end

  def call_fun(server, :update_variable, names) do
    {session_id, size} = {session_id(tuple_size(names)), tuple_size(names)}

    fn i ->
      :ok =
        Store.update_variable(server, session_id, elem(names, rem(i, size)), rem(i, 1000) + 0.5)
    end
  end

  def call_fun(server, :get_variables, names) do
    session_id = session_id(tuple_size(names))

    fn i ->
      {:ok, %{found: found, missing: []}} =
        Store.get_variables(server, session_id, batch(names, i))

      @batch_size = map_size(found)
    end
  end

  def call_fun(server, :update_variables, names) do
    session_id = session_id(tuple_size(names))

    fn i ->
      updates = Map.new(batch(names, i), &{&1, rem(i, 1000) + 0.25})
      {:ok, results} = Store.update_variables(server, session_id, updates)
      @batch_size = map_size(results)
    end
  end

  @doc "The minimal call through the whole stack (`ping`), for the table's breakdown."
  @spec ping_fun(GenServer.server()) :: (non_neg_integer() -> term())
  def ping_fun(server), do: fn _i -> :pong = Store.ping(server) end

  # The 10 names starting at (i * 10) rem size, wrapping around.
  defp batch(names, i) do
    size = tuple_size(names)
    first = rem(i * @batch_size, size)
    for k <- 0..(@batch_size - 1), do: elem(names, rem(first + k, size))
  end
end
