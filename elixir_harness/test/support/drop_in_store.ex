defmodule Snakepit.Bridge.SessionStore do
  @moduledoc """
  The drop-in under test: `Snakepit.Bridge.SessionStore` served by the Python sidecar, exactly
  as a DSPex application would define it.
  """
  use SnakepitSidecar.DropIn
end
