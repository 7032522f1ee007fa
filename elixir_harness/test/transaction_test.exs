defmodule SnakepitSidecar.TransactionTest do
  # The transaction logic against a scripted stand-in for the sidecar calls (no Python).
  use ExUnit.Case, async: true

  alias SnakepitSidecar.Transaction

  defp scripted(replies) do
    {:ok, agent} = Agent.start_link(fn -> {replies, []} end)

    call = fn server, function, args ->
      Agent.get_and_update(agent, fn {[reply | rest], log} ->
        {reply, {rest, [{server, function, args} | log]}}
      end)
    end

    log = fn -> Agent.get(agent, fn {_, log} -> Enum.reverse(log) end) end
    {call, log}
  end

  test "fetch, run fun in the caller, put_session_if with the revision" do
    caller = self()
    {call, log} = scripted([{:ok, %{n: 1}, 7}, {:ok, %{n: 2}}])

    fun = fn session ->
      send(caller, {:ran_in, self()})
      %{session | n: session.n + 1}
    end

    assert Transaction.update_session(:store, "s", fun, call) == {:ok, %{n: 2}}
    assert_received {:ran_in, pid} when pid == caller

    assert log.() == [
             {:store, :fetch_session_for_update, ["s"]},
             {:store, :put_session_if, ["s", 7, %{n: 2}]}
           ]
  end

  test "retries from a fresh read on conflict" do
    {call, log} =
      scripted([{:ok, %{n: 1}, 1}, {:error, :conflict}, {:ok, %{n: 5}, 2}, {:ok, %{n: 6}}])

    assert Transaction.update_session(:store, "s", &%{&1 | n: &1.n + 1}, call) == {:ok, %{n: 6}}
    assert List.last(log.()) == {:store, :put_session_if, ["s", 2, %{n: 6}]}
  end

  test "a raising fun is {:error, {:update_failed, exception}} and writes nothing" do
    {call, log} = scripted([{:ok, %{n: 1}, 1}])

    assert {:error, {:update_failed, %RuntimeError{message: "boom"}}} =
             Transaction.update_session(:store, "s", fn _ -> raise "boom" end, call)

    assert length(log.()) == 1
  end

  test "gives up with {:error, :conflict} after 100 conflicting attempts" do
    {:ok, reads} = Agent.start_link(fn -> 0 end)

    call = fn
      _server, :fetch_session_for_update, ["s"] ->
        {:ok, %{n: 1}, Agent.get_and_update(reads, &{&1, &1 + 1})}

      _server, :put_session_if, ["s", _revision, _session] ->
        {:error, :conflict}
    end

    assert Transaction.update_session(:store, "s", & &1, call) == {:error, :conflict}
    assert Agent.get(reads, & &1) == 100
  end

  test "errors of either call are returned as they are" do
    {call, _} = scripted([{:error, :not_found}])
    assert Transaction.update_session(:store, "s", & &1, call) == {:error, :not_found}

    {call, _} = scripted([{:ok, %{}, 1}, {:error, :invalid_ttl}])
    assert Transaction.update_session(:store, "s", & &1, call) == {:error, :invalid_ttl}
  end
end
