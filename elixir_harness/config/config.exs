# The harness's configuration for this project's own runs. An application that has the harness
# as a dependency does not read this file (Mix reads only the top project's config).
import Config

# dev (the demo, the benchmark, `mix snakepit_sidecar.record`) and test (ExUnit) run the sidecar
# package of this checkout, put first on PYTHONPATH, never whatever version is installed in the
# Python. prod sets nothing: a release finds the package installed in its Python (see
# SnakepitSidecar.Options, "Finding the sidecar"). Read at run time with Application.get_env.
if config_env() in [:dev, :test] do
  config :snakepit_sidecar, sidecar_path: Path.expand("../..", __DIR__)
end
