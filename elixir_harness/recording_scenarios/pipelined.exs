# Concurrent callers: requests in flight together, replies possibly out of order, and
# update_session transactions that may conflict and retry. The replay sends requests with the
# pipelining recorded here. Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S
sid = "pipelined"
{:ok, _} = S.create_session(store, sid, metadata: %{"count" => 0})

ids =
  1..6
  |> Enum.map(fn n ->
    Task.async(fn -> S.register_variable(store, sid, "v#{n}", :integer, n) end)
  end)
  |> Enum.map(&Task.await/1)
  |> Enum.map(fn {:ok, id} -> id end)

6 = length(Enum.uniq(ids))

1..6
|> Enum.map(fn n -> Task.async(fn -> S.update_variable(store, sid, "v#{n}", n * 10) end) end)
|> Enum.each(fn task -> :ok = Task.await(task) end)

1..5
|> Enum.map(fn _ ->
  Task.async(fn ->
    S.update_session(store, sid, fn s ->
      %{s | metadata: Map.update!(s.metadata, "count", &(&1 + 1))}
    end)
  end)
end)
|> Enum.each(fn task -> {:ok, _} = Task.await(task) end)

{:ok, %{metadata: %{"count" => 5}}} = S.get_session(store, sid)
{:ok, %{found: found, missing: []}} = S.get_variables(store, sid, ids)
6 = map_size(found)
