defmodule SnakepitSidecar.Transaction do
  @moduledoc """
  `update_session/3` as an optimistic transaction run in the **caller's** process.

  An Elixir closure cannot travel to Python, so the read-modify-write is done here over two calls
  of the protocol (`docs/protocol.md`):

    1. `fetch_session_for_update(id)` → `{:ok, session, revision}` (no touch);
    2. `fun.(session)` runs in the caller; if it raises, the result is
       `{:error, {:update_failed, exception}}` and nothing is written;
    3. `put_session_if(id, revision, new_session)` stores the result (validated, touched) only if
       the session has not changed since `revision`; on `{:error, :conflict}` the transaction
       starts again from 1.

  `fun` may therefore run more than once: it should be a function of the session only.
  After the first few conflicts the retries wait a short random time (up to 20 ms) so
  contending callers spread out. After 100 attempts the transaction gives up with
  `{:error, :conflict}` (a caller starved by constant concurrent writers; not reachable in
  ordinary use).
  """

  @max_attempts 100

  @typedoc "How a call is sent: `SnakepitSidecar.Client.call/3` in production."
  @type caller :: (GenServer.server(), atom(), list() -> term())

  @doc """
  Runs `fun` over session `session_id` of `server` atomically. Returns `{:ok, stored_session}`,
  `{:error, :not_found}`, `{:error, reason}` (the contract's validation reasons),
  `{:error, {:update_failed, exception}}` or, after #{@max_attempts} conflicts,
  `{:error, :conflict}`.
  """
  @spec update_session(GenServer.server(), term(), (map() -> map()), caller()) ::
          {:ok, map()} | {:error, term()}
  def update_session(server, session_id, fun, call \\ &SnakepitSidecar.Client.call/3)
      when is_function(fun, 1) do
    attempt(server, session_id, fun, call, 1)
  end

  defp attempt(_server, _session_id, _fun, _call, attempt) when attempt > @max_attempts,
    do: {:error, :conflict}

  defp attempt(server, session_id, fun, call, attempt) do
    case call.(server, :fetch_session_for_update, [session_id]) do
      {:ok, session, revision} ->
        case run_fun(fun, session) do
          {:ok, updated} ->
            case call.(server, :put_session_if, [session_id, revision, updated]) do
              {:error, :conflict} ->
                back_off(attempt)
                attempt(server, session_id, fun, call, attempt + 1)

              result ->
                result
            end

          {:error, _} = error ->
            error
        end

      other ->
        other
    end
  end

  defp run_fun(fun, session) do
    {:ok, fun.(session)}
  rescue
    exception -> {:error, {:update_failed, exception}}
  end

  defp back_off(attempt) when attempt <= 2, do: :ok
  defp back_off(attempt), do: Process.sleep(:rand.uniform(min(attempt, 20)))
end
