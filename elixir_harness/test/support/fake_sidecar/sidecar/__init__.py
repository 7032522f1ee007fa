"""A scripted stand-in for the sidecar, for the harness's handshake and fault tests."""
