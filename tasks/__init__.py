"""The wire contract shared by orchestrator and agent: app factory, queues, envelope, registry."""
