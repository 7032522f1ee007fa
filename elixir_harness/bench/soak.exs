# The soak program (measurement only: it prints figures and asserts nothing).
#
#     cd elixir_harness && mix run bench/soak.exs [--seconds 60] [--callers 64] [--every 5]
#
# Runs `--callers` processes against one store for `--seconds`, each in a loop over a mixed
# workload with churn: create a session, register variables, update and read them, store a
# program, read the session, a few calls that are refused (an unknown call, a write nested too
# deep, a bad argument), then delete the session. Whatever the sidecar keeps per session or
# per call and fails to give back shows up as a resident size that keeps growing while the
# number of live sessions stays flat.
#
# Every `--every` seconds it prints one line: elapsed seconds, calls in the interval, calls per
# second, the sidecar's CPU time per call in the interval (user + system, from /proc: unlike
# calls per second it does not move with the load other processes put on the machine, so a
# per-call cost that grows shows as itself), the sidecar's resident size (VmRSS of its OS
# process), its live sessions (get_stats) and the BEAM's total memory. At the end: the first and
# last resident sizes and the growth per million calls. docs/reliability.md says how to read it.

defmodule Soak do
  @moduledoc false
  alias SnakepitSidecar.SessionStore, as: Store

  def main(argv) do
    {opts, _, _} =
      OptionParser.parse(argv, strict: [seconds: :integer, callers: :integer, every: :integer])

    seconds = Keyword.get(opts, :seconds, 60)
    callers = Keyword.get(opts, :callers, 64)
    every = Keyword.get(opts, :every, 5)

    {:ok, store} =
      Store.start_link(name: nil, call_timeout: 30_000, sidecar_args: ["--log-level", "error"])

    os_pid = Store.sidecar_info(store).os_pid
    counter = :counters.new(1, [:write_concurrency])
    stop = :atomics.new(1, [])

    IO.puts("soak: #{callers} callers for #{seconds} s, sidecar os pid #{os_pid}")

    IO.puts(
      String.pad_leading("t (s)", 6) <>
        String.pad_leading("calls", 10) <>
        String.pad_leading("calls/s", 10) <>
        String.pad_leading("sidecar CPU us/call", 21) <>
        String.pad_leading("sidecar RSS (MB)", 18) <>
        String.pad_leading("sessions", 10) <> String.pad_leading("BEAM (MB)", 11)
    )

    workers =
      for i <- 1..callers do
        Task.async(fn -> loop(store, i, 0, counter, stop) end)
      end

    started = System.monotonic_time(:millisecond)

    samples =
      report(
        store,
        os_pid,
        counter,
        started,
        seconds * 1000,
        every * 1000,
        {0, cpu_us(os_pid)},
        []
      )

    :atomics.put(stop, 1, 1)
    Enum.each(workers, &Task.await(&1, 60_000))

    total = :counters.get(counter, 1)
    elapsed = (System.monotonic_time(:millisecond) - started) / 1000
    {first_rss, last_rss} = {List.last(samples), List.first(samples)}
    growth = if total > 0, do: (last_rss - first_rss) / (total / 1_000_000), else: 0.0

    IO.puts(
      "total: #{total} calls in #{Float.round(elapsed, 1)} s (#{round(total / elapsed)} calls/s); " <>
        "sidecar RSS #{mb(first_rss)} MB at the first sample, #{mb(last_rss)} MB at the last " <>
        "(#{Float.round(growth / 1_048_576, 2)} MB per million calls)"
    )

    GenServer.stop(store)
  end

  defp report(store, os_pid, counter, started, duration, every, {previous, previous_cpu}, samples) do
    now = System.monotonic_time(:millisecond)
    elapsed = now - started

    if elapsed >= duration do
      samples
    else
      Process.sleep(min(every, duration - elapsed))
      calls = :counters.get(counter, 1)
      cpu = cpu_us(os_pid)
      interval_s = every / 1000
      rss = rss_bytes(os_pid)
      %{current_sessions: sessions} = Store.get_stats(store)

      IO.puts(
        String.pad_leading(
          Integer.to_string(div(System.monotonic_time(:millisecond) - started, 1000)),
          6
        ) <>
          String.pad_leading(Integer.to_string(calls - previous), 10) <>
          String.pad_leading(Integer.to_string(round((calls - previous) / interval_s)), 10) <>
          String.pad_leading(
            :erlang.float_to_binary((cpu - previous_cpu) / max(calls - previous, 1), decimals: 1),
            21
          ) <>
          String.pad_leading(mb(rss), 18) <>
          String.pad_leading(Integer.to_string(sessions), 10) <>
          String.pad_leading(mb(:erlang.memory(:total)), 11)
      )

      report(store, os_pid, counter, started, duration, every, {calls, cpu}, [rss | samples])
    end
  end

  defp loop(store, i, n, counter, stop) do
    if :atomics.get(stop, 1) == 1 do
      :ok
    else
      :counters.add(counter, 1, iteration(store, "soak_#{i}_#{n}", n))
      loop(store, i, n + 1, counter, stop)
    end
  end

  # One session's life: the calls it makes (returned, to count them).
  defp iteration(store, sid, n) do
    {:ok, _} = Store.create_session(store, sid, metadata: %{n: n, tag: "soak"})

    {:ok, _} =
      Store.register_variable(store, sid, :temperature, :float, 0.5,
        constraints: %{min: 0.0, max: 1.0}
      )

    {:ok, _} = Store.register_variable(store, sid, "name_#{rem(n, 100)}", :string, "x")
    for k <- 1..10, do: :ok = Store.update_variable(store, sid, :temperature, k / 20)
    {:error, _} = Store.update_variable(store, sid, :temperature, 5.0)
    {:ok, _} = Store.get_variable(store, sid, :temperature)
    {:ok, %{found: _}} = Store.get_variables(store, sid, [:temperature, "name_#{rem(n, 100)}"])
    :ok = Store.store_program(store, sid, "p", %{layers: [1, 2, 3], blob: :binary.copy("w", 256)})
    {:ok, _} = Store.get_session(store, sid)
    {:error, {:unknown_call, _}} = Store.call(store, :no_such_call, [n])
    # deep enough to arrive, too deep to be read back inside a session: refused by the guard
    {:error, {:term_too_deep, _, _, _}} = Store.store_program(store, sid, "deep", nested(125))
    {:error, {:bad_argument, _, _, _}} = Store.call(store, :get_session, [n])
    :ok = Store.delete_session(store, sid)
    22
  end

  defp nested(0), do: 1
  defp nested(depth), do: [nested(depth - 1)]

  defp rss_bytes(os_pid) do
    with {:ok, status} <- File.read("/proc/#{os_pid}/status"),
         [_, kb] <- Regex.run(~r/VmRSS:\s+(\d+) kB/, status) do
      String.to_integer(kb) * 1024
    else
      _ ->
        {out, 0} = System.cmd("ps", ["-o", "rss=", "-p", Integer.to_string(os_pid)])
        String.to_integer(String.trim(out)) * 1024
    end
  end

  # the sidecar's user + system CPU time so far, in microseconds (0 where /proc is missing)
  defp cpu_us(os_pid) do
    with {:ok, stat} <- File.read("/proc/#{os_pid}/stat"),
         [_, rest] <- String.split(stat, ") ", parts: 2),
         fields = String.split(rest),
         {utime, ""} <- Integer.parse(Enum.at(fields, 11)),
         {stime, ""} <- Integer.parse(Enum.at(fields, 12)) do
      # clock ticks; USER_HZ is 100 on Linux
      (utime + stime) * 10_000
    else
      _ -> 0
    end
  end

  defp mb(bytes), do: :erlang.float_to_binary(bytes / 1_048_576, decimals: 1)
end

Soak.main(System.argv())
