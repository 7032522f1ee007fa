"""snakepit-sidecar: the Snakepit SessionStore contract served over an Erlang port."""

__version__ = "0.1.0"
