# Every test except the pure ones runs against the real Python sidecar (`python3 -m sidecar`,
# found through the repository root, see SnakepitSidecar.Options.default_sidecar_path/0).
ExUnit.start()
