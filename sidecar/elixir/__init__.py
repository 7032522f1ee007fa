"""Terms printed exactly as Elixir prints them: `numbers` (integers and floats), `inspect`
(`inspect/1`), `format` (`to_string/1` and `Enum.join/2`, for messages). Import the modules:
the package's names are theirs (`sidecar.elixir.inspect.inspect`)."""
