defmodule SnakepitSidecar.ReadCache do
  @moduledoc """
  The store's read cache: variables read through the sidecar are kept in ETS on this node, and
  `get_variable`, `get_variable_value`, `has_variable?` and `get_variables` are answered from
  there, in the caller's process, without a round trip (`docs/harness.md`, "Read cache").

  ## What is kept

  The port's owner (`SnakepitSidecar.Connection`) creates the tables and publishes them in
  `:persistent_term` under `{SnakepitSidecar.ReadCache, owner_pid}`; callers
  (`SnakepitSidecar.Client`) read and fill them.

    * `entries` — `{{session_id, ident}, gen, epoch, variable}`: the variable struct the sidecar
      answered for `ident` (an atom or a binary, exactly as asked), stamped with the session's
      generation and the cache's epoch taken *before* the request was sent;
    * `sessions` — `{session_id, gen, expires, touched}`: the session's generation (bumped by
      every write to it), its expiry second on this node's monotonic clock as the sidecar last
      answered it (`nil`: unknown), and the second of its last cached read;
    * `touches` — `{session_id, second}`: touches owed to the sidecar;
    * `epoch` — an `:atomics` counter, bumped by every invalidation of everything.

  A missing `sessions` row means generation 0. Rows are only ever removed all at once, followed
  by an epoch bump (`clear/1`): at a global invalidation, and when more than 500,000 variables
  are kept (`bound/1`), which bounds the memory of entries whose session was deleted.

  ## Coherence

  An entry is served only when its `gen` and `epoch` are the current ones. The rules that make a
  stale read impossible on this node:

    1. **Writes invalidate before their reply reaches anyone.** A caller that sends a write
       registers the write's scope (`scope/2`: the session, or everything) with its request;
       the owner, which routes every reply in the order the sidecar wrote them, bumps the scope's
       generation *before* it passes the reply on. It does so even when nobody waits any more (a
       caller that timed out marks its entry abandoned instead of removing it), and the owner
       path does the same for the requests it sends itself. So once any caller has a write's
       reply, every entry older than the write is dead.
    2. **Fills are stamped before the request is sent.** A read that misses records the
       session's `gen` and the `epoch` first (the epoch read first: `clear/1` removes rows
       before it bumps the epoch), then sends its request, and stores the answer with that
       stamp. A read's reply can reach the cache after a later write's invalidation (the
       caller fills after the owner routed the write's reply): the write was served after the
       read, so its invalidation came after the stamp was taken, and the entry is born dead.
       A request sent after an invalidation is served after the write that caused it (the
       sidecar answers in order, and the owner saw the write's reply before it bumped), so an
       entry stamped after it is fresh.
    3. **Changes without a call of ours clear everything.** The periodic cleanup in the
       sidecar sends `{:invalidate, :all}` after it removed sessions (before any later reply);
       `cleanup_expired_sessions`, `run_cleanup`, `__reset__` and calls this module does not
       know are scoped to everything; a sidecar that dies clears everything (writes in flight
       may or may not have landed; with durable storage the new sidecar has them).

    4. **Other stores' writes are pushed.** Shared storage (`{:redis, _}`) is also written by
       other nodes, whose writes no rule above sees. The sidecar follows them (the storage's
       change feed) and sends `{:invalidate, [session_id]}` for each once it is committed, so a
       write acknowledged on another node is served here only until that frame has been
       applied (docs/harness.md, "Read cache", for the measured delay). Its fills obey rule 2:
       a read the sidecar served before the other node's commit was stamped before the frame's
       bump. A read the sidecar serves from a session it loaded from Redis may carry a change
       whose frame has not come yet: the sidecar sends that session's invalidation before such
       a reply, so no entry older than what a reply carries is served once anyone has it (the
       reply's own fill is then born dead: one more miss). The feed can miss changes while its
       subscription is down, so the sidecar ends
       every chunk of calls with `{:invalidate, :all}` from the moment it noticed the loss (or
       from its start) until it is subscribed again, and sends `:all` at the loss and at the
       resubscription. A sidecar that does not say `invalidations: true` in its welcome
       pushes nothing of the sort: on shared storage the cache is then off for that sidecar
       (`usable?/2`).

  A store that records keeps no cache (a recording must hold every call).

  ## Sessions stay alive

  A read served here owes the session a touch. The second of the read goes into `touches`
  (once per session and second), and the owner sends them every 500 ms in one
  `touch_sessions` call; the sidecar sets `last_accessed` to that second (never back, never
  past now) and answers each session's expiry second, which the owner keeps in `sessions`. A
  read is served here only while `now + 3 < expires` (`slack_s/0`): the session is then alive
  for at least 3 more seconds, longer than the touch takes to land (at most 500 ms of waiting
  plus the call's own time), so a session read only from the cache expires exactly when the
  original would have expired it: at `last read + ttl`. A session whose expiry is unknown (not
  yet answered, or reset by `update_session` or `delete_session`) or close is read through the
  sidecar, which touches it itself; so is every session with a TTL of 3 seconds or less.
  `SnakepitSidecar.Connection.flush_touches/1` sends the pending touches at once (tests).
  """

  alias SnakepitSidecar.Storage

  @touch_interval_ms 500
  @slack_s 3
  @max_entries 500_000

  # The calls this module answers from the cache.
  @cached [:get_variable, :get_variable_value, :has_variable?, :get_variables]

  # Calls that change no variable and no session's existence or TTL: no invalidation.
  @no_scope [
    :get_variable,
    :get_variable_value,
    :has_variable?,
    :get_variables,
    :list_variables,
    :export_variables,
    :get_session,
    :session_exists?,
    :list_sessions,
    :get_stats,
    :fetch_session_for_update,
    :create_session,
    :store_worker_session,
    :store_global_program,
    :get_global_program,
    :delete_global_program,
    :store_program,
    :update_program,
    :get_program,
    :ping,
    :touch_sessions,
    # test-only: moves the sidecar's clock, not the data (expiry, as this cache knows it, stays
    # on this node's clock; the cleanups that follow invalidate what they remove)
    :__advance_clock__
  ]

  # Calls that change their first argument's session (its variables, or its TTL).
  @session_scope [
    :register_variable,
    :update_variable,
    :update_variables,
    :delete_variable,
    :import_variables,
    :start_optimization,
    :end_optimization,
    :delete_session,
    :put_session_if
  ]

  # Of those, the ones after which the session's expiry must be asked again.
  @expiry_changes [:delete_session, :put_session_if]

  @typedoc "What callers read from `:persistent_term`."
  @type t ::
          {:ets.tid(), :ets.tid(), :ets.tid(), :atomics.atomics_ref()}

  @typedoc "What a write invalidates: nothing, one session (and whether its expiry), everything."
  @type scope :: nil | {:session, term(), boolean()} | :all

  @typedoc "A fill's stamp: the session's generation and the epoch before the request."
  @type stamp :: {non_neg_integer(), non_neg_integer()}

  @doc """
  Milliseconds between two batches of touches: #{@touch_interval_ms}, or
  `config :snakepit_sidecar, read_cache_touch_interval_ms: ms` (1 to 1000; this project's tests
  use 5, so that their reads hit the cache as soon as possible).
  """
  @spec touch_interval_ms() :: pos_integer()
  def touch_interval_ms do
    case Application.get_env(:snakepit_sidecar, :read_cache_touch_interval_ms) do
      ms when is_integer(ms) and ms in 1..1000 -> ms
      _ -> @touch_interval_ms
    end
  end

  @doc "Seconds a session must have left for a read to be served from the cache."
  @spec slack_s() :: pos_integer()
  def slack_s, do: @slack_s

  @doc "The calls answered from the cache."
  @spec cached_calls() :: [atom()]
  def cached_calls, do: @cached

  @doc """
  Whether a store with the validated options `config` keeps a read cache (and says
  `read_cache: true` in its hello): `:read_cache` is true and it does not record.
  """
  @spec enabled?(map()) :: boolean()
  def enabled?(config), do: config.read_cache == true and config.record == nil

  @doc """
  Whether the cache of a store with `config` may serve reads with the sidecar that answered
  `welcome` (the `info` map): always on storage nobody else writes; on shared storage only
  when the sidecar pushes the other stores' changes (`invalidations: true`).
  """
  @spec usable?(map(), map()) :: boolean()
  def usable?(config, welcome),
    do: not Storage.shared?(config.storage) or Map.get(welcome, :invalidations) == true

  ## The owner's side

  @doc "New, empty tables (owned by the calling process)."
  @spec new() :: t()
  def new do
    opts = [:set, :public, read_concurrency: true, write_concurrency: true]

    {:ets.new(__MODULE__.Entries, opts), :ets.new(__MODULE__.Sessions, opts),
     :ets.new(__MODULE__.Touches, [:set, :public, write_concurrency: true]),
     :atomics.new(1, signed: false)}
  end

  @doc "Makes `cache` the one callers of `owner` use."
  @spec publish(pid(), t()) :: :ok
  def publish(owner, cache), do: :persistent_term.put({__MODULE__, owner}, cache)

  @doc "Removes what `owner` published."
  @spec unpublish(pid()) :: :ok
  def unpublish(owner) do
    _ = :persistent_term.erase({__MODULE__, owner})
    :ok
  end

  @doc "The cache `owner` published, or `nil`."
  @spec lookup(pid()) :: t() | nil
  def lookup(owner), do: :persistent_term.get({__MODULE__, owner}, nil)

  @doc """
  What a call invalidates: `nil` for the reads and the calls that change no variable, the
  session of the first argument for the calls that change a session's variables or TTL, and
  `:all` for everything else (cleanups, test calls, calls this module does not know).
  """
  @spec scope(atom(), list()) :: scope()
  def scope(function, _args) when function in @no_scope, do: nil

  def scope(function, [session_id | _]) when function in @session_scope,
    do: {:session, session_id, function in @expiry_changes}

  def scope(_function, _args), do: :all

  @doc "Invalidates `scope` (the owner, before it passes on the reply that caused it)."
  @spec invalidate(t() | nil, scope() | [term()]) :: :ok
  def invalidate(nil, _scope), do: :ok
  def invalidate(_cache, nil), do: :ok
  def invalidate(cache, :all), do: clear(cache)

  def invalidate({_, sessions, _, _}, {:session, session_id, expiry_changed?}) do
    _ = :ets.update_counter(sessions, session_id, {2, 1}, {session_id, 0, nil, nil})
    if expiry_changed?, do: :ets.update_element(sessions, session_id, {3, nil})
    :ok
  end

  def invalidate(cache, session_ids) when is_list(session_ids) do
    Enum.each(session_ids, &invalidate(cache, {:session, &1, true}))
  end

  @doc """
  Forgets everything: the rows first, then the epoch (see "Coherence"), then the entries.
  Pending touches are kept: they are still owed (a new sidecar with durable storage has the
  sessions).
  """
  @spec clear(t() | nil) :: :ok
  def clear(nil), do: :ok

  def clear({entries, sessions, _touches, epoch}) do
    :ets.delete_all_objects(sessions)
    :atomics.add(epoch, 1, 1)
    :ets.delete_all_objects(entries)
    :ok
  end

  @doc "Takes the touches owed: `[{session_id, second}]` (each one taken once)."
  @spec take_touches(t()) :: [{term(), integer()}]
  def take_touches({_, _, touches, _}) do
    for {session_id, _} <- :ets.tab2list(touches),
        [{_, second}] <- [:ets.take(touches, session_id)],
        do: {session_id, second}
  end

  @doc """
  Records the sidecar's answer to `touch_sessions`: each session's expiry second, or `nil`
  (the session is not there: its expiry becomes unknown).
  """
  @spec expiries(t(), [term()], [integer() | nil]) :: :ok
  def expiries({_, sessions, _, _}, session_ids, answers) do
    Enum.zip(session_ids, answers)
    |> Enum.each(fn {session_id, expires} ->
      expires = if is_integer(expires), do: expires

      unless :ets.update_element(sessions, session_id, {3, expires}) do
        :ets.insert_new(sessions, {session_id, 0, expires, nil})
      end
    end)
  end

  @doc "How many variables are kept."
  @spec size(t()) :: non_neg_integer()
  def size({entries, _, _, _}), do: :ets.info(entries, :size)

  @doc """
  Clears everything when more than #{@max_entries} variables are kept (entries of deleted
  sessions and old identifiers stay until then; the owner checks at every touch tick).
  """
  @spec bound(t() | nil) :: :ok
  def bound(nil), do: :ok
  def bound(cache), do: if(size(cache) > @max_entries, do: clear(cache), else: :ok)

  ## The callers' side

  @doc """
  The variable kept for `ident` of `session_id`, if it may be served now: `{:hit, variable}`
  (the read's touch is recorded), or `{:miss, stamp}` with the stamp to fill with.
  """
  @spec fetch(t(), term(), term()) :: {:hit, map()} | {:miss, stamp() | :gone}
  def fetch({entries, sessions, touches, epoch_ref}, session_id, ident) do
    epoch = :atomics.get(epoch_ref, 1)

    case :ets.lookup(sessions, session_id) do
      [{_, gen, expires, touched}] ->
        now = System.monotonic_time(:second)

        with true <- is_integer(expires) and now + @slack_s < expires,
             [{_, ^gen, ^epoch, variable}] <- :ets.lookup(entries, {session_id, ident}) do
          if touched != now, do: touch(sessions, touches, session_id, now)
          {:hit, variable}
        else
          _ -> {:miss, {gen, epoch}}
        end

      [] ->
        {:miss, {0, epoch}}
    end
  rescue
    # The tables died with their owner (killed: nothing unpublished them); the call that
    # follows exits as a call to a dead store does.
    ArgumentError -> {:miss, :gone}
  end

  @doc """
  `fetch/3` for every ident of a batch: `{:hit, [variable]}` when all of them may be served
  (one touch), else `{:miss, stamp}`.
  """
  @spec fetch_all(t(), term(), [term()]) :: {:hit, [map()]} | {:miss, stamp() | :gone}
  def fetch_all({entries, sessions, touches, epoch_ref}, session_id, idents) do
    epoch = :atomics.get(epoch_ref, 1)

    case :ets.lookup(sessions, session_id) do
      [{_, gen, expires, touched}] ->
        now = System.monotonic_time(:second)

        if is_integer(expires) and now + @slack_s < expires do
          case collect(entries, session_id, idents, gen, epoch, []) do
            :miss ->
              {:miss, {gen, epoch}}

            variables ->
              if touched != now, do: touch(sessions, touches, session_id, now)
              {:hit, variables}
          end
        else
          {:miss, {gen, epoch}}
        end

      [] ->
        {:miss, {0, epoch}}
    end
  rescue
    ArgumentError -> {:miss, :gone}
  end

  defp collect(_entries, _session_id, [], _gen, _epoch, acc), do: Enum.reverse(acc)

  defp collect(entries, session_id, [ident | rest], gen, epoch, acc) do
    case :ets.lookup(entries, {session_id, ident}) do
      [{_, ^gen, ^epoch, variable}] ->
        collect(entries, session_id, rest, gen, epoch, [variable | acc])

      _ ->
        :miss
    end
  end

  @doc """
  Keeps `variable` for `ident` of `session_id` under `stamp` (taken before the request was
  sent). When the session's expiry is not known, or too close for the cache to serve it, a touch
  is recorded so that the next batch asks for it (the miss has touched the session already).
  """
  @spec fill(t(), term(), term(), stamp() | :gone, map()) :: :ok
  def fill(_cache, _session_id, _ident, :gone, _variable), do: :ok

  def fill({entries, sessions, touches, epoch_ref}, session_id, ident, {gen, epoch}, variable) do
    # An entry stamped before an invalidation is dead anyway (checked on every read); not
    # storing it keeps it from replacing a live one that a later read stored.
    if :atomics.get(epoch_ref, 1) == epoch do
      case :ets.lookup(sessions, session_id) do
        [{_, ^gen, expires, _}] ->
          :ets.insert(entries, {{session_id, ident}, gen, epoch, variable})
          # unknown or too close to serve from here: the next batch asks again
          now = System.monotonic_time(:second)

          unless is_integer(expires) and now + @slack_s < expires,
            do: owe_touch(touches, session_id, now)

        [] when gen == 0 ->
          :ets.insert(entries, {{session_id, ident}, gen, epoch, variable})
          owe_touch(touches, session_id, System.monotonic_time(:second))

        _ ->
          :ok
      end
    end

    :ok
  rescue
    ArgumentError -> :ok
  end

  defp owe_touch(touches, session_id, now), do: :ets.insert(touches, {session_id, now})

  defp touch(sessions, touches, session_id, now) do
    :ets.insert(touches, {session_id, now})
    :ets.update_element(sessions, session_id, {4, now})
  end
end
