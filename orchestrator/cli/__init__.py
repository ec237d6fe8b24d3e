"""The `lr` command line: a thin client of the orchestrator's HTTP API, plus local bootstrap."""
