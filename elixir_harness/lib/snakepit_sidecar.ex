defmodule SnakepitSidecar do
  @moduledoc """
  An Elixir harness for the Python SessionStore sidecar.

  The sidecar is a Python process speaking the Erlang external term format over stdin/stdout
  (`docs/protocol.md`) and implementing Snakepit's SessionStore contract. This application makes
  it usable from Elixir:

    * `SnakepitSidecar.SessionStore` — the store: start options, the contract's API, faults;
    * `SnakepitSidecar.DropIn` — `use` it in `Snakepit.Bridge.SessionStore` to replace the
      original ETS store without changing its callers;
    * `SnakepitSidecar.Telemetry` — every telemetry event, the sidecar's and the harness's;
    * `SnakepitSidecar.Protocol` — the wire protocol as pure functions;
    * `SnakepitSidecar.Recorder` — recordings of the frames crossing the port.
  """
end
