# Every Elixir file of the harness: the library, its tests, config, the demo, the benchmark and
# the recording scenarios. `scripts/test` runs `mix format --check-formatted` over all of them.
[
  inputs: [
    "{mix,.formatter}.exs",
    "{config,lib,test}/**/*.{ex,exs}",
    "{bench,recording_scenarios}/**/*.{ex,exs}",
    "demo.exs"
  ]
]
