defmodule Bench.Measure do
  @moduledoc """
  Timing one benchmark cell: warm up, pick a call count, time it.

  A cell runs a one-argument function (the call index) either sequentially in the calling
  process or shared among `callers` processes started together. The warm-up (same shape as the
  timed run) also estimates the rate, from which the call count is chosen so the timed runs
  last about `:target_ms` together, bounded by `:min_calls` and `:max_calls`. The calls are
  timed in `:repetitions` runs and the median run is reported (the machine is shared and
  noisy; one unlucky scheduling burst should not make a cell).
  """

  @type result :: %{
          callers: pos_integer(),
          calls: pos_integer(),
          seconds: float(),
          us_per_call: float(),
          ops_per_s: float(),
          spread_us: {float(), float()}
        }

  @doc """
  Measures `fun` with `callers` callers (1 = sequential in this process). Options:
  `:warmup_ms`, `:target_ms`, `:min_calls`, `:max_calls`, `:repetitions`. `calls` in the
  result is the calls of one run; `spread_us` the fastest and slowest run's µs per call.
  """
  @spec cell((non_neg_integer() -> term()), pos_integer(), keyword()) :: result()
  def cell(fun, callers, opts) do
    repetitions = Keyword.get(opts, :repetitions, 3)
    warm = run_for(fun, callers, Keyword.fetch!(opts, :warmup_ms))
    wanted = round(warm.ops_per_s * Keyword.fetch!(opts, :target_ms) / 1000)
    calls = wanted |> max(Keyword.fetch!(opts, :min_calls)) |> min(Keyword.fetch!(opts, :max_calls))
    calls = max(callers, div(div(calls, repetitions), callers) * callers)
    runs = Enum.sort_by(for(_ <- 1..repetitions, do: timed(fun, callers, calls)), & &1.us_per_call)
    median = Enum.at(runs, div(repetitions, 2))
    %{median | spread_us: {hd(runs).us_per_call, List.last(runs).us_per_call}}
  end

  @doc "Runs exactly `calls` calls shared among `callers` callers and times them."
  @spec timed((non_neg_integer() -> term()), pos_integer(), pos_integer()) :: result()
  def timed(fun, 1, calls) do
    started = System.monotonic_time()
    loop(fun, 0, calls)
    summary(1, calls, System.monotonic_time() - started)
  end

  def timed(fun, callers, calls) do
    per_caller = div(calls, callers)

    tasks =
      for c <- 0..(callers - 1) do
        Task.async(fn ->
          receive do
            :go -> loop(fun, c * per_caller, per_caller)
          end
        end)
      end

    started = System.monotonic_time()
    Enum.each(tasks, &send(&1.pid, :go))
    Task.await_many(tasks, :infinity)
    summary(callers, per_caller * callers, System.monotonic_time() - started)
  end

  # Runs batches of growing size until `ms` have passed; the rate of the whole warm-up.
  defp run_for(fun, callers, ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    run_until(fun, callers, deadline, callers, 0, 0)
  end

  defp run_until(fun, callers, deadline, batch, calls, native) do
    %{seconds: seconds} = timed(fun, callers, batch)
    calls = calls + batch
    native = native + System.convert_time_unit(round(seconds * 1_000_000), :microsecond, :native)

    if System.monotonic_time(:millisecond) >= deadline,
      do: summary(callers, calls, native),
      else: run_until(fun, callers, deadline, min(batch * 2, callers * 4096), calls, native)
  end

  defp loop(_fun, _i, 0), do: :ok

  defp loop(fun, i, left) do
    fun.(i)
    loop(fun, i + 1, left - 1)
  end

  defp summary(callers, calls, native) do
    seconds = max(System.convert_time_unit(native, :native, :nanosecond), 1) / 1.0e9

    %{
      callers: callers,
      calls: calls,
      seconds: seconds,
      us_per_call: seconds * 1.0e6 / calls,
      ops_per_s: calls / seconds,
      spread_us: {seconds * 1.0e6 / calls, seconds * 1.0e6 / calls}
    }
  end
end
