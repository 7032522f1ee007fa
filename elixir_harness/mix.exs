defmodule SnakepitSidecar.MixProject do
  use Mix.Project

  def project do
    [
      app: :snakepit_sidecar,
      version: "0.1.0",
      elixir: "~> 1.14",
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: [],
      docs: [main: "SnakepitSidecar"],
      package: [licenses: ["MIT"]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
