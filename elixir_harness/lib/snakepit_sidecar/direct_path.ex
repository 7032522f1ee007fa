defmodule SnakepitSidecar.DirectPath do
  @moduledoc """
  The state the port's owner shares with its callers so that they write their requests to the
  port themselves: the one place that knows its shape.

  While a sidecar is up (and the store is not recording), the owner
  (`SnakepitSidecar.Connection`) publishes under `{SnakepitSidecar.Connection, owner_pid}` in
  `:persistent_term` the tuple `{port, table, ids, alive, call_timeout}`:

    * `table` — a public ETS set of the requests in flight on this path, `{id, alias}`, or
      `{id, alias, scope}` for a write while the store keeps a read cache (what the owner
      invalidates before it passes the reply on, `SnakepitSidecar.ReadCache`): the caller
      (`SnakepitSidecar.Client`) inserts its entry before writing its frame; whoever takes the
      entry (`take/2`) answers it — the owner when the reply comes or the sidecar dies, the
      caller itself when it times out. A write's caller that times out does not take its entry
      but marks it abandoned (`abandon/2`): the owner still takes it when the reply comes, to
      invalidate, and drops the reply;
    * `ids` — the `:atomics` counter both paths take request ids from;
    * `alive` — an `:atomics` flag, 1 while the path is open. The owner clears it (`close/1`)
      before it fails the requests in the table, so a caller that registered finds either the
      flag up (and its entry will be answered) or the flag down (and it takes its entry back and
      goes through the owner);
    * `call_timeout` — the store's `:call_timeout`.

  The term is replaced when a new sidecar is published and erased when the owner stops.
  """

  @typedoc "What callers read: `{port, table, ids, alive, call_timeout}`."
  @type published ::
          {port(), :ets.tid(), :atomics.atomics_ref(), :atomics.atomics_ref(), timeout()}

  # The key keeps the owner's module name: it names whose direct path this is.
  defp key(owner), do: {SnakepitSidecar.Connection, owner}

  @doc "A new table of requests in flight (owned by the calling process)."
  @spec new_table() :: :ets.tid()
  def new_table, do: :ets.new(__MODULE__, [:set, :public, write_concurrency: true])

  @doc """
  Opens the path to `port` for `owner`'s callers; returns the `alive` flag to close it with.
  """
  @spec publish(pid(), port(), :ets.tid(), :atomics.atomics_ref(), timeout()) ::
          :atomics.atomics_ref()
  def publish(owner, port, table, ids, call_timeout) do
    alive = :atomics.new(1, [])
    :atomics.put(alive, 1, 1)
    :persistent_term.put(key(owner), {port, table, ids, alive, call_timeout})
    alive
  end

  @doc "What `owner` published, or `nil`."
  @spec lookup(pid()) :: published() | nil
  def lookup(owner), do: :persistent_term.get(key(owner), nil)

  @doc "Whether the path behind `alive` is open."
  @spec open?(:atomics.atomics_ref()) :: boolean()
  def open?(alive), do: :atomics.get(alive, 1) == 1

  @doc "Closes the path: callers that look from now on go through the owner."
  @spec close(:atomics.atomics_ref() | nil) :: :ok
  def close(nil), do: :ok
  def close(alive), do: :atomics.put(alive, 1, 0)

  @doc "Closes the path and erases what `owner` published."
  @spec unpublish(pid(), :atomics.atomics_ref() | nil) :: :ok
  def unpublish(owner, alive) do
    close(alive)
    _ = :persistent_term.erase(key(owner))
    :ok
  end

  @doc """
  Registers request `id` of the caller waiting on `alias`. `false` when the table is gone (its
  owner died a moment ago).
  """
  @spec register(:ets.tid(), non_neg_integer(), reference(), term()) :: boolean()
  def register(table, id, alias, scope \\ nil) do
    :ets.insert(table, if(scope == nil, do: {id, alias}, else: {id, alias, scope}))
  rescue
    ArgumentError -> false
  end

  @doc """
  Marks request `id` abandoned (its caller timed out) and leaves the entry for the owner:
  `true`, or `false` if the owner took it already (its answer is on its way).
  """
  @spec abandon(:ets.tid(), non_neg_integer()) :: boolean()
  def abandon(table, id) do
    :ets.update_element(table, id, {2, :abandoned})
  rescue
    ArgumentError -> false
  end

  @doc """
  Takes request `id`'s entry: `[{id, alias}]` or `[{id, alias, scope}]` (`alias` is
  `:abandoned` when its caller gave up), or `[]` if someone else took it.
  """
  @spec take(:ets.tid(), non_neg_integer()) :: [tuple()]
  def take(table, id) do
    :ets.take(table, id)
  rescue
    ArgumentError -> []
  end

  @doc "Takes every entry still in the table: the aliases of the callers still waiting."
  @spec take_all(:ets.tid()) :: [reference()]
  def take_all(table) do
    for entry <- :ets.tab2list(table),
        [taken] <- [take(table, elem(entry, 0))],
        (alias = elem(taken, 1)) != :abandoned,
        do: alias
  end

  @doc "How many requests are in the table."
  @spec size(:ets.tid()) :: non_neg_integer()
  def size(table), do: :ets.info(table, :size)
end
