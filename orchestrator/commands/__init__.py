"""A command's life on the orchestrator: dispatch, its record, approvals, jobs and after-effects."""
