"""Playbooks: YAML-declared sequences of commands, run by the orchestrator-side worker."""
