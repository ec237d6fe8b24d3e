"""The endpoint agent: a Celery worker bound to its device's queue that runs signed commands."""

#: Version reported in heartbeats.
AGENT_VERSION = "0.1.0"
