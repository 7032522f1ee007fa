# Sessions: every session call of the contract, its validation errors, update_session's
# transaction (success, a fun that raises, a fun returning an invalid session, a missing
# session), worker sessions, stats and a cleanup with nothing expired. Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S

{:ok, %{id: "alpha", ttl: 3600, metadata: %{}, programs: %{}}} = S.create_session(store, "alpha")

{:ok,
 %{
   id: "beta",
   ttl: 120,
   last_worker_id: "worker-1",
   metadata: %{"owner" => "dspex", tags: [:a, "b"]}
 }} =
  S.create_session(store, "beta",
    ttl: 120,
    metadata: %{"owner" => "dspex", tags: [:a, "b"]},
    programs: %{"p0" => %{kind: :predict}},
    last_worker_id: "worker-1"
  )

# insert-if-absent: the existing session comes back untouched
{:ok, %{id: "beta", ttl: 120}} = S.create_session(store, "beta", ttl: 5)

{:error, :invalid_id} = S.create_session(store, "")
{:error, :invalid_ttl} = S.create_session(store, "gamma", ttl: -1)
{:error, :invalid_ttl} = S.create_session(store, "gamma", ttl: 1.5)
{:error, :invalid_metadata} = S.create_session(store, "gamma", metadata: [not: :a_map])
{:error, :invalid_programs} = S.create_session(store, "gamma", programs: "nope")
false = S.session_exists?(store, "gamma")

{:ok, %{id: "alpha"}} = S.get_session(store, "alpha")
{:error, :not_found} = S.get_session(store, "missing")
true = S.session_exists?(store, "alpha")
false = S.session_exists?(store, "missing")

sessions = S.list_sessions(store)
true = Enum.sort(sessions) == ["alpha", "beta"]

# update_session: run in Elixir, committed with a compare-and-set
{:ok, %{metadata: %{"step" => 1}}} =
  S.update_session(store, "alpha", fn session ->
    %{session | metadata: Map.put(session.metadata, "step", 1)}
  end)

{:ok, %{ttl: 60}} = S.update_session(store, "alpha", fn session -> %{session | ttl: 60} end)
{:error, :not_found} = S.update_session(store, "missing", fn session -> session end)

{:error, {:update_failed, %RuntimeError{message: "boom"}}} =
  S.update_session(store, "alpha", fn _ -> raise "boom" end)

{:error, :invalid_ttl} = S.update_session(store, "alpha", fn session -> %{session | ttl: -5} end)

{:error, :invalid_metadata} =
  S.update_session(store, "alpha", fn session -> %{session | metadata: :oops} end)

{:ok, %{ttl: 60, metadata: %{"step" => 1}}} = S.get_session(store, "alpha")

# worker sessions: an existing session, then a new one
:ok = S.store_worker_session(store, "alpha", "worker-7")
{:ok, %{last_worker_id: "worker-7"}} = S.get_session(store, "alpha")
:ok = S.store_worker_session(store, "delta", "worker-9")
{:ok, %{last_worker_id: "worker-9"}} = S.get_session(store, "delta")

# nothing has expired: deterministic cleanups
0 = S.cleanup_expired_sessions(store)
%{sessions: 0, global_programs: 0} = S.run_cleanup(store)
:pong = S.ping(store)

%{sessions_created: 3, current_sessions: 3} = S.get_stats(store)

:ok = S.delete_session(store, "beta")
:ok = S.delete_session(store, "beta")
:ok = S.delete_session(store, "never-existed")
false = S.session_exists?(store, "beta")
%{sessions_deleted: _, current_sessions: 2} = S.get_stats(store)
