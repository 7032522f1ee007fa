"""Recorded-term replay: real Elixir traffic replayed against a fresh sidecar (docs/replay.md).

`recording` reads and writes the file format, `rules` holds the matching rules for values that
differ from run to run, `matcher` compares terms with those rules and the id bindings, `runner`
drives a sidecar subprocess through a recording, `report` prints a failure as Elixir terms and
`cli` is `snakepit-sidecar replay FILE...`.
"""
