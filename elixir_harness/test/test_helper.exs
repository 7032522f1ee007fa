# Every test except the pure ones runs against the real Python sidecar (`python3 -m sidecar`,
# this checkout's package: config/config.exs sets :sidecar_path for the test env).
#
# The read cache (SnakepitSidecar.ReadCache) is on by default; SNAKEPIT_READ_CACHE=false runs the
# suites with it off (scripts/test runs the contract suites both ways). Its touches go out every
# 5 ms here, so that reads hit the cache as soon as they can.
Application.put_env(
  :snakepit_sidecar,
  :read_cache,
  System.get_env("SNAKEPIT_READ_CACHE", "true") != "false"
)

Application.put_env(:snakepit_sidecar, :read_cache_touch_interval_ms, 5)
ExUnit.start()
