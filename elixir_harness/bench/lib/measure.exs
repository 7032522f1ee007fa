defmodule Bench.Measure do
  @moduledoc """
  Timing one benchmark cell against the floor, interleaved.

  The floor (the bare port round trip) is bimodal on small VMs: a burst of floor calls runs
  either in a fast mode (~7 us/call on the VM of docs/benchmarks.md) or a slow one (~75 us), and
  the mode changes while a run goes on. A cell timed in one mode and divided by a floor timed
  in the other gives a meaningless ratio. So every ratio comes from one interleaved
  measurement: `rounds` rounds of (a floor burst, then a burst of the cell), each burst lasting
  about `:burst_ms`; the cell's figure is the median of its bursts' µs per call, the floor's the
  median of the floor bursts of the same rounds, and the ratio is the ratio of those medians.

  A cell runs a one-argument function (the call index) either sequentially in the calling
  process (`callers: 1`) or shared among `callers` processes started once for the cell and told
  to run each burst together (a burst's time is the wall time from the start signal to the last
  caller's end). The floor burst always runs sequentially in the calling process, which must be
  the process that opened the floor's port. A warm-up of both (about `:warmup_ms`) estimates the
  rates from which the burst sizes are chosen (bounded by `:min_calls` and `:max_calls` per
  burst).
  """

  @type round :: %{floor_us: float(), cell_us: float()}

  @type result :: %{
          callers: pos_integer(),
          calls: pos_integer(),
          us_per_call: float(),
          ops_per_s: float(),
          floor_us: float(),
          floor_ops_per_s: float(),
          time_x: float(),
          rate_x: float(),
          rounds: [round()]
        }

  @doc """
  Measures `fun` with `callers` callers, interleaved with sequential bursts of `floor_fun`.
  Options: `:warmup_ms`, `:burst_ms`, `:rounds`, `:min_calls`, `:max_calls`.

  In the result: `us_per_call` the median cell burst (wall time / calls with concurrent
  callers), `floor_us` the median floor burst of the same rounds, `time_x = us_per_call /
  floor_us`, `rate_x = ops_per_s / floor_ops_per_s` (= `floor_us / us_per_call`), `calls` all
  the timed cell calls, `rounds` every `{floor, cell}` pair in order.
  """
  @spec paired(
          (non_neg_integer() -> term()),
          pos_integer(),
          (non_neg_integer() -> term()),
          keyword()
        ) ::
          result()
  def paired(fun, callers, floor_fun, opts) do
    rounds = Keyword.fetch!(opts, :rounds)
    burst_ms = Keyword.fetch!(opts, :burst_ms)
    floor = runner(floor_fun, 1)
    cell = runner(fun, callers)

    try do
      half = div(Keyword.fetch!(opts, :warmup_ms), 2)
      floor_warm = warm(floor, 1, half)
      cell_warm = warm(cell, callers, half)
      floor_n = burst_size(floor_warm, 1, burst_ms, opts)
      cell_n = burst_size(cell_warm, callers, burst_ms, opts)

      samples =
        for r <- 1..rounds do
          floor_us = run(floor, r * floor_n, floor_n)
          cell_us = run(cell, r * cell_n, cell_n)
          %{floor_us: floor_us, cell_us: cell_us}
        end

      floor_us = median(Enum.map(samples, & &1.floor_us))
      cell_us = median(Enum.map(samples, & &1.cell_us))

      %{
        callers: callers,
        calls: rounds * cell_n,
        us_per_call: cell_us,
        ops_per_s: 1.0e6 / cell_us,
        floor_us: floor_us,
        floor_ops_per_s: 1.0e6 / floor_us,
        time_x: cell_us / floor_us,
        rate_x: floor_us / cell_us,
        rounds: samples
      }
    after
      stop(cell)
    end
  end

  @doc "The median of a non-empty list of numbers (the mean of the middle two when even)."
  @spec median([number()]) :: float()
  def median(values) do
    sorted = Enum.sort(values)
    n = length(sorted)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, div(n, 2)) / 1,
      else: (Enum.at(sorted, div(n, 2) - 1) + Enum.at(sorted, div(n, 2))) / 2
  end

  @doc """
  Splits floor samples (µs per call) into the fast mode (within 2x of the fastest sample) and the
  slow mode (the rest): `{fast, slow}`. The two modes are about 10x apart on the VM of
  docs/benchmarks.md, and bursts that straddle a mode change fall in between.
  """
  @spec modes([number()]) :: {[number()], [number()]}
  def modes(samples) do
    limit = 2 * Enum.min(samples)
    Enum.split_with(samples, &(&1 <= limit))
  end

  ## runners: a burst of `n` calls starting at index `first`, timed, in µs per call

  defp runner(fun, 1), do: {:self, fun}

  defp runner(fun, callers) do
    parent = self()

    pids =
      for c <- 0..(callers - 1) do
        spawn_link(fn -> worker(parent, fun, c) end)
      end

    {:pool, pids}
  end

  defp worker(parent, fun, c) do
    receive do
      {:go, ref, first, per_caller} ->
        loop(fun, first + c * per_caller, per_caller)
        send(parent, {:done, ref})
        worker(parent, fun, c)

      :stop ->
        :ok
    end
  end

  defp stop({:self, _}), do: :ok
  defp stop({:pool, pids}), do: Enum.each(pids, &send(&1, :stop))

  defp run({:self, fun}, first, n) do
    started = System.monotonic_time()
    loop(fun, first, n)
    per_call_us(System.monotonic_time() - started, n)
  end

  defp run({:pool, pids}, first, n) do
    ref = make_ref()
    per_caller = div(n, length(pids))
    started = System.monotonic_time()
    Enum.each(pids, &send(&1, {:go, ref, first, per_caller}))
    Enum.each(pids, fn _ -> receive do: ({:done, ^ref} -> :ok) end)
    per_call_us(System.monotonic_time() - started, per_caller * length(pids))
  end

  defp per_call_us(native, calls),
    do: System.convert_time_unit(max(native, 1), :native, :nanosecond) / 1000 / calls

  # Bursts of growing size until `ms` have passed; µs per call of the last burst.
  defp warm(runner, callers, ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    warm_until(runner, deadline, callers, callers * 4096, 0)
  end

  defp warm_until(runner, deadline, batch, max_batch, first) do
    us = run(runner, first, batch)

    if System.monotonic_time(:millisecond) >= deadline,
      do: us,
      else: warm_until(runner, deadline, min(batch * 2, max_batch), max_batch, first + batch)
  end

  defp burst_size(us_per_call, callers, burst_ms, opts) do
    wanted = round(burst_ms * 1000 / us_per_call)

    calls =
      wanted |> max(Keyword.fetch!(opts, :min_calls)) |> min(Keyword.fetch!(opts, :max_calls))

    max(callers, div(calls, callers) * callers)
  end

  defp loop(_fun, _i, 0), do: :ok

  defp loop(fun, i, left) do
    fun.(i)
    loop(fun, i + 1, left - 1)
  end
end
