"""Running liveresponse on this one machine: local agents, the demo, clean-up of a run's keys."""
