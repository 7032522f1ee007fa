defmodule Bench.Memory do
  @moduledoc """
  The sidecar's resident size holding many sessions of 10 float variables.

  A separate store is started; its sidecar's OS pid comes from
  `SnakepitSidecar.SessionStore.sidecar_info/1`. `VmRSS` of `/proc/<os_pid>/status` is read once
  the fresh sidecar has answered a `ping`, and again after `sessions` sessions of 10 float
  variables each were created through the harness (16 callers at once). The difference is what
  the data costs; divided by the number of variables it is compared with the ETS original
  (10,000 sessions of 10 float variables in about 78 MB, so 780 bytes per variable).
  """

  alias SnakepitSidecar.SessionStore, as: Store

  @variables_per_session 10
  @ets_original_bytes 78_000_000
  @ets_original_variables 100_000

  @doc "Bytes per variable of the ETS original."
  @spec ets_bytes_per_variable() :: float()
  def ets_bytes_per_variable, do: @ets_original_bytes / @ets_original_variables

  @doc "Fills a new store with `sessions` sessions and returns the figures."
  @spec measure(keyword(), pos_integer()) :: map()
  def measure(store_opts, sessions) do
    {:ok, server} = Store.start_link(Keyword.put(store_opts, :name, nil))
    :pong = Store.ping(server)
    os_pid = Store.sidecar_info(server).os_pid
    fresh = rss_bytes(os_pid)
    started = System.monotonic_time(:millisecond)

    0..(sessions - 1)
    |> Task.async_stream(&fill_session(server, &1),
      max_concurrency: 16,
      ordered: false,
      timeout: :infinity
    )
    |> Stream.run()

    :pong = Store.ping(server)
    filled = rss_bytes(os_pid)
    fill_seconds = (System.monotonic_time(:millisecond) - started) / 1000
    GenServer.stop(server)

    variables = sessions * @variables_per_session
    data_bytes = filled - fresh

    %{
      sessions: sessions,
      variables: variables,
      fresh_rss_bytes: fresh,
      filled_rss_bytes: filled,
      data_bytes: data_bytes,
      bytes_per_variable: data_bytes / variables,
      ets_bytes_per_variable: ets_bytes_per_variable(),
      ratio_to_ets: data_bytes / variables / ets_bytes_per_variable(),
      fill_seconds: fill_seconds
    }
  end

  @doc "`VmRSS` of `/proc/<os_pid>/status`, in bytes."
  @spec rss_bytes(pos_integer()) :: non_neg_integer()
  def rss_bytes(os_pid) do
    status = File.read!("/proc/#{os_pid}/status")
    [_, kb] = Regex.run(~r/^VmRSS:\s+(\d+)\s+kB/m, status)
    String.to_integer(kb) * 1024
  end

  defp fill_session(server, index) do
    session_id = "mem_#{index}"
    {:ok, _} = Store.create_session(server, session_id)

    for v <- 0..(@variables_per_session - 1) do
      {:ok, _} = Store.register_variable(server, session_id, :"m#{v}", :float, index + v / 10)
    end
  end
end
