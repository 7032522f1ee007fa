defmodule SnakepitSidecar.Contract.ProgramsTest do
  @moduledoc ~s(Contract rows of docs/contract.md, "Programs", through the real port.)
  use SnakepitSidecar.SidecarCase, drop_in: true

  @program %{
    :signature => {:predict, [:question], [:answer]},
    "nested" => %{list: [1, 2.0, nil, true, :atom, "bin", <<0, 1, 255>>], tuple: {}},
    1 => 1.0,
    :pid_like => ~c"charlist"
  }

  test "global programs: store, get exactly as stored, delete" do
    id = unique_id("gp")
    assert SessionStore.store_global_program(id, @program) == :ok
    assert {:ok, got} = SessionStore.get_global_program(id)
    assert got === @program
    assert SessionStore.delete_global_program(id) == :ok
    assert SessionStore.get_global_program(id) == {:error, :not_found}
    assert SessionStore.delete_global_program(id) == :ok
  end

  test "global program counters move" do
    before = SessionStore.get_stats()
    id = unique_id("gp")
    :ok = SessionStore.store_global_program(id, :data)
    :ok = SessionStore.delete_global_program(id)
    later = SessionStore.get_stats()
    assert later.global_programs_stored == before.global_programs_stored + 1
    assert later.global_programs_deleted == before.global_programs_deleted + 1
  end

  test "session programs: store, update, get; missing session is :not_found" do
    sid = unique_id()
    {:ok, _} = SessionStore.create_session(sid)
    assert SessionStore.store_program(sid, "p1", @program) == :ok
    assert {:ok, got} = SessionStore.get_program(sid, "p1")
    assert got === @program
    assert SessionStore.update_program(sid, "p1", {:v2, 2}) == :ok
    assert SessionStore.get_program(sid, "p1") == {:ok, {:v2, 2}}
    assert SessionStore.get_program(sid, "nope") == {:error, :not_found}
    assert {:ok, %Session{programs: %{"p1" => {:v2, 2}}}} = SessionStore.get_session(sid)

    missing = unique_id("missing")
    assert SessionStore.store_program(missing, "p", 1) == {:error, :not_found}
    assert SessionStore.update_program(missing, "p", 1) == {:error, :not_found}
    assert SessionStore.get_program(missing, "p") == {:error, :not_found}
  end

  test "server-first forms" do
    sid = unique_id()
    {:ok, _} = SessionStore.create_session(SessionStore, sid)
    assert SessionStore.store_program(SessionStore, sid, "p", [1]) == :ok
    assert SessionStore.get_program(SessionStore, sid, "p") == {:ok, [1]}
    assert SessionStore.store_global_program(SessionStore, sid, :g) == :ok
    assert SessionStore.get_global_program(SessionStore, sid) == {:ok, :g}
  end
end
