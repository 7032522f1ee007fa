defmodule SnakepitSidecar.StorageTest do
  @moduledoc "The `:storage` option: accepted values and the sidecar arguments they become."

  use ExUnit.Case, async: true

  alias SnakepitSidecar.{Options, Storage}

  test "accepted values become the sidecar's --storage arguments" do
    assert Storage.args(:memory) == []
    assert Storage.args({:sqlite, "/var/lib/s.db"}) == ["--storage", "sqlite:/var/lib/s.db"]

    assert Storage.args({:sqlite, "/d/s.db", synchronous: :full}) ==
             ["--storage", "sqlite:/d/s.db", "--sqlite-synchronous", "full"]

    assert Storage.args({:redis, "redis://:pw@127.0.0.1:6390/2"}) ==
             ["--storage", "redis://:pw@127.0.0.1:6390/2"]

    assert Storage.args({:redis, "redis://h:1/0", prefix: "app1"}) ==
             ["--storage", "redis://h:1/0", "--redis-prefix", "app1"]

    assert Storage.args({:redis, "redis://h:1/0", prefix: "a:", timeout: 250}) ==
             ["--storage", "redis://h:1/0", "--redis-prefix", "a:", "--redis-timeout-ms", "250"]

    assert Storage.args({:redis, "redis://h:1/0", timeout: 250}) ==
             ["--storage", "redis://h:1/0", "--redis-timeout-ms", "250"]
  end

  test "a relative SQLite path is made absolute on this node" do
    assert ["--storage", "sqlite:" <> path] = Storage.args({:sqlite, "data/s.db"})
    assert path == Path.expand("data/s.db")
  end

  test "the option defaults to memory and is validated with the others" do
    assert {:ok, %{storage: :memory}} = Options.validate([])
    assert {:ok, %{storage: {:sqlite, "x.db"}}} = Options.validate(storage: {:sqlite, "x.db"})
    assert {:error, message} = Options.validate(storage: {:sqlite, nil})
    assert message =~ "invalid value for option :storage: expected :memory, {:sqlite, path}"
    refute Storage.valid?({:redis, "redis://x", prefix: ""})
    refute Storage.valid?({:redis, "redis://x", prefix: "a{b"})
    refute Storage.valid?({:redis, "redis://x", timeout: 0})
    assert Storage.valid?({:redis, "redis://x", prefix: "app:", timeout: 500})
    assert Storage.durable?({:sqlite, "x"}) and not Storage.durable?(:memory)
    assert Storage.shared?({:redis, "redis://x"}) and not Storage.shared?({:sqlite, "x"})
  end
end
