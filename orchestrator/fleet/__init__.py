"""Many devices at once: device selectors, batches of one command per device, their progress."""
