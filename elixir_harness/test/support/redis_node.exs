# The second node of test/redis_storage_test.exs: a BEAM OS process of its own, with its own
# store (and sidecar) on the same Redis. Run as
#
#     elixir -pa EBIN test/support/redis_node.exs URL PREFIX SIDECAR_PATH
#
# It reads what the first node wrote, writes its own, and prints one line
# `RESULT:<base64 of the result term>` for the test to read.
alias SnakepitSidecar.SessionStore, as: Store

[url, prefix, sidecar_path] = System.argv()

{:ok, store} =
  Store.start_link(
    name: nil,
    storage: {:redis, url, prefix: prefix},
    sidecar_path: sidecar_path,
    sidecar_args: ["--log-level", "error"]
  )

seen = Store.get_variable(store, "shared", :from_a)
:ok = Store.update_variable(store, "shared", :from_a, 10)
{:ok, from_b} = Store.register_variable(store, "shared", :from_b, :integer, 2)
{:ok, created} = Store.create_session(store, "made_by_b")
now = System.monotonic_time(:second)

result = %{
  seen: seen,
  from_b: from_b,
  created_at: created.created_at,
  monotonic_now: now,
  time_offset_ms: System.time_offset(:millisecond),
  sidecar_os_pid: Store.sidecar_info(store).os_pid
}

IO.puts("RESULT:" <> Base.encode64(:erlang.term_to_binary(result)))
GenServer.stop(store)
