defmodule Bench.OneCpu do
  @moduledoc """
  The one-CPU pass (`mix run bench/bench.exs --one-cpu`, run by `scripts/bench` under
  `taskset -c 0` after the main pass).

  On the 2-vCPU VM of docs/benchmarks.md the floor is bimodal because of cross-CPU wake-ups, and
  the kernel usually keeps the sidecar on the other vCPU from the BEAM's threads (the slow mode)
  while the echo program shares theirs, so the main pass's sequential ratios mix the stack's own
  cost with the kernel's placement of each process. With
  the BEAM confined to one CPU its port programs (the echo and the sidecar) inherit the affinity,
  every wake-up stays on that CPU and the floor is stable: this pass shows what the harness and
  the sidecar cost on their own. It measures, with the same interleaved method
  (`Bench.Measure.paired/4`), `ping` and `get_variable` / `update_variable` sequentially and with
  16 callers in sessions of 1 and 1000 variables, and checks the same per-cell targets. The
  affinity actually in force (BEAM, echo, sidecar) is read from `/proc` and reported, so a run
  without `taskset` says so.
  """

  import Bench.Common, only: [log: 1, paired_text: 1]
  alias Bench.{Common, EchoFloor, Report, Workload}
  alias SnakepitSidecar.SessionStore, as: Store

  @operations [:get_variable, :update_variable]
  @session_sizes [1, 1000]
  @callers [1, 16]

  @doc "Runs the pass with the options of `Bench.Common.options/1`."
  @spec run(map()) :: :ok
  def run(%{quick: quick?, write: write?}) do
    settings = Common.settings(quick?)
    python = Common.python()
    {echo, measure} = Common.open_floor(python, settings)
    # The sidecar's own path (the read cache is measured by the read-cache pass).
    {:ok, server} =
      Store.start_link(python: python, call_timeout: 60_000, name: nil, read_cache: false)

    affinity = %{
      beam: Common.cpus_allowed(:self),
      echo: echo |> Port.info(:os_pid) |> elem(1) |> Common.cpus_allowed(),
      sidecar: Common.cpus_allowed(Store.sidecar_info(server).os_pid),
      schedulers: System.schedulers_online()
    }

    log(
      "one-CPU pass: CPUs allowed: BEAM #{affinity.beam}, echo #{affinity.echo}, sidecar #{affinity.sidecar}"
    )

    ping = measure.(Workload.ping_fun(server), 1)
    log("one CPU: ping: #{paired_text(ping)}")

    sessions =
      Map.new(@session_sizes, fn size -> {size, Workload.create_session(server, size)} end)

    cells =
      for op <- @operations, size <- @session_sizes, callers <- @callers do
        result = measure.(Workload.call_fun(server, op, Map.fetch!(sessions, size)), callers)
        log("one CPU: #{op} vars=#{size} callers=#{callers}: #{paired_text(result)}")
        %{op: op, size: size, effective_size: size, callers: callers, result: result}
      end

    GenServer.stop(server)
    EchoFloor.close(echo)

    run = %{
      floor: Common.combine_floors([ping | Enum.map(cells, & &1.result)]),
      ping: ping,
      cells: cells,
      affinity: affinity,
      meta: Common.meta(quick?, python)
    }

    IO.puts("\n" <> Report.one_cpu_text(run))

    if write? do
      Report.write_one_cpu_markdown(Path.join([Common.repo_root(), "docs", "benchmarks.md"]), run)
      log("wrote the one-CPU section of docs/benchmarks.md")
    end

    :ok
  end
end
