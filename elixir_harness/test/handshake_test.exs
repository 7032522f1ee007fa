defmodule SnakepitSidecar.HandshakeTest do
  # Handshake failures and bad frames, against a scripted fake sidecar
  # (test/support/fake_sidecar/sidecar/__main__.py, found first on PYTHONPATH).
  use SnakepitSidecar.SidecarCase, async: true
  @moduletag :capture_log

  alias SnakepitSidecar.SessionStore, as: Store

  @fake_path Path.expand("support/fake_sidecar", __DIR__)

  # One argument per frame the fake receives: the frames it answers with.
  defp script(steps) do
    Enum.map(steps, fn
      [] -> "-"
      frames -> Enum.map_join(frames, ",", &Base.encode16(frame_bytes(&1)))
    end)
  end

  defp frame_bytes({:raw, bytes}), do: bytes
  defp frame_bytes(term), do: :erlang.term_to_binary(term)

  defp start_fake(steps, opts \\ []) do
    Process.flag(:trap_exit, true)
    Store.start_link([name: nil, sidecar_path: @fake_path, sidecar_args: script(steps)] ++ opts)
  end

  @welcome {:welcome, 1, %{os_pid: 0, protocol_versions: [1], version: "fake"}}

  test "a welcome for a version we do not speak fails the start" do
    assert start_fake([[{:welcome, 2, %{protocol_versions: [2]}}]]) ==
             {:error, {:unsupported_protocol, [2]}}
  end

  test "an unsupported_version protocol error fails the start" do
    error = {:protocol_error, {:unsupported_version, 1, [3]}, "only 3"}
    assert start_fake([[error]]) == {:error, {:unsupported_protocol, [3]}}
  end

  test "a refused hello fails the start with the sidecar's reason" do
    error = {:protocol_error, {:invalid_option, :default_ttl, -1}, "bad"}

    assert start_fake([[error]]) ==
             {:error, {:hello_refused, {:invalid_option, :default_ttl, -1}, "bad"}}
  end

  test "no welcome in time is a startup timeout" do
    assert start_fake([[]], startup_timeout: 300) == {:error, :startup_timeout}
  end

  test "log and telemetry frames before the welcome are handled" do
    capture_telemetry([[:fake, :event]])
    log = {:log, :warning, "warming up", %{}}
    telemetry = {:telemetry, [:fake, :event], %{n: 1}, %{}}
    assert {:ok, store} = start_fake([[log, telemetry, @welcome]])
    assert_received {:telemetry_event, [:fake, :event], %{n: 1}, %{}}
    GenServer.stop(store)
  end

  test "bad frames are dropped, an undecodable reply fails only its caller" do
    # a reply to 0 whose binary claims 50 bytes and holds 3: its id is readable, its body not
    undecodable_reply = <<131, 104, 3, 119, 5, "reply", 97, 0, 109, 50::32, "abc">>

    steps = [
      [@welcome],
      # call 0: garbage, a non-frame, a reply nobody waits for, then an undecodable reply to 0
      [{:raw, <<1, 2, 3>>}, {:nonsense, 1}, {:reply, 99, :nobody}, {:raw, undecodable_reply}],
      # call 1: a proper answer
      [{:reply, 1, :pong}]
    ]

    assert {:ok, store} = start_fake(steps)

    assert {:undecodable_reply, {SnakepitSidecar.Connection, :call, [^store, :ping, 0]}} =
             catch_exit(Store.ping(store))

    assert Store.ping(store) == :pong
    assert Process.alive?(store)
    GenServer.stop(store)
  end
end
