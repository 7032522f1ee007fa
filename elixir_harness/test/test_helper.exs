# Every test except the pure ones runs against the real Python sidecar (`python3 -m sidecar`,
# this checkout's package: config/config.exs sets :sidecar_path for the test env).
ExUnit.start()
