# Requests that cannot be run at all (docs/protocol.md): unknown calls, wrong arities, bad
# argument types; and the store goes on serving afterwards. Binding: `store`.
alias SnakepitSidecar.SessionStore, as: S

{:error, {:unknown_call, :no_such_call}} = S.call(store, :no_such_call, [1, 2])
{:error, {:bad_arity, :get_session, 3, [1]}} = S.call(store, :get_session, ["a", "b", "c"])
{:error, {:bad_arity, :create_session, 0, _}} = S.call(store, :create_session, [])
{:error, {:bad_argument, :get_session, 1, _}} = S.call(store, :get_session, [42])

{:error, {:bad_argument, :get_variables, 2, _}} =
  S.call(store, :get_variables, ["s", "not a list"])

{:error, {:bad_argument, :update_variable, 4, "map"}} =
  S.call(store, :update_variable, ["s", "x", 1, "not a map"])

:pong = S.ping(store)
{:ok, %{id: "after-errors"}} = S.create_session(store, "after-errors")
