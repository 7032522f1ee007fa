defmodule SnakepitSidecar.RecorderTest do
  use ExUnit.Case, async: true

  alias SnakepitSidecar.Recorder

  @moduletag :tmp_dir

  test "entries are direction byte, 4-byte big-endian length, frame bytes" do
    assert IO.iodata_to_binary(Recorder.entry(:out, "abc")) == <<?>, 3::32, "abc">>
    assert IO.iodata_to_binary(Recorder.entry(:in, <<>>)) == <<?<, 0::32>>
  end

  test "a written recording has the header and parses back in order", %{tmp_dir: dir} do
    path = Path.join(dir, "r.rec")
    {:ok, device} = Recorder.open(path)

    frames = [
      {:out, :erlang.term_to_binary(:a)},
      {:in, :erlang.term_to_binary({:b, 1})},
      {:out, <<>>}
    ]

    for {direction, frame} <- frames, do: :ok = Recorder.record(device, direction, frame)
    :ok = Recorder.close(device)

    assert {:ok, <<"snakepit-sidecar-recording 1\n", _::binary>>} = File.read(path)
    assert Recorder.read(path) == {:ok, frames}
  end

  test "nil records nothing" do
    assert {:ok, nil} = Recorder.open(nil)
    assert :ok = Recorder.record(nil, :out, "x")
    assert :ok = Recorder.close(nil)
  end

  test "bad files are reported" do
    assert Recorder.parse("nope") == {:error, :bad_header}

    assert Recorder.parse(Recorder.header() <> <<?>, 10::32, "abc">>) ==
             {:error, {:truncated_entry, 29}}

    assert Recorder.parse(Recorder.header() <> <<?x, 0::32>>) == {:error, {:bad_direction, 29}}
  end
end
