defmodule SnakepitSidecar.Contract.TelemetryTest do
  @moduledoc ~s(Contract rows of docs/contract.md, "Telemetry", through the real port.)
  use SnakepitSidecar.SidecarCase, drop_in: true

  @events SnakepitSidecar.Telemetry.sidecar_events()

  setup do
    capture_telemetry(@events)
    sid = unique_id()
    {:ok, _} = SessionStore.create_session(sid)
    %{sid: sid}
  end

  test "all eight contract events, executed before the reply arrives", %{sid: sid} do
    {:ok, _} = SessionStore.register_variable(sid, :t, :float, 1.0, constraints: %{max: 5.0})

    assert_received {:telemetry_event, [:snakepit, :session_store, :variable, :registered],
                     %{count: 1}, %{session_id: ^sid, type: :float}}

    {:ok, _} = SessionStore.get_variable(sid, :t)

    assert_received {:telemetry_event, [:snakepit, :session_store, :variable, :get], %{count: 1},
                     %{session_id: ^sid, cache_hit: false}}

    :ok = SessionStore.update_variable(sid, :t, 2.0)

    assert_received {:telemetry_event, [:snakepit, :session_store, :variable, :updated],
                     %{count: 1, version: 1}, %{session_id: ^sid, type: :float}}

    {:error, _} = SessionStore.update_variable(sid, :t, "nope")

    assert_received {:telemetry_event, [:snakepit, :session_store, :variable, :validation_failed],
                     %{count: 1}, %{session_id: ^sid, type: :float}}

    {:error, _} = SessionStore.update_variable(sid, :t, 9.0)

    assert_received {:telemetry_event,
                     [:snakepit, :session_store, :variable, :constraint_violation], %{count: 1},
                     %{session_id: ^sid, type: :float}}

    {:ok, _} = SessionStore.get_variables(sid, [:t, :u, :w])

    assert_received {:telemetry_event, [:snakepit, :session_store, :variables, :batch_get],
                     %{count: 3}, %{session_id: ^sid}}

    {:ok, _} = SessionStore.update_variables(sid, %{t: 3.0}, atomic: true)

    assert_received {:telemetry_event, [:snakepit, :session_store, :variables, :batch_update],
                     %{count: 1}, %{session_id: ^sid, atomic: true}}

    :ok = SessionStore.delete_variable(sid, :t)

    assert_received {:telemetry_event, [:snakepit, :session_store, :variable, :deleted],
                     %{count: 1}, %{session_id: ^sid}}
  end

  test "the harness's call events", %{sid: sid} do
    capture_telemetry([[:snakepit_sidecar, :call, :stop]])
    _ = SessionStore.session_exists?(sid)

    assert_received {:telemetry_event, [:snakepit_sidecar, :call, :stop], %{duration: duration},
                     %{server: SessionStore, function: :session_exists?, arity: 1}}

    assert is_integer(duration) and duration >= 0
  end

  test "a raising handler does not hurt the store", %{sid: sid} do
    :telemetry.attach(
      {:raising, sid},
      [:snakepit, :session_store, :variable, :registered],
      fn _, _, _, _ -> raise "handler bug" end,
      nil
    )

    assert {:ok, _} = SessionStore.register_variable(sid, :r, :integer, 1)
    assert SessionStore.get_variable_value(sid, :r) == 1
    :telemetry.detach({:raising, sid})
  end
end
